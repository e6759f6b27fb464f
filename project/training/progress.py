"""Progress on stdout. On a terminal, ``TerminalProgressBar``: Lightning's Rich bar with the
epochs counted from 1 (as every line, file and card here counts them), the train loss and val/f1
on it and no ``v_num``, and one test (or validate) table of 4 digits. To a file (a scheduler,
``nohup``, ``> run.log``), where Rich and TQDM bars show nothing per epoch, ``LineProgressBar``:
plain lines. fit.py gives the Trainer one or the other unless it was given a bar or none, and
``ModelTable``, Lightning's table of the model's layers without its FLOPs column (see there).

Lines (each flushed at once, so ``tail -f run.log`` follows the run)::

    epoch 2/3: step 8/12, train loss 1.0712, val loss 1.0601, val acc 0.4000, val f1 0.3111, 12,345 train tokens/s, elapsed 0:00:04, eta 0:00:02
    epoch 3/3, batch 40/120: train loss 0.6912 (mean so far), elapsed 0:02:31
    test (best-epoch=2-val_f1=0.3111.ckpt): loss 1.0550, acc 0.4667, f1 0.3500

Figures are read from ``trainer.callback_metrics`` under the names the model and the callbacks
log; one that is not there is left out of the line."""

import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, RichModelSummary, RichProgressBar

from project import tags

# (logged name, how a line calls it), in the order the line shows them.
EPOCH_FIGURES = ((tags.TRAIN_LOSS, "train loss"), (tags.VAL_LOSS, "val loss"), (tags.VAL_ACC, "val acc"),
                 (tags.VAL_F1, "val f1"))
VAL_FIGURES = ((tags.VAL_LOSS, "loss"), (tags.VAL_ACC, "acc"), (tags.VAL_F1, "f1"))
TEST_FIGURES = ((tags.TEST_LOSS, "loss"), (tags.TEST_ACC, "acc"), (tags.TEST_F1, "f1"))


def duration(seconds: float) -> str:
    """``0:01:05`` (``1 day, 2:03:04`` past a day), as Lightning's bars show a time."""
    return str(timedelta(seconds=round(seconds)))


def figures(metrics: dict[str, Any], names: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"{label} {float(metrics[name]):.4f}" for name, label in names if name in metrics]


def epoch_of(trainer: L.Trainer, epoch: int | None = None) -> str:
    """``epoch 3/10``: of max_epochs, or of the epochs max_steps allows when it stops sooner."""
    epoch = trainer.current_epoch if epoch is None else epoch
    limits = [trainer.max_epochs] if trainer.max_epochs not in (None, -1) else []
    batches = trainer.num_training_batches  # inf for an iterable dataset: no epoch count from steps
    if trainer.max_steps != -1 and 0 < batches < math.inf:
        limits.append(math.ceil(trainer.max_steps / math.ceil(batches / trainer.accumulate_grad_batches)))
    return f"epoch {epoch + 1}" + (f"/{min(limits)}" if limits else "")


def table(metrics: dict[str, Any], prefix: str) -> str:
    """The ``prefix`` figures (``test/``) as a two-column table, 4 digits: Lightning's printed
    16, and fit printed it beside its own line."""
    rows = sorted((name, float(value)) for name, value in metrics.items() if name.startswith(prefix))
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"  {name:<{width}}  {value:.4f}" for name, value in rows)


class ModelTable(RichModelSummary):
    """Lightning's table of the model's layers and parameter counts at the start of a run, without
    FLOPs: torch's FLOP counter has no formula for the recurrent kernels (aten.lstm, gru, rnn),
    which are nearly all of the model's work, so Lightning's column and total read 0."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int, **kwargs: Any) -> None:
        from rich import get_console  # noqa: PLC0415 - as Lightning's own: rich is loaded with the bar
        from rich.table import Table  # noqa: PLC0415
        from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count  # noqa: PLC0415

        table = Table(header_style=kwargs.get("header_style", "bold magenta"))
        kept = [(name, values) for name, values in summary_data if name != "FLOPs"]
        for name, _ in kept:
            table.add_column(name, justify="right" if name.startswith("Params") else "left", no_wrap=name == "Name",
                             style="dim" if name == " " else None)
        for row in zip(*(values for _, values in kept)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        grid = Table.grid(expand=True)
        for label, value in (("Trainable params", get_human_readable_count(trainable_parameters)),
                             ("Non-trainable params", get_human_readable_count(total_parameters - trainable_parameters)),
                             ("Total params", get_human_readable_count(total_parameters)),
                             ("Total estimated model params size (MB)", get_formatted_model_size(model_size))):
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)


class TerminalProgressBar(RichProgressBar):
    """Lightning's Rich bar, counting epochs from 1 and showing the figures that say how it goes."""

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's one place that words the epoch ("Epoch 0/9"), private: no public hook names
        # it before the bar draws it (renaming it after on_train_epoch_start drew "Epoch 0" first).
        # tests/test_progress.py pins it to this Lightning.
        return epoch_of(self.trainer, current_epoch).capitalize()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        # Two figures, short: the logger's version ("v_num: on_0") and the rest wrapped the bar.
        items = super().get_metrics(trainer, pl_module)
        shown = {"loss": items.get("train/loss_step"), "val f1": items.get(tags.VAL_F1)}
        return {name: value for name, value in shown.items() if value is not None}

    def _say(self, text: str) -> None:
        # Through the bar's console: above the live bar, not through it.
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            print(text)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate" and trainer.is_global_zero:
            self._say(f"validate{LineProgressBar.checkpoint(trainer)}:\n" + table(trainer.callback_metrics, "val/"))
        super().on_validation_end(trainer, pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._say(f"test{LineProgressBar.checkpoint(trainer)}:\n" + table(trainer.callback_metrics, "test/"))
        super().on_test_end(trainer, pl_module)


class LineProgressBar(ProgressBar):
    def __init__(self, interval_s: float = 30.0, long_epoch_s: float = 60.0) -> None:
        """
        Args:
            interval_s: Inside an epoch, at most one progress line (batch, running train loss,
                elapsed) per this many seconds.
            long_epoch_s: Progress lines inside an epoch only when the epoch is expected to
                take longer than this many seconds (its pace so far times its batches); a
                shorter epoch prints its epoch line alone.
        """
        super().__init__()
        self.interval_s = interval_s
        self.long_epoch_s = long_epoch_s
        self._enabled = True
        self._started = time.perf_counter()
        self._steps_at_start = 0
        self._epoch_ended: int | None = None  # an epoch whose line waits for its last figures
        self._start_epoch()

    # --- the ProgressBar interface ---

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:  # Lightning disables it on every DDP rank but the first
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, **{"flush": True, **kwargs})  # flushed: a log file shows the line now, not at exit

    # --- training ---

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed fit times only its own steps; its step count is restored after on_fit_start.
        self._steps_at_start = trainer.global_step
        # A fit resumed in the middle of an epoch starts there: on_train_epoch_start is not called.
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_started = self._last_line = time.perf_counter()
        self._loss_sum: torch.Tensor | float = 0.0
        self._batches = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_epoch_line(trainer)
        self._start_epoch()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._enabled:  # the other DDP ranks print nothing: nothing to add up either
            return
        if isinstance(outputs, dict) and isinstance(outputs.get("loss"), torch.Tensor):
            # Summed on the device and read only when a line is printed: reading every step's
            # loss would make a GPU wait at each step. Lightning divides it by the accumulation.
            self._loss_sum = self._loss_sum + outputs["loss"] * trainer.accumulate_grad_batches
            self._batches += 1
        now = time.perf_counter()
        if now - self._last_line < self.interval_s:
            return
        done, total = batch_idx + 1, self.total_train_batches
        if (now - self._epoch_started) / done * total <= self.long_epoch_s:  # inf batches: a long epoch
            return
        self._last_line = now
        parts = [f"{epoch_of(trainer)}, batch {done}/{total if math.isfinite(total) else '?'}:"]
        if self._batches:
            parts.append(f"train loss {float(self._loss_sum) / self._batches:.4f} (mean so far),")
        self.print(*parts, f"elapsed {duration(now - self._started)}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Its figures are final only after every callback's on_train_epoch_end (throughput is
        # logged there, maybe by a callback after this one) and Lightning's reduction of the
        # epoch: the line is printed when the next epoch starts or training ends, nothing run between.
        self._epoch_ended = trainer.current_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_epoch_line(trainer)

    def _print_epoch_line(self, trainer: L.Trainer) -> None:
        if self._epoch_ended is None:
            return
        epoch, self._epoch_ended = self._epoch_ended, None
        now, step, metrics = time.perf_counter(), trainer.global_step, trainer.callback_metrics
        elapsed, total = now - self._started, trainer.estimated_stepping_batches  # inf or -1: no limit
        parts = [f"step {step}/{total}" if 0 < total < math.inf else f"step {step}"]
        parts += figures(metrics, EPOCH_FIGURES)
        if tags.TRAIN_TOKENS_PER_S in metrics:
            parts.append(f"{float(metrics[tags.TRAIN_TOKENS_PER_S]):,.0f} train tokens/s")
        parts.append(f"elapsed {duration(elapsed)}")
        done = step - self._steps_at_start
        if 0 < total < math.inf and done > 0:
            # The mean time per step of this run's epochs so far (validation included), times the
            # steps left: the mean epoch time per epoch left, and right for a max_steps that
            # stops mid-epoch or a fit resumed mid-epoch too.
            parts.append(f"eta {duration(elapsed / done * max(total - step, 0))}")
        self.print(f"{epoch_of(trainer, epoch)}: " + ", ".join(parts))

    # --- validation and test ---

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = figures(trainer.callback_metrics, VAL_FIGURES)
        if trainer.state.fn != "fit":
            self.print(f"validate{self.checkpoint(trainer)}: " + ", ".join(metrics))
        elif metrics and not trainer.is_last_batch:  # a validation inside the epoch (val_check_interval)
            done, total = trainer.fit_loop.epoch_loop.batch_progress.current.ready, self.total_train_batches
            self.print(f"{epoch_of(trainer)}, batch {done}/{total if math.isfinite(total) else '?'}: val "
                       + ", val ".join(metrics) + f", elapsed {duration(time.perf_counter() - self._started)}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = figures(trainer.callback_metrics, TEST_FIGURES)
        self.print(f"test{self.checkpoint(trainer)}: " + ", ".join(metrics))

    @staticmethod
    def checkpoint(trainer: L.Trainer) -> str:
        return f" ({Path(trainer.ckpt_path).name})" if trainer.ckpt_path else ""
