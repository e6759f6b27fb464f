"""What ``--early_stopping.patience P`` would have saved and cost, on BBC News (``fit`` with no
data flags: 10 epochs) and SST-2 (``configs/sst2_local.yaml``: 5 epochs), from full runs.

    python benchmarks/early_stopping.py --threads 1             # both, seeds 42,1,2, P = 1..5
    python benchmarks/early_stopping.py --datasets bbc --seeds 42,1,2,3,4 --runs /tmp/es

The learning-rate schedule (one-cycle over ``max_epochs``) does not depend on when a run stops,
and early stopping draws no random numbers, so a run stopped by patience P is the first epochs
of the full run: its per-epoch ``val/f1`` says where P stops (Lightning's rule: stop after P
validations in a row without a strictly higher ``val/f1``) and which checkpoint it keeps (the
first best up to there). Each full run keeps every epoch's checkpoint; the kept ones are tested.
tests/test_early_stopping.py checks the rule against Lightning's callback in tiny real fits; a
real BBC fit with ``--seed_everything 3 --early_stopping.patience 2`` (one thread) stopped after
epoch 4 and kept epoch 2 at the test accuracy predicted here (0.9283).

Per P, medians over seeds of: epochs run (and each seed's), seconds of ``fit`` saved
(``perf/elapsed_s`` at the stop against the end) and its share (and the largest share), best val
macro-F1 and test accuracy kept, each minus the full run's ([min, max] over seeds). Runs are
kept in ``--runs`` and reused, so a second call only reads and tests. ``--threads 1`` on a
shared machine: seconds are then those of one thread, the shares still hold.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project import tags

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"bbc": [], "sst2": [f"--config={ROOT / 'configs' / 'sst2_local.yaml'}"]}
FULL = ["--early_stopping.patience=null", "--checkpoint.save_top_k=-1", "--test_after_fit=false",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def stop_epoch(f1s: list[float], patience: int, min_delta: float = 0.0) -> int:
    """The last epoch (0-based) a run with this patience trains, as Lightning's EarlyStopping
    decides it: a new best must beat the best so far by more than min_delta."""
    best, wait = -math.inf, 0
    for epoch, f1 in enumerate(f1s):
        if f1 - min_delta > best:
            best, wait = f1, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return len(f1s) - 1


def kept_epoch(f1s: list[float], last: int) -> int:
    """The checkpoint ModelCheckpoint keeps after epochs 0..last: the first best val/f1."""
    return max(range(last + 1), key=lambda e: (f1s[e], -e))


def full_run(dataset: str, seed: int, runs: Path, threads: int | None) -> Path:
    """One full fit (reused when already finished); returns its version folder."""
    root = runs / f"{dataset}-seed{seed}"
    done = root / "done.json"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)  # an unfinished one would leave version_0 behind
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        args = [sys.executable, "-m", "project", "fit", *DATASETS[dataset], f"--seed_everything={seed}", *FULL,
                f"--trainer.default_root_dir={root}"]
        started = time.perf_counter()
        subprocess.run(args, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        done.write_text(json.dumps({"wall_s": time.perf_counter() - started}))
        print(f"  {dataset} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return next((root / "lightning_logs").glob("*version_0"))  # <data>-<cell>-version_0


def test_accuracy(run: Path, epoch: int, cache: dict) -> float:
    """Test accuracy of the checkpoint saved after this epoch, through ``python -m project test``."""
    if (run, epoch) not in cache:
        from project.commands.cli import main

        ckpt = next((run / "checkpoints").glob(f"best-epoch={epoch}-*.ckpt"))
        with contextlib.redirect_stdout(sys.stderr):  # Lightning's test table; stdout is for ours
            cli = main(["test", f"--config={run / 'config.yaml'}", f"--ckpt_path={ckpt}", "--trainer.logger=false",
                        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
        cache[run, epoch] = float(cli.trainer.callback_metrics[tags.TEST_ACC])
    return cache[run, epoch]


def measure(dataset: str, seeds: list[int], patiences: list[int], runs: Path, threads: int | None) -> list[dict]:
    """One record per seed: the val/f1 curve, the full run's figures, and per patience its own."""
    records, cache = [], {}
    for seed in seeds:
        run = full_run(dataset, seed, runs, threads)
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        f1s = [e.value for e in events.Scalars(tags.VAL_F1)]
        elapsed = [e.value for e in events.Scalars(tags.ELAPSED_S)]
        last = len(f1s) - 1
        full = kept_epoch(f1s, last)
        record = {"seed": seed, "val_f1": f1s, "elapsed_s": elapsed, "best_epoch": full,
                  "val_f1_kept": f1s[full], "test_acc_kept": test_accuracy(run, full, cache), "by_patience": {}}
        for p in patiences:
            stop = stop_epoch(f1s, p)
            kept = kept_epoch(f1s, stop)
            record["by_patience"][p] = {
                "epochs": stop + 1, "saved_s": elapsed[last] - elapsed[stop], "saved_share": 1 - elapsed[stop] / elapsed[last],
                "val_f1_delta": f1s[kept] - f1s[full], "test_acc_delta": test_accuracy(run, kept, cache) - record["test_acc_kept"]}
        records.append(record)
    return records


def table(dataset: str, records: list[dict], patiences: list[int]) -> str:
    med = statistics.median
    epochs = len(records[0]["val_f1"])
    lines = [f"### {dataset}: {epochs} epochs, seeds {', '.join(str(r['seed']) for r in records)} (medians; "
             f"[min, max] of the deltas)", "",
             "| patience | epochs run (each seed) | runs stopped early | fit time saved (max) | best val macro-F1 kept "
             "| test acc kept |",
             "|---|---|---|---|---|---|",
             f"| off (full run) | {epochs} | 0/{len(records)} | 0 s | {med(r['val_f1_kept'] for r in records):.4f} | "
             f"{med(r['test_acc_kept'] for r in records):.4f} |"]
    for p in patiences:
        rows = [r["by_patience"][p] for r in records]
        early = sum(row["epochs"] < epochs for row in rows)
        val = [row["val_f1_delta"] for row in rows]
        test = [row["test_acc_delta"] for row in rows]
        each = ", ".join(str(row["epochs"]) for row in rows)
        lines.append(f"| {p} | {med(row['epochs'] for row in rows):g} ({each}) | {early}/{len(rows)} | "
                     f"{med(row['saved_s'] for row in rows):.0f} s, {med(row['saved_share'] for row in rows):.0%} "
                     f"({max(row['saved_share'] for row in rows):.0%}) | "
                     f"{med(val):+.4f} [{min(val):+.4f}, {max(val):+.4f}] | "
                     f"{med(test):+.4f} [{min(test):+.4f}, {max(test):+.4f}] |")
    lines += ["", "val/f1 per epoch (best kept by the full run in brackets):"]
    for r in records:
        curve = " ".join(f"[{v:.3f}]" if e == r["best_epoch"] else f"{v:.3f}" for e, v in enumerate(r["val_f1"]))
        lines.append(f"  seed {r['seed']}: {curve}  (full-run test acc {r['test_acc_kept']:.4f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="bbc,sst2", help="comma-separated: bbc, sst2")
    parser.add_argument("--seeds", default="42,1,2", help="comma-separated --seed_everything values")
    parser.add_argument("--patience", default="1,2,3,4,5", help="comma-separated patiences to simulate")
    parser.add_argument("--runs", default="/tmp/early_stopping_runs", help="where the full runs are kept")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for each fit (1 on a machine shared with other "
                        "jobs: two threads that wait on each other there ran 40x below the README's speed)")
    args = parser.parse_args()
    sys.argv[1:] = []  # LightningCLI, called in-process for the tests, would read ours
    seeds = [int(s) for s in args.seeds.split(",")]
    patiences = [int(p) for p in args.patience.split(",")]
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        records = measure(dataset, seeds, patiences, runs, args.threads)
        (runs / f"{dataset}.json").write_text(json.dumps(records, indent=1))
        print(table(dataset, records, patiences) + "\n", flush=True)


if __name__ == "__main__":
    main()
