"""The run record (project/training/record.py) that the callbacks share: its fields on their own, and real
tiny fits whose callbacks are registered in shuffled orders writing the same metrics.json,
model_card.md and TensorBoard mistakes, once the time, speed and memory figures are masked."""

import gc
import json
import math
import random
import re
import time
import weakref
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project import TextClassifier, TextDataModule, tags
from project.training.calibration import Calibration
from project.training.checkpoints import LastCheckpoint, RunCheckpoint
from project.training.hparams import HParams
from project.training.metrics_file import FILENAME as METRICS
from project.training.metrics_file import MetricsFile, contents
from project.training.model_card import FILENAME as CARD
from project.training.model_card import ModelCard
from project.training.record import RunRecord, number, record_of
from project.training.runs import RunLogger
from project.training.stopping import EarlyStop
from project.training.throughput import Throughput
from project.training.validation_report import ValidationReport
from tests.helpers import write_splits

# --- the record alone ---


def test_a_figure_is_a_json_number_or_none() -> None:
    assert number(torch.tensor(0.25)) == 0.25 and isinstance(number(torch.tensor(0.25)), float)
    assert number(None) is None and number(math.nan) is None and number(torch.tensor(math.inf)) is None


def test_the_clock_counts_on_from_the_seconds_before_a_resume() -> None:
    record = RunRecord()
    assert record.elapsed_s() is None  # before fit
    record.start_clock(elapsed_before=100.0)
    first = record.elapsed_s()
    time.sleep(0.01)
    assert 100.0 <= first < record.elapsed_s() < 100.0 + 60


def test_the_kept_validation_is_the_history_entry_at_best() -> None:
    record = RunRecord()
    assert record.kept is None
    record.history = [{"epoch": 0, tags.VAL_F1: 0.5}, {"epoch": 1, tags.VAL_F1: 0.7}, {"epoch": 2, tags.VAL_F1: 0.6}]
    record.best = 1
    assert record.kept == {"epoch": 1, tags.VAL_F1: 0.7}


def test_the_test_s_figures_are_taken_from_the_callback_metrics_the_same_by_whoever_takes_them() -> None:
    metrics = {tags.TEST_ACC: torch.tensor(0.5), tags.TEST_F1: torch.tensor(math.nan), tags.VAL_F1: torch.tensor(0.9)}
    record = RunRecord()
    record.take_test(metrics)
    first = record.test
    record.take_test(metrics)  # a second callback in the same hook
    assert record.test == first == {tag: {tags.TEST_ACC: 0.5}.get(tag) for tag in tags.TEST}


def test_one_record_per_trainer_gone_with_it() -> None:
    trainer, other = (L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False) for _ in range(2))
    record = record_of(trainer)
    assert record_of(trainer) is record and record_of(other) is not record
    assert not any(isinstance(value, RunRecord) for value in vars(trainer).values())  # nothing kept on the Trainer
    kept = weakref.ref(record)
    del trainer, record
    gc.collect()
    assert kept() is None


def test_metrics_json_s_keys_come_from_the_record_in_their_documented_order() -> None:
    record = RunRecord(fitted=True)
    keys = ["best", "final", "test", "best_checkpoint", "wall_s", tags.TRAIN_TOKENS_PER_S_MEDIAN, tags.VAL_TOKENS_PER_S,
            tags.EPOCH_S, tags.PEAK_MEMORY_MB, tags.MEMORY_GROWTH_MB, tags.TRAINABLE_PARAMS, "hardware", "history"]
    assert contents(record) == {**dict.fromkeys(keys), "history": []}  # nothing measured yet
    record.history = [{"epoch": 0, tags.VAL_TOKENS_PER_S: 10.0}, {"epoch": 1, tags.VAL_TOKENS_PER_S: 30.0}]
    record.best, record.wall_s, record.epoch_s = 0, 12.5, 4.0
    written = contents(record)
    assert (written["best"], written["final"]) == tuple(record.history)
    assert (written["wall_s"], written[tags.EPOCH_S], written[tags.VAL_TOKENS_PER_S]) == (12.5, 4.0, 20.0)
    # A test run alone (no fit with this Trainer) names the checkpoint it tested, before the history.
    alone = contents(RunRecord(tested_checkpoint="/runs/x/checkpoints/last.ckpt"))
    assert list(alone) == [*keys[:-1], "tested_checkpoint", "history"]
    assert alone["tested_checkpoint"] == "/runs/x/checkpoints/last.ckpt"


# --- the callbacks, in any order ---

# Throughput, speed and memory, and the wall time: measured anew by every fit.
TIMED = re.compile(r"^(perf/.*|wall_s)$")


def masked(value):  # noqa: ANN001, ANN201 - metrics.json's JSON
    if isinstance(value, dict):
        return {k: "<timed>" if TIMED.match(k) and v is not None else masked(v) for k, v in value.items()}
    return [masked(v) for v in value] if isinstance(value, list) else value


def callbacks(patience: int) -> list[L.Callback]:
    """Every callback of ``fit`` (cli.py), the checkpoints set as the CLI sets them."""
    return [Throughput(), Calibration(), ValidationReport(), HParams(), MetricsFile(), ModelCard(),
            EarlyStop(patience=patience),
            RunCheckpoint(monitor=tags.VAL_F1, mode="max", save_last=True, auto_insert_metric_name=False,
                          filename="best-epoch={epoch}-val_f1={val/f1:.4f}", enable_version_counter=False),
            LastCheckpoint()]


def fit_and_test(files: dict[str, str], cache: Path, root: Path, order: list[L.Callback]) -> Path:
    """A 2-epoch fit and the test of its kept checkpoint, as ``fit`` runs them; the run's folder."""
    torch.manual_seed(0)  # the same weights and dropout in every order
    data = TextDataModule(data_files=files, text_column="sentence", min_frequency=1, batch_size=16,
                          cache_dir=str(cache))
    model = TextClassifier(vocab_size=data.vocab_size, label_names=data.label_names, embedding_dim=8, hidden_size=8)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, callbacks=order, log_every_n_steps=1,
                        logger=RunLogger(save_dir=str(root), run_name="tiny"), enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(model, datamodule=data)
    best = next(c for c in trainer.checkpoint_callbacks if c.monitor).best_model_path
    trainer.test(model, datamodule=data, ckpt_path=best)
    return Path(trainer.logger.log_dir)


def texts(run: Path, tag: str) -> list[tuple[int, str]]:
    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors(tag)]


@pytest.mark.slow  # three tiny fits
def test_the_callbacks_write_the_same_files_in_any_order(tmp_path: Path) -> None:
    files, cache = write_splits(tmp_path), tmp_path / "cache"
    orders, written = [], []
    for seed in (1, 2, 3):
        order = callbacks(patience=2)
        random.Random(seed).shuffle(order)
        orders.append([type(c).__name__ for c in order])
        run = fit_and_test(files, cache, tmp_path / f"order_{seed}", order)
        mistakes = {split: texts(run, f"{split}/{tags.MISCLASSIFIED}/text_summary") for split in ("val", "test")}
        card = re.sub(r"(\| fit wall seconds \|) [^|]+ \|", r"\1 <timed> |", (run / CARD).read_text())
        written.append((masked(json.loads((run / METRICS).read_text())), card, mistakes))

    # The orders that were wrong before the record: the card before metrics.json's callback (it
    # read its kept validation), the report before the calibration (it ranked its mistakes by the
    # previous temperature).
    for first, second in (("MetricsFile", "ModelCard"), ("Calibration", "ValidationReport")):
        assert {order.index(first) < order.index(second) for order in orders} == {True, False}, orders
    metrics, card, mistakes = written[0]
    assert metrics["best"] is not None and metrics["test"] is not None and len(metrics["history"]) == 2
    assert "### Per class, validation" in card and "### Per class, test" in card
    assert "| early stopping | patience 2 on val/f1 (min\\_delta 0.0) |" in card
    assert [step for step, _ in mistakes["val"]] and [step for step, _ in mistakes["test"]]
    for order, other in zip(orders[1:], written[1:]):
        assert other[0] == metrics, order
        assert other[1] == card, order
        assert other[2] == mistakes, order
