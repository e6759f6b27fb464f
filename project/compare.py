"""``python -m project compare``: "LSTM or GRU?" answered by measurement on the user's own data.

Takes everything ``fit`` takes (``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``) plus
the cell types, the number of seeds and optional train fractions. Every run is a full
``python -m project fit`` in its own process (so its peak memory is its own), with identical
data, tokenizer, batches, sizes and hyperparameters: only the cell type, the seed (weights and
dropout; the batch order is the data's own seed) and the train fraction vary. Each run's
figures come from its TensorBoard log (the Dashboard callback records them) and are kept in
``runs/<name>/record.json``; a run with a record is finished and skipped when ``compare`` is
run again. The report (report.py) goes to ``compare.md / .csv / .json`` and PNG plots.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project import report
from project.checks import DataError
from project.encoders import CELLS


def _cells(text: str) -> list[str]:
    cells = [c.strip() for c in text.split(",") if c.strip()]
    if not cells or any(c not in CELLS for c in cells):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of cell types; "
                                         f"fix: give a comma-separated list of {', '.join(CELLS)}")
    return cells


def _seeds(text: str) -> int:
    try:
        seeds = int(text)
    except ValueError:
        seeds = 0
    if seeds < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of 1 or more; fix: e.g. --seeds 3")
    return seeds


def _fractions(text: str) -> list[float]:
    try:
        fractions = sorted(float(f) for f in text.split(","))
    except ValueError:
        fractions = []
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of shares above 0, at most 1; "
                                         f"fix: e.g. --train_fractions 0.1,0.3,1.0")
    return fractions


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage dump replaced by one ``error: ... fix:`` line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        if "; fix: " not in message:
            message += "; fix: see python -m project compare --help"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m project compare", description=__doc__.split("\n")[0],
        epilog="Any other argument is a fit argument, passed to every run as given "
               "(see python -m project fit --help). Fewer epochs: --trainer.max_epochs 2.",
    )
    parser.add_argument("--cell_types", type=_cells, default=["rnn", "lstm", "gru"],
                        help="comma-separated cells to compare (default: rnn,lstm,gru)")
    parser.add_argument("--seeds", type=_seeds, default=3, help="runs per cell, seeds 1..N (default: 3)")
    parser.add_argument("--train_fractions", type=_fractions, default=None,
                        help="comma-separated shares of train, e.g. 0.1,0.3,1.0 (default: all of it)")
    parser.add_argument("--output_dir", default="compare", help="where runs and the report go (default: compare)")
    return parser


def run_name(cell: str, seed: int, fraction: float | None) -> str:
    return f"{cell}-seed{seed}" + ("" if fraction is None else f"-frac{fraction:g}")


def read_record(run_dir: Path) -> dict:
    """A finished run's figures, from its TensorBoard log and its best checkpoint; None for what
    the run did not measure. A run shorter than one epoch (``--trainer.max_steps 3``) has no
    validation, so no best epoch: it is kept with those figures missing rather than refused,
    since such a run is usually a quick check that every cell trains on the user's data, and
    whether validation will run cannot be told before fit (steps per epoch, val_check_interval,
    limit_val_batches ...); the report shows n/a and its verdicts leave the gaps out."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)] if tag in tags else []

    def last(tag: str) -> float | None:
        return series(tag)[-1][1] if series(tag) else None

    def values(tag: str) -> list[float]:
        return [v for _, v in series(tag)]

    def at(items: list[float], index: int | None) -> float | None:
        return items[index] if index is not None and index < len(items) else None

    # One value per validation epoch, in order (the sanity check logs none of them).
    val_f1, val_acc, elapsed = values("val/f1"), values("val/acc"), values("perf/elapsed_s")
    best = val_f1.index(max(val_f1)) if val_f1 else None  # the first best epoch: the checkpoint kept
    checkpoints = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    memory, infer, epoch_s = values("perf/memory_growth_mb"), values("perf/val_tokens_per_s"), values("perf/epoch_s")
    return {
        "params": last("model/trainable_params"),
        "checkpoint_mb": checkpoints[-1].stat().st_size / 2**20 if checkpoints else None,
        "memory_mb": max(memory) if memory else None,
        "train_tokens_per_s": last("perf/train_tokens_per_s_median"),
        "infer_tokens_per_s": statistics.median(infer) if infer else None,
        "epoch_s": statistics.median(epoch_s) if epoch_s else None,
        "time_to_best_s": at(elapsed, best),
        "best_val_acc": at(val_acc, best),
        "best_val_f1": at(val_f1, best),
        "test_acc": last("test/acc"),
        "test_f1": last("test/f1"),
        # One point per validation: epoch number, seconds since fit started, accuracy.
        "curve": [[epoch, elapsed[epoch], acc] for epoch, acc in enumerate(val_acc) if epoch < len(elapsed)],
    }


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_one(fit_args: list[str], cell: str, seed: int, fraction: float | None, runs: Path) -> dict:
    name = run_name(cell, seed, fraction)
    run_dir, record_file = runs / name, runs / name / "record.json"
    if record_file.is_file():
        print(f"{name}: finished before, skipped", flush=True)
        return json.loads(record_file.read_text())
    if run_dir.exists() and not (run_dir / "fit.log").is_file():  # compare deletes only its own runs
        raise DataError(f"{run_dir} exists but is not a run of compare; fix: choose another --output_dir")
    shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short: start it again
    command = [
        sys.executable, "-m", "project", "fit", *fit_args, f"--model.cell_type={cell}",
        f"--seed_everything={seed}", "--trainer.enable_progress_bar=false",
        "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.save_dir={runs.parent}", f"--trainer.logger.name={runs.name}",
        f"--trainer.logger.version={name}",
    ] + ([] if fraction is None else [f"--data.train_fraction={fraction}"])
    started = time.perf_counter()
    run_dir.mkdir(parents=True)
    with (run_dir / "fit.log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        lines = (run_dir / "fit.log").read_text().strip().splitlines() or [""]
        if done.returncode == 2:  # a bad argument or bad data: fit's own one-line message says it all
            shutil.rmtree(run_dir, ignore_errors=True)
            raise DataError(f"{name}: {lines[-1].removeprefix('error: ')}")
        sys.exit(f"{name} failed (exit code {done.returncode}); its output: {run_dir / 'fit.log'}")
    record = {"cell_type": cell, "seed": seed, "train_fraction": fraction or 1.0,
              "wall_s": time.perf_counter() - started, **read_record(run_dir)}
    partial = record_file.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, record_file)  # the record's presence marks the run finished
    print(f"{name}: test acc {_figure(record['test_acc'])}, "
          f"best val acc {_figure(record['best_val_acc'])}, {record['wall_s']:.0f} s", flush=True)
    return record


def compare(fit_args: list[str], cell_types: list[str], seeds: int, train_fractions: list[float] | None,
            output_dir: str) -> list[dict]:
    out = Path(output_dir)
    runs = out / "runs"
    for folder in (out, runs):  # before the first fit, not after it
        if folder.exists() and not folder.is_dir():
            raise DataError(f"--output_dir {output_dir}: {folder} is a file, not a folder; "
                            f"fix: choose another --output_dir")
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"--output_dir {output_dir}: cannot create {runs} ({error.strerror}); "
                        f"fix: choose another --output_dir") from None
    records = [
        run_one(fit_args, cell, seed, fraction, runs)
        for fraction in (train_fractions or [None])
        for cell in cell_types
        for seed in range(1, seeds + 1)
    ]
    print(report.write(records, out, machine=report.machine()))
    return records


def main(args: list[str]) -> None:
    known, fit_args = parser().parse_known_args(args)
    if any(a.split("=")[0] in ("--model.cell_type", "--seed_everything", "--data.train_fraction")
           for a in fit_args):
        parser().error("compare sets --model.cell_type, --seed_everything and --data.train_fraction "
                       "itself; fix: use --cell_types, --seeds and --train_fractions")
    try:
        compare(fit_args, known.cell_types, known.seeds, known.train_fractions, known.output_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
