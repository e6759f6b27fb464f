"""TensorBoard's HParams tab: the run's settings (model, data, ``max_epochs``, seed) beside its
best validation and its test figures, so runs can be sorted and filtered by them; and the
Custom Scalars layout that puts train and validation of each metric on one chart."""

import os

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from project import tags

LAYOUT = {
    "train vs validation": {
        title: ["Multiline", [f"^{train}$", f"^{val}$"]]
        for title, train, val in (("loss", tags.TRAIN_LOSS, tags.VAL_LOSS), ("accuracy", tags.TRAIN_ACC, tags.VAL_ACC),
                                   ("macro-F1", tags.TRAIN_F1, tags.VAL_F1))
    }
}


class HParams(Callback):
    def __init__(self) -> None:
        self.logged = False  # the test after fit is the same run: its settings are logged once
        self.best_val_f1 = float("-inf")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.logged or not isinstance(trainer.logger, TensorBoardLogger) or not trainer.is_global_zero:
            return
        self.logged = True
        # The model and the DataModule save their hyperparameters with logger=False, so that
        # Lightning writes no placeholder "hp_metric"; they are logged here with the real metrics.
        params = {**pl_module.hparams, **(trainer.datamodule.hparams if trainer.datamodule else {})}
        params = {k: v for k, v in params.items() if not k.startswith("_")}
        params.update(max_epochs=trainer.max_epochs, seed=os.environ.get("PL_GLOBAL_SEED"))
        trainer.logger.log_hyperparams(params, dict.fromkeys(tags.HP_METRICS, float("nan")))
        trainer.logger.experiment.add_custom_scalars(LAYOUT)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or tags.VAL_F1 not in metrics or trainer.logger is None:
            return
        if (f1 := float(metrics[tags.VAL_F1])) > self.best_val_f1:  # the checkpoint's choice: best val/f1
            self.best_val_f1 = f1
            trainer.logger.log_metrics({tags.HP_VAL_ACC: float(metrics[tags.VAL_ACC]), tags.HP_VAL_F1: f1},
                                       step=trainer.global_step)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if tags.TEST_F1 in metrics and trainer.logger is not None:
            trainer.logger.log_metrics(
                {tags.HP_TEST_ACC: float(metrics[tags.TEST_ACC]), tags.HP_TEST_F1: float(metrics[tags.TEST_F1])},
                step=trainer.global_step,
            )
