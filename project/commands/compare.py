"""``python -m project compare``: "LSTM or GRU?" answered by measurement on the user's own data.

Takes everything ``fit`` takes (``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``) plus
the cell types, the number of seeds and optional train fractions. Every run is a full
``fit`` (``fit.run_fit``) in a child process of its own (so its peak memory is its own), with identical
data, tokenizer, batches, sizes and hyperparameters: only the cell type, the seed (weights and
dropout; the batch order is the data's own seed) and the train fraction vary. Each run's
figures come from the ``metrics.json`` its fit writes (metrics_file.py) and are kept in
``runs/<name>/record.json``; a run with a record is finished and skipped when ``compare`` is
run again. The report (report.py) goes to ``compare.md / .csv / .json`` and PNG plots.
"""

import argparse
import json
import multiprocessing
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jsonargparse import ArgumentParser

from project import tags
from project.atomic import atomic_write
from project.commands import compare_report as report
from project.commands.cli import fit_in_child
from project.errors import UserError
from project.model.encoders import CELLS
from project.training.metrics_file import FILENAME


def _cells(text: str) -> list[str]:
    if not isinstance(text, str):  # jsonargparse checks parsed values and defaults again
        return text
    cells = [c.strip() for c in text.split(",") if c.strip()]
    if not cells or any(c not in CELLS for c in cells):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of cell types; "
                                         f"fix: give a comma-separated list of {', '.join(CELLS)}")
    return cells


def whole_number(least: int, example: str) -> Callable[[str], int]:
    """The type of a flag that takes a whole number of at least ``least`` (compare's and tune's),
    refused in one line naming ``example``; checked here, not by Optuna's traceback later."""
    def parse(text: str) -> int:
        if not isinstance(text, str):  # jsonargparse checks parsed values and defaults again
            return text
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of {least} or more; fix: e.g. {example}")
        return value
    return parse


def _fractions(text: str) -> list[float]:
    if not isinstance(text, str):  # jsonargparse checks parsed values and defaults again
        return text
    try:
        fractions = sorted(float(f) for f in text.split(","))
    except ValueError:
        fractions = []
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of shares above 0, at most 1; "
                                         f"fix: e.g. --train_fractions 0.1,0.3,1.0")
    return fractions


def _runs(text: str) -> list[str]:
    if not isinstance(text, str):  # jsonargparse checks parsed values and defaults again
        return text
    runs = [r.strip() for r in text.split(",") if r.strip()]
    if not runs:
        raise argparse.ArgumentTypeError(f"'{text}' names no pretrain run; fix: e.g. --pretrained "
                                         "lightning_logs/bbc_news-lstm-lm-version_0,lightning_logs/bbc_news-gru-lm-version_0")
    return runs


# compare's own flags; every other argument is fit's, passed to every run as given.
FLAGS = {
    "--cell_types": (_cells, ["rnn", "lstm", "gru"], "Comma-separated cells to compare, e.g. lstm,gru."),
    "--seeds": (whole_number(1, "--seeds 3"), 3, "Runs per cell, seeds 1..N."),
    "--train_fractions": (_fractions, None, "Comma-separated shares of train, e.g. 0.1,0.3,1.0 (default: all of it)."),
    "--output_dir": (str, "compare", "Where the runs and the report go."),
    "--pretrained": (_runs, None, "Comma-separated pretrain runs (folders or .ckpt), one per cell type: each cell's "
                                  "fits start from its own (fit --model.init_from)."),
}


def add_arguments(parser: ArgumentParser) -> None:
    """compare's flags, on its subcommand parser (cli.py), which also holds every fit flag."""
    for flag, (kind, default, text) in FLAGS.items():
        parser.add_argument(flag, type=kind, default=default, help=text)


def fit_arguments(given: list[str], own: dict = FLAGS) -> list[str]:
    """The arguments meant for fit: all but the command's ``own`` flags (``--flag value`` or
    ``--flag=value``); compare's, or tune's."""
    fit_args, value_next = [], False
    for arg in given:
        if value_next:
            value_next = False
        elif arg.split("=", 1)[0] in own:
            value_next = "=" not in arg
        else:
            fit_args.append(arg)
    return fit_args


def run(config: dict, given: list[str]) -> None:
    """Run compare as parsed; ``given`` are its raw arguments (those after ``compare``)."""
    fit_args = fit_arguments(given)
    if any(a.split("=")[0] in ("--model.cell_type", "--seed_everything", "--data.train_fraction") for a in fit_args):
        raise UserError("compare sets --model.cell_type, --seed_everything and --data.train_fraction "
                        "itself; fix: use --cell_types, --seeds and --train_fractions")
    if any(a.split("=")[0] == "--model.init_from" for a in fit_args):
        raise UserError("compare starts each cell from a language model of that cell; fix: --pretrained RUN,RUN "
                        "(one pretrain run per cell type) instead of --model.init_from")
    starts = pretrained_starts(config["pretrained"] or [], config["cell_types"])
    compare(fit_args, config["cell_types"], config["seeds"], config["train_fractions"], config["output_dir"], starts)


def pretrained_starts(runs: list[str], cell_types: list[str]) -> dict[str, str]:
    """Each compared cell's pretrain run, by the cell its language model has (read, not guessed
    from the name); one run per cell, and one for every cell or none."""
    from project.model import pretrained  # noqa: PLC0415 - torch: only when --pretrained is given

    starts: dict[str, str] = {}
    for run in runs:
        cell = pretrained.read_pretrained(run)["hyper_parameters"]["cell_type"]
        if cell in starts:
            raise UserError(f"--pretrained names two {cell} language models ({starts[cell]}, {run}); fix: one per cell type")
        starts[cell] = run
    if runs and (missing := [c for c in cell_types if c not in starts]):
        raise UserError(f"--pretrained has no {', '.join(missing)} language model (it has {', '.join(starts)}); fix: "
                        f"python -m project pretrain --model.cell_type {missing[0]}, and add its run folder")
    return {cell: starts[cell] for cell in cell_types if cell in starts}


def run_name(cell: str, seed: int, fraction: float | None) -> str:
    return f"{cell}-seed{seed}" + ("" if fraction is None else f"-frac{fraction:g}")


def read_record(run_dir: Path) -> dict:
    """A finished run's figures, from the metrics.json its fit wrote (metrics_file.py) and its
    best checkpoint; None for what the run did not measure. A run shorter than one epoch
    (``--trainer.max_steps 3``) has no validation, so no best epoch: it is kept with those
    figures missing rather than refused, since such a run is usually a quick check that every
    cell trains on the user's data, and whether validation will run cannot be told before fit
    (steps per epoch, val_check_interval, limit_val_batches ...); the report shows n/a and its
    verdicts leave the gaps out."""
    path = run_dir / FILENAME
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: the run's figures cannot be read ({error}); fix: delete {run_dir} "
                        f"and run compare again") from None
    best, test = metrics["best"] or {}, metrics["test"] or {}
    kept = run_dir / metrics["best_checkpoint"] if metrics.get("best_checkpoint") else None
    return {
        "params": metrics[tags.TRAINABLE_PARAMS],
        "checkpoint_mb": kept.stat().st_size / 2**20 if kept and kept.is_file() else None,
        "memory_mb": metrics[tags.MEMORY_GROWTH_MB],
        "train_tokens_per_s": metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN],
        "infer_tokens_per_s": metrics[tags.VAL_TOKENS_PER_S],  # the median over validations
        "epoch_s": metrics[tags.EPOCH_S],
        "time_to_best_s": best.get(tags.ELAPSED_S),
        "best_val_acc": best.get(tags.VAL_ACC),
        "best_val_f1": best.get(tags.VAL_F1),
        "test_acc": test.get(tags.TEST_ACC),
        "test_f1": test.get(tags.TEST_F1),
        # One point per validation: its number, seconds since fit started, accuracy.
        "curve": [[i, entry[tags.ELAPSED_S], entry[tags.VAL_ACC]] for i, entry in enumerate(metrics["history"])
                  if entry[tags.ELAPSED_S] is not None and entry[tags.VAL_ACC] is not None],
    }


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def relay_epochs(log: Path, name: str, offset: int) -> int:
    """Print the epoch lines (progress.py's) that ``log`` gained after ``offset``, each under the
    run's name; the offset of the first line not yet whole."""
    if not log.is_file():
        return offset
    with log.open("rb") as f:
        f.seek(offset)
        added = f.read()
    whole = added[: added.rfind(b"\n") + 1]
    for line in whole.decode("utf-8", "replace").splitlines():
        if line.startswith("epoch "):
            print(f"  {name}: {line}", flush=True)
    return offset + len(whole)


def run_one(fit_args: list[str], cell: str, seed: int, fraction: float | None, runs: Path,
            start: str | None = None) -> dict:
    name = run_name(cell, seed, fraction)
    run_dir, record_file = runs / name, runs / name / "record.json"
    if record_file.is_file():
        print(f"{name}: finished before, skipped", flush=True)
        return json.loads(record_file.read_text())
    if run_dir.exists() and not (run_dir / "fit.log").is_file():  # compare deletes only its own runs
        raise UserError(f"{run_dir} exists but is not a run of compare; fix: choose another --output_dir")
    shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short: start it again
    args = [*fit_args, f"--model.cell_type={cell}", f"--seed_everything={seed}",
            *([] if fraction is None else [f"--data.train_fraction={fraction}"]),
            *([] if start is None else [f"--model.init_from={start}"])]
    started = time.perf_counter()
    run_dir.mkdir(parents=True)
    # A process of its own per run (its peak memory is its own), started as Python starts one
    # afresh (spawn): nothing of this process's state reaches it. fit.log, not a terminal, gets
    # one line per epoch (progress.py).
    log = run_dir / "fit.log"
    child = multiprocessing.get_context("spawn").Process(target=fit_in_child, args=(args, run_dir, log))
    print(f"{name}: training (its output: {log})", flush=True)
    child.start()
    try:
        shown = 0
        while child.is_alive():  # its epoch lines here as they come: compare was silent for whole runs
            child.join(1.0)
            shown = relay_epochs(log, name, shown)
    finally:  # Ctrl-C, SIGTERM: a run cut short starts again from scratch next time, so no need to wait for it
        if child.is_alive():
            child.kill()
            child.join()
    if child.exitcode != 0:
        lines = (run_dir / "fit.log").read_text().strip().splitlines() or [""]
        if child.exitcode == 2:  # a bad argument or bad data: fit's own one-line message says it all
            shutil.rmtree(run_dir, ignore_errors=True)
            raise UserError(f"{name}: {lines[-1].removeprefix('error: ')}")
        sys.exit(f"{name} failed (exit code {child.exitcode}); its output: {run_dir / 'fit.log'}")
    record = {"cell_type": cell, "seed": seed, "train_fraction": fraction or 1.0, "init_from": start,
              "wall_s": time.perf_counter() - started, **read_record(run_dir)}
    with atomic_write(record_file, "x", fix="choose another --output_dir") as f:
        f.write(json.dumps(record, indent=1))  # the record's presence marks the run finished
    print(f"{name}: test acc {_figure(record['test_acc'])}, "
          f"best val acc {_figure(record['best_val_acc'])}, {record['wall_s']:.0f} s", flush=True)
    return record


def compare(fit_args: list[str], cell_types: list[str], seeds: int, train_fractions: list[float] | None,
            output_dir: str, starts: dict[str, str] | None = None) -> list[dict]:
    out = Path(output_dir)
    runs = out / "runs"
    for folder in (out, runs):  # before the first fit, not after it
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--output_dir {output_dir}: {folder} is a file, not a folder; "
                            f"fix: choose another --output_dir")
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output_dir {output_dir}: cannot create {runs} ({error.strerror}); "
                        f"fix: choose another --output_dir") from None
    records = [
        run_one(fit_args, cell, seed, fraction, runs, (starts or {}).get(cell))
        for fraction in (train_fractions or [None])
        for cell in cell_types
        for seed in range(1, seeds + 1)
    ]
    print(report.write(records, out, machine=report.machine()))
    return records
