"""Per validation, in TensorBoard: the confusion matrix (Images), per-class precision / recall /
F1 with support, and the most confident mistakes with their text (Text)."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from project import tags
from project.errors import UserError


class ValidationReport(Callback):
    def __init__(self, misclassified: int = 10) -> None:
        """
        Args:
            misclassified: Validation mistakes shown as text each epoch, the most confident
                first; 0 shows none.
        """
        if isinstance(misclassified, bool) or not isinstance(misclassified, int) or misclassified < 0:
            raise UserError(f"--validation_report.misclassified is {misclassified}; fix: a whole number, 0 or more")
        self.misclassified = misclassified

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        n = len(pl_module.hparams.label_names)
        # Every rank keeps its counts; compute() sums them across ranks.
        self.report = MetricCollection(
            {
                "confusion": MulticlassConfusionMatrix(n),
                "precision": MulticlassPrecision(n, average=None),
                "recall": MulticlassRecall(n, average=None),
                "f1": MulticlassF1Score(n, average=None),
            }
        ).to(pl_module.device)
        self.mistakes: list[tuple[float, list[int], int, int]] = []

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        labels = batch["labels"]
        self.report.update(outputs, labels)  # in the sanity check too: its first call is slow
        if self.misclassified == 0 or trainer.sanity_checking:
            return
        confidence, predicted = outputs.softmax(-1).max(-1)
        wrong = (predicted != labels).nonzero().flatten()
        # One copy to the host per batch, not one per mistake.
        for i, c, true, guess, length in zip(wrong.tolist(), confidence[wrong].tolist(), labels[wrong].tolist(),
                                             predicted[wrong].tolist(), batch["lengths"][wrong].tolist()):
            self.mistakes.append((c, batch["input_ids"][i, :length].tolist(), true, guess))
        self.mistakes = sorted(self.mistakes, key=lambda m: -m[0])[: self.misclassified]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            self.report.reset()
            return
        values = self.report.compute()  # on every rank: it is a collective under DDP
        self.report.reset()
        mistakes, self.mistakes = self.mistakes, []
        if not isinstance(trainer.logger, TensorBoardLogger) or not trainer.is_global_zero:
            return
        writer, step = trainer.logger.experiment, trainer.global_step
        names = pl_module.hparams.label_names
        figure, _ = self.report["confusion"].plot(values["confusion"], labels=names)
        writer.add_figure(tags.CONFUSION_MATRIX, figure, step)  # closes the figure
        support = values["confusion"].sum(1).tolist()
        rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        rows += [
            f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {s} |"
            for name, p, r, f, s in zip(
                names, values["precision"].tolist(), values["recall"].tolist(), values["f1"].tolist(), support
            )
        ]
        writer.add_text(tags.PER_CLASS, "\n".join(rows), step)
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if mistakes and tokenizer is not None:
            rows = ["| confidence | true | predicted | text |", "|---|---|---|---|"]
            for confidence, ids, true, predicted in mistakes:
                text = tokenizer.decode(ids).replace("|", "\\|").replace("\n", " ")
                rows.append(f"| {confidence:.3f} | {names[true]} | {names[predicted]} | {text} |")
            writer.add_text(tags.MISCLASSIFIED, "\n".join(rows), step)
