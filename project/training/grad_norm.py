"""The total gradient norm before clipping, as ``train/grad_norm``, on the steps that are logged
(``--trainer.log_every_n_steps``): how large the updates are, and whether they blow up."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import grad_norm

from project import tags


class GradNorm(Callback):
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        # Before clipping (Lightning clips after this hook): the norm the gradients really had.
        # Only on logged steps: the norm reads every parameter's gradient.
        if (trainer.global_step + 1) % trainer.log_every_n_steps:
            return
        norms = grad_norm(pl_module, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            pl_module.log(tags.GRAD_NORM, norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)
