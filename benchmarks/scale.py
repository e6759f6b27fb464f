"""Memory at scale: a generated 1,000,000-row corpus through preparation (load, checks, tokenizer
training, tokenizing, caching) and a training-epoch slice, against SST-2's 67,349 rows through
the same, side by side. Each is a fresh ``python -m project fit`` process with an empty cache;
its peak RSS is read from the kernel when it exits.

    python benchmarks/scale.py                 # 1,000,000 rows
    python benchmarks/scale.py --rows 200000 --repeats 1

Prints peak RSS of each, the ratio, and wall times. Bounded memory comes from memory-mapped
Arrow everywhere: no Python list of all rows or of all token ids is ever built.
"""

import argparse
import csv
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SST2 = ROOT.parent / "shared" / "data" / "sst2"
STEPS = ["--trainer.max_steps=100", "--trainer.limit_val_batches=20", "--test_after_fit=false",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--data.batch_size=64", "--data.max_length=64"]


def generate(path: Path, rows: int) -> None:
    """SST-2-like rows: 5-40 words from a 50,000-word Zipf vocabulary, a binary label that the
    words carry, streamed to disk (the generator itself holds one row at a time)."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(50_000)]
    weights = [1 / (i + 1) for i in range(len(words))]
    cumulative = list(itertools.accumulate(weights))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        for _ in range(rows):
            text = rng.choices(words, cum_weights=cumulative, k=rng.randint(5, 40))
            label = int(sum(len(w) for w in text) % 2)
            writer.writerow([" ".join(text), label])


def run(files: dict[str, str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "project", "fit", f"--data.data_files={files}",
                   "--data.text_column=sentence", f"--data.cache_dir={tmp}/cache",
                   f"--trainer.default_root_dir={tmp}", *STEPS]
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env={**os.environ, "HF_DATASETS_CACHE": f"{tmp}/hf"})
        err = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(command)} failed:\n{err.decode()[-3000:]}")
        return usage.ru_maxrss / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.csv"
        started = time.perf_counter()
        generate(big, args.rows)
        print(f"generated {args.rows:,} rows ({big.stat().st_size / 2**20:.0f} MB csv) in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        sst2 = {"train": str(SST2 / "train.tsv"), "validation": str(SST2 / "validation.tsv")}
        ratios, peaks = [], []
        for repeat in range(args.repeats):
            small_peak, small_wall = run(sst2)
            big_peak, big_wall = run({"train": str(big)})
            ratios.append(big_peak / small_peak)
            peaks.append((small_peak, big_peak))
            print(f"repeat {repeat + 1}: SST-2 ({67_349:,} rows) peak RSS {small_peak:,.0f} MB in {small_wall:.0f} s; "
                  f"{args.rows:,} rows peak RSS {big_peak:,.0f} MB in {big_wall:.0f} s; ratio {ratios[-1]:.2f}",
                  flush=True)
        print(f"median: SST-2 {statistics.median(p[0] for p in peaks):,.0f} MB, {args.rows:,} rows "
              f"{statistics.median(p[1] for p in peaks):,.0f} MB, ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
