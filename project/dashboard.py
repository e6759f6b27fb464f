"""Everything TensorBoard shows beyond the per-split loss, accuracy and macro-F1 the model logs
itself. Scalars: learning rate (Lightning's ``LearningRateMonitor``, which this extends),
gradient norm, train tokens/s and samples/s, peak memory. HParams: the run's settings with its
best validation and its test figures. Custom Scalars: train and validation of each metric on
one chart. Per validation epoch: the confusion matrix (Images), per-class precision / recall /
F1 and the most confident mistakes (Text)."""

import os
import resource
import statistics
import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

# The HParams tab compares runs on these; each holds its last logged value.
HP_METRICS = ("hp/val_acc", "hp/val_f1", "hp/test_acc", "hp/test_f1")
LAYOUT = {
    "train vs validation": {
        "loss": ["Multiline", ["^train/loss_epoch$", "^val/loss$"]],
        "accuracy": ["Multiline", ["^train/acc$", "^val/acc$"]],
        "macro-F1": ["Multiline", ["^train/f1$", "^val/f1$"]],
    }
}


def _status_mb(field: str) -> float | None:
    """VmRSS (resident now) or VmHWM (resident peak) of this process, Linux only."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def peak_memory_mb(device: torch.device) -> float:
    """Largest CUDA memory allocated by tensors, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device: torch.device) -> float:
    """Start measuring the peak afresh; returns what is in use now (MB). On Linux writing 5 to
    clear_refs resets VmHWM, so the peak of training is not the peak of loading the data."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    now = _status_mb("VmRSS")
    return now if now is not None else peak_memory_mb(device)


class Dashboard(LearningRateMonitor):
    def __init__(
        self,
        misclassified: int = 10,
        logging_interval: Literal["step", "epoch"] | None = "step",
    ) -> None:
        """
        Args:
            misclassified: Validation mistakes shown as text each epoch, the most confident
                first; 0 shows none.
            logging_interval: When the learning rate is logged: every ``step`` or ``epoch``.
        """
        super().__init__(logging_interval=logging_interval)
        self.misclassified = misclassified
        self.step_rates: list[float] = []  # train tokens/s of every timed step, in order
        self.warmup_steps = 10  # left out of the median rate: allocator and thread pools warm up
        self.best_val_f1 = float("-inf")
        self.hparams_logged = False
        self._last_step_end: float | None = None
        # This epoch's timed steps: seconds, real tokens (tensors, read once at epoch end: reading
        # each on its own would make a GPU wait for every step), texts.
        self._steps: list[tuple[float, torch.Tensor, int]] = []

    def _writer(self, trainer: L.Trainer) -> Any | None:
        """The TensorBoard ``SummaryWriter`` on rank 0, else None (no TensorBoard logger or another rank)."""
        logger = trainer.logger
        if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
            return logger.experiment
        return None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        names = pl_module.hparams.label_names
        n = len(names)
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
        writer = self._writer(trainer)
        if writer is None or self.hparams_logged:  # fit's test after fit is the same run
            return
        self.hparams_logged = True
        # The model and the DataModule save their hyperparameters with logger=False, so that
        # Lightning writes no placeholder "hp_metric"; they are logged here with the real metrics.
        params = {**pl_module.hparams, **(trainer.datamodule.hparams if trainer.datamodule else {})}
        params = {k: v for k, v in params.items() if not k.startswith("_")}
        params.update(max_epochs=trainer.max_epochs, seed=os.environ.get("PL_GLOBAL_SEED"))
        trainer.logger.log_hyperparams(params, dict.fromkeys(HP_METRICS, float("nan")))
        writer.add_custom_scalars(LAYOUT)

    # --- training: learning rate (the parent), gradient norm, throughput, memory ---

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_started = time.perf_counter()
        self._memory_before = reset_peak_memory(pl_module.device)

    def on_train_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:  # the parent refuses a Trainer without logger; then it has nothing to do
            super().on_train_start(trainer, *args, **kwargs)
        # A fit resumed in the middle of an epoch starts there: on_train_epoch_start is not called.
        self._start_epoch()

    def _start_epoch(self) -> None:
        # The first step of an epoch also waits for the DataLoader to start: it is not timed.
        self._last_step_end = None
        self._epoch_started = time.perf_counter()
        self._steps = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        timed = self.step_rates[self.warmup_steps :] or self.step_rates
        if trainer.logger is not None and timed:
            trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
            trainer.logger.log_metrics({"perf/train_tokens_per_s_median": statistics.median(timed),
                                        "model/trainable_params": trainable}, step=trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
        self._start_epoch()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        # Before clipping: the norm the gradients really had. Only on steps that are logged.
        if (trainer.global_step + 1) % trainer.log_every_n_steps:
            return
        norms = grad_norm(pl_module, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            pl_module.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last_step_end is not None:  # one whole step: fetch, forward, backward, update
            self._steps.append((now - self._last_step_end, batch["lengths"].sum(), len(batch["lengths"])))
        self._last_step_end = now

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._steps:  # per process: under DDP the run trains devices x this
            seconds = [s for s, _, _ in self._steps]
            tokens = torch.stack([t for _, t, _ in self._steps]).tolist()
            self.step_rates += [t / s for t, s in zip(tokens, seconds)]
            pl_module.log("perf/train_tokens_per_s", sum(tokens) / sum(seconds))
            pl_module.log("perf/train_samples_per_s", sum(n for _, _, n in self._steps) / sum(seconds))
        if self._last_step_end is not None:  # first step to last, validation left out
            pl_module.log("perf/epoch_s", self._last_step_end - self._epoch_started)
        peak = peak_memory_mb(pl_module.device)
        pl_module.log("perf/peak_memory_mb", peak)
        pl_module.log("perf/memory_growth_mb", peak - self._memory_before)  # over what fit started with

    # --- validation: confusion matrix, per-class figures, confident mistakes, best metrics ---

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_started, self._val_tokens = time.perf_counter(), 0

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        labels = batch["labels"]
        self._val_tokens = self._val_tokens + batch["lengths"].sum()  # a tensor: no wait per batch
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
        # Inference speed: the forward passes and metric updates of the validation loop.
        pl_module.log("perf/val_tokens_per_s", float(self._val_tokens) / (time.perf_counter() - self._val_started))
        values = self.report.compute()  # on every rank: it is a collective under DDP
        self.report.reset()
        mistakes, self.mistakes = self.mistakes, []
        writer, step = self._writer(trainer), trainer.global_step
        if writer is None:
            return
        names = pl_module.hparams.label_names
        figure, _ = self.report["confusion"].plot(values["confusion"], labels=names)
        writer.add_figure("val/confusion_matrix", figure, step)  # closes the figure
        support = values["confusion"].sum(1).tolist()
        rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        rows += [
            f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {s} |"
            for name, p, r, f, s in zip(
                names, values["precision"].tolist(), values["recall"].tolist(), values["f1"].tolist(), support
            )
        ]
        writer.add_text("val/per_class", "\n".join(rows), step)
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if mistakes and tokenizer is not None:
            rows = ["| confidence | true | predicted | text |", "|---|---|---|---|"]
            for confidence, ids, true, predicted in mistakes:
                text = tokenizer.decode(ids).replace("|", "\\|").replace("\n", " ")
                rows.append(f"| {confidence:.3f} | {names[true]} | {names[predicted]} | {text} |")
            writer.add_text("val/misclassified", "\n".join(rows), step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or "val/f1" not in metrics or trainer.logger is None:
            return
        if hasattr(self, "_fit_started"):  # wall clock of this validation since fit started
            trainer.logger.log_metrics({"perf/elapsed_s": time.perf_counter() - self._fit_started},
                                       step=trainer.global_step)
        if (f1 := float(metrics["val/f1"])) > self.best_val_f1:  # the checkpoint's choice: best val/f1
            self.best_val_f1 = f1
            trainer.logger.log_metrics({"hp/val_acc": float(metrics["val/acc"]), "hp/val_f1": f1},
                                       step=trainer.global_step)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if "test/f1" in metrics and trainer.logger is not None:
            trainer.logger.log_metrics(
                {"hp/test_acc": float(metrics["test/acc"]), "hp/test_f1": float(metrics["test/f1"])},
                step=trainer.global_step,
            )
