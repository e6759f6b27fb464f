"""Data preparation time, cold and warm, and the padding waste of training batches.

    python benchmarks/data_prep.py [--config configs/sst2_local.yaml] [--runs 3]

Each run is a fresh Python process that builds the config's DataModule data (all splits) and
times it from after the imports to tokenized, memory-mapped splits:
  cold: empty Hugging Face and tokenization caches: read files, check, train the tokenizer,
        tokenize every split, write the cache;
  warm: the same settings again: a cache hit, nothing tokenized.
Prints medians of ``--runs`` runs of each (and the import time, which is the same for both and
not part of preparation), then the padding waste of an epoch of training batches with the
length-bucketed sampler next to that of plain random batches.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(config: str, cache: str) -> None:
    """One preparation, in this fresh process; prints its figures as JSON."""
    started = time.perf_counter()
    import numpy as np
    import yaml

    from project.data.batching import padding_waste
    from project.data.datamodule import TextDataModule

    imported = time.perf_counter()
    settings = yaml.safe_load(Path(config).read_text()).get("data") or {}
    dm = TextDataModule(**settings, cache_dir=cache)
    sizes = {split: len(ds) for split, ds in dm.dataset.items()}
    prepared = time.perf_counter()

    sampler = dm.sampler("train", shuffle=True)
    lengths, wastes = sampler.lengths, []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        wastes.append(padding_waste(lengths, sampler.batches()))
    order = np.random.default_rng(0).permutation(len(lengths))
    unbucketed = padding_waste(lengths, [order[i : i + dm.hparams.batch_size]
                                         for i in range(0, len(order), dm.hparams.batch_size)])
    print(json.dumps({
        "import_s": imported - started, "prepare_s": prepared - imported, "hit": dm.cache_hit,
        "sizes": sizes, "vocab": dm.vocab_size, "labels": dm.label_names, "batches": len(sampler),
        "waste": statistics.median(wastes), "unbucketed_waste": unbucketed,
    }))


def run(config: str, cache: Path) -> dict:
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache / "hf"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--config", config, "--cache", str(cache / "project")],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"preparation failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/sst2_local.yaml")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.config, args.cache)

    cold, warm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            cold.append(run(args.config, Path(tmp)))  # empty caches
            warm.append(run(args.config, Path(tmp)))  # the same caches again
    assert not any(r["hit"] for r in cold) and all(r["hit"] for r in warm)

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    last = cold[-1]
    print(f"data: {args.config}: {last['sizes']}, vocabulary {last['vocab']}, labels {last['labels']}")
    print(f"preparation, median of {args.runs} fresh processes (imports excluded, "
          f"{median(cold + warm, 'import_s'):.2f} s):")
    print(f"  cold (empty caches):   {median(cold, 'prepare_s'):6.2f} s")
    print(f"  warm (cache hit):      {median(warm, 'prepare_s'):6.2f} s   "
          f"cold / warm = {median(cold, 'prepare_s') / median(warm, 'prepare_s'):.0f}x")
    print(f"training batches per epoch: {last['batches']}; padding waste, median of 5 epochs:")
    print(f"  length-bucketed:       {last['waste']:6.1%}")
    print(f"  random batches:        {last['unbucketed_waste']:6.1%}   "
          f"padded tokens per real token: {1 / (1 - last['unbucketed_waste']):.2f} vs "
          f"{1 / (1 - last['waste']):.2f}")


if __name__ == "__main__":
    main()
