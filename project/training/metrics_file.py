"""``metrics.json`` in the run's folder (``trainer.logger.log_dir``, beside the TensorBoard
events): a run's figures in one small file, for ``compare`` and any script, with no event files
to parse. Written by rank 0 after every validation, at the end of training and after the test,
each time to a file beside it that is then renamed over it (a reader never sees half a file).
It is the run's record (record.py) as a file: this callback adds the validations, the test and
the whole fit's figures to it; Throughput its speed and memory.

Its keys (metric names are the TensorBoard tags of tags.py; null where the run did not measure
one, e.g. a run shorter than one epoch has no validation)::

    best             the validation of the checkpoint kept (the checkpoint callback's monitor and
                     mode, val/f1 max by default): epoch, step, val/acc, val/f1, val/loss,
                     perf/val_tokens_per_s, perf/elapsed_s (seconds since fit started)
    final            the last validation, the same fields
    test             test/acc, test/f1, test/loss of the test after fit
    best_checkpoint  the kept checkpoint's file, relative to the run's folder (once training ends)
    wall_s           seconds fit ran (training and validation; a resumed run's earlier time included)
    perf/train_tokens_per_s_median, perf/val_tokens_per_s (median over the validations),
    perf/epoch_s (median), perf/peak_memory_mb and perf/memory_growth_mb (the largest),
    model/trainable_params
    hardware         the machine: CPU (model, cores, torch's CPU capability), GPU, devices, versions
    history          one entry per validation, in order, the fields of ``best``

While fit runs, the file holds the figures so far; once training ends, the final ones.

A resumed run (``fit --ckpt_path last``) goes on with the same file: the history travels in the
checkpoint (this callback's state), so validations after the checkpoint that are run again are
not listed twice. A separate ``test`` run writes its test figures to its own folder, with the
checkpoint it tested."""

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from project import tags
from project.atomic import atomic_write
from project.environment import hardware
from project.training.record import RunRecord, number, record_of

FILENAME = "metrics.json"


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def contents(record: RunRecord) -> dict[str, Any]:
    """What metrics.json holds: the record's figures under the keys above."""
    return {
        "best": record.kept,
        "final": record.history[-1] if record.history else None,
        "test": record.test,
        "best_checkpoint": record.best_checkpoint, "wall_s": record.wall_s,
        tags.TRAIN_TOKENS_PER_S_MEDIAN: record.train_tokens_per_s_median,
        tags.VAL_TOKENS_PER_S: _median([e[tags.VAL_TOKENS_PER_S] for e in record.history]),
        tags.EPOCH_S: record.epoch_s, tags.PEAK_MEMORY_MB: record.peak_memory_mb,
        tags.MEMORY_GROWTH_MB: record.memory_growth_mb, tags.TRAINABLE_PARAMS: record.trainable_params,
        "hardware": record.hardware,
        **({} if record.fitted else {"tested_checkpoint": record.tested_checkpoint}),
        "history": record.history,
    }


class MetricsFile(Callback):
    def __init__(self) -> None:
        self.record = RunRecord()  # the Trainer's, from setup on
        self._saved: dict[str, Any] | None = None  # a checkpoint's state, taken if fit resumes

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.record = record_of(trainer)

    def state_dict(self) -> dict[str, Any]:
        record = self.record
        return {"history": record.history, "best": record.best, "best_score": record.best_score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning loads callback states for a test or validate from a checkpoint too (the test
        # after fit loads the best one): only a resumed fit takes them (on_fit_start follows).
        self._saved = state_dict

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = self.record
        record.fitted = True
        if saved := self._saved:
            record.history, record.best, record.best_score = list(saved["history"]), saved["best"], saved["best_score"]
        self._saved = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        record, metrics = self.record, trainer.callback_metrics
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                 **{tag: number(metrics.get(tag)) for tag in getattr(pl_module, "validation_tags", tags.VALIDATION)}}
        record.history.append(entry)
        if self._keep_if_best(trainer, len(record.history) - 1):
            record.kept_per_class = record.val_per_class  # ValidationReport's, of on_validation_epoch_end
        self._summarize(trainer, pl_module, final=False)  # the figures so far
        self._write(trainer)

    def _keep_if_best(self, trainer: L.Trainer, index: int) -> bool:
        """The checkpoint callback's own choice, made after this hook (Lightning runs checkpoint
        callbacks last): the first validation, then each strictly better one; NaN is the worst.
        True if it keeps this one."""
        record = self.record
        kept = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
        monitor, mode = (kept.monitor, kept.mode) if kept is not None else (tags.VAL_F1, "max")
        if monitor not in trainer.callback_metrics:  # the checkpoint callback saves nothing either
            return False
        score = number(trainer.callback_metrics[monitor])
        score = score if score is not None else (-math.inf if mode == "max" else math.inf)
        if record.best is None or (score > record.best_score if mode == "max" else score < record.best_score):
            record.best, record.best_score = index, score
            return True
        return False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._summarize(trainer, pl_module, final=True)
        self._write(trainer)

    def _summarize(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> None:
        record = self.record
        # The checkpoint callback saves a new best after on_validation_end: its file is named
        # once training is over.
        kept = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
        path, folder = getattr(kept, "best_model_path", "") if final else "", self._folder(trainer)
        record.best_checkpoint = os.path.relpath(path, folder) if path and folder else None
        record.wall_s = record.elapsed_s()  # Throughput's clock, started at on_fit_start
        record.trainable_params = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        record.hardware = hardware(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = self.record
        record.take_test(trainer.callback_metrics)
        if not record.fitted:  # a test run of its own: its folder, the checkpoint it tested
            record.tested_checkpoint = str(Path(trainer.ckpt_path).resolve()) if trainer.ckpt_path else None
        self._write(trainer)

    @staticmethod
    def _folder(trainer: L.Trainer) -> str | None:
        """The run's folder on rank 0 (the one that writes); None elsewhere or without a logger."""
        if trainer.logger is None or not trainer.is_global_zero:
            return None
        return getattr(trainer.logger, "log_dir", None)

    def _write(self, trainer: L.Trainer) -> None:
        if (folder := self._folder(trainer)) is None:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        with atomic_write(Path(folder) / FILENAME, "x", fix="point --trainer.default_root_dir at another disk") as f:
            json.dump(contents(self.record), f, indent=1)
