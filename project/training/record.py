"""What a run measured, in one record per Trainer that the callbacks write and read instead of
each other's attributes: metrics.json (metrics_file.py) and the model card (model_card.py) are
made from it, whatever order the callbacks are registered in.

Lightning calls the callbacks of one hook in the order they were registered. So no callback
reads a field in the hook that another writes it in: each field below names its writer and the
hook, and is read only at a later hook. Lightning's order, as far as the record goes:
``setup``, ``on_fit_start``, ``on_train_start``, then per validation ``on_validation_epoch_end``
(the logged figures are then reduced into ``trainer.callback_metrics``) and
``on_validation_end``, per epoch ``on_train_epoch_end``; ``on_train_end``, ``on_fit_end``; per
test ``on_test_epoch_end``, ``on_test_end``. The test's figures are the one field that two
callbacks need in the hook they appear in: whoever needs them takes them from
``trainer.callback_metrics`` (``take_test``), the same figures whoever is first.

A fit and the test after it share the Trainer, so one record: the test's figures join the fit's.
A resumed fit starts with an empty record; the callbacks that own a field put its checkpoint
state back at ``on_fit_start``."""

import math
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L

from project import tags

Rows = list[dict[str, Any]]  # per-class rows of validation_report.per_class, in label-id order


def number(value: Any) -> float | None:
    """A logged value as a JSON number; None for a missing or non-finite one (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class RunRecord:
    """A fit's figures and its test's; each field says which callback writes it, at which hook."""

    # --- The validations of fit: MetricsFile at on_validation_end (its checkpoint state at on_fit_start).
    # One entry per validation, in order: epoch, step and the tags.VALIDATION figures.
    history: list[dict[str, Any]] = field(default_factory=list)
    # Index in history of the kept checkpoint's validation, and its monitored value (NaN as the worst).
    best: int | None = None
    best_score: float | None = None
    # That validation's per-class rows: MetricsFile copies them from val_per_class at on_validation_end
    # when it keeps the validation; ModelCard puts its checkpoint state back at on_fit_start.
    kept_per_class: Rows | None = None
    # Fit ran with this Trainer (MetricsFile, on_fit_start): a test without it is a test run alone.
    fitted: bool = False

    # --- Per-class rows of the latest validation and test: ValidationReport, at on_validation_epoch_end
    # and on_test_epoch_end.
    val_per_class: Rows | None = None
    test_per_class: Rows | None = None

    # --- The latest test's figures (tags.TEST): take_test, at on_test_end.
    test: dict[str, float | None] | None = None
    # The checkpoint a test run alone tested (MetricsFile, on_test_end).
    tested_checkpoint: str | None = None

    # --- Throughput. The clock, started at on_fit_start (elapsed_s reads it); the seconds a
    # resumed run trained before, from its checkpoint.
    clock_started: float | None = None
    elapsed_before: float = 0.0
    # Its figures of the epochs trained so far, at on_train_start and on_train_epoch_end: the
    # median train tokens/s of the timed steps (after warm-up), the median epoch seconds, the
    # largest peak memory and memory growth (MB). None until training starts: a resumed fit
    # with nothing left to train measured none.
    train_tokens_per_s_median: float | None = None
    epoch_s: float | None = None
    peak_memory_mb: float | None = None
    memory_growth_mb: float | None = None

    # --- The whole fit, as metrics.json last said it (MetricsFile, at on_validation_end and at
    # on_train_end): seconds fit ran so far, the kept checkpoint's file relative to the run's
    # folder (once training ends), the trainable parameters, the machine (environment.hardware).
    wall_s: float | None = None
    best_checkpoint: str | None = None
    trainable_params: int | None = None
    hardware: dict[str, Any] | None = None

    # --- How fit stops early, in words (EarlyStop, setup): "off" when it does not.
    early_stopping: str = "off"

    @property
    def kept(self) -> dict[str, Any] | None:
        """The kept checkpoint's validation: its entry in ``history``."""
        return None if self.best is None else self.history[self.best]

    def start_clock(self, elapsed_before: float) -> None:
        self.clock_started, self.elapsed_before = time.perf_counter(), elapsed_before

    def elapsed_s(self) -> float | None:
        """Seconds since fit started, the time before a resume included; None before fit."""
        if self.clock_started is None:
            return None
        return self.elapsed_before + time.perf_counter() - self.clock_started

    def take_test(self, callback_metrics: Mapping[str, Any]) -> None:
        """The test's figures, from ``trainer.callback_metrics`` at on_test_end (Lightning reduces
        them into it after on_test_epoch_end)."""
        multi_label = tags.TEST_MICRO_F1 in callback_metrics
        self.test = {tag: number(callback_metrics.get(tag)) for tag in (tags.MULTI_LABEL_TEST if multi_label else tags.TEST)}


# Keyed by the Trainer, not kept on it: the record goes with the Trainer, and no Lightning object
# gets an attribute of ours.
_RECORDS: weakref.WeakKeyDictionary[L.Trainer, RunRecord] = weakref.WeakKeyDictionary()


def record_of(trainer: L.Trainer) -> RunRecord:
    """``trainer``'s record, made at its first use."""
    return _RECORDS.setdefault(trainer, RunRecord())
