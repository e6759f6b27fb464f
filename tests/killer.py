"""A callback for tests: SIGKILL its own ``fit`` process after a given training step, as a
pre-emption or an out-of-memory kill would (no exception, no cleanup, no final checkpoint)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
