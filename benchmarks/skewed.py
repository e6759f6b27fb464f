"""Skewed classes (issue 32): plain cross-entropy, cross-entropy with class weights, and the focal
loss (with and without the weights as its alpha), side by side on a 95:5 set made from SST-2.

    python benchmarks/skewed.py --seeds 42,43,44           # every arm, 3 seeds
    python benchmarks/skewed.py --arms plain,focal --seeds 42

The set (written to ``--out``/data, the same for every seed): positive sentences made the 5%
minority. train: 9,500 negative and 500 positive rows of SST-2's train.tsv; validation: 855 and
45 other train.tsv rows; test: every negative sentence of SST-2's validation.tsv and test.tsv
(1,340) and 70 of their positive ones, so that test is whole sentences never trained on, at the
training split's skew. Each arm fits with configs/sst2_local.yaml's settings (its checkpoint kept
by validation macro-F1, as always) in a ``python -m project`` process of its own; the kept
checkpoint then labels the test file with ``predict``. Prints, per arm, the test macro-F1 and the
minority class's precision, recall and F1: median (min-max) over the seeds, and each arm's
macro-F1 against plain cross-entropy's of the same seed. Results go to ``--out``/results.json as
each run ends; a run found there is not run again.

Needs ../shared/data/sst2.
"""

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from seeded_runs import ROOT, Results, arguments, fit, scores, spread


SST2 = ROOT.parent / "shared" / "data" / "sst2"
ARMS = {
    "plain": [],
    "weighted": ["--model.class_weights=auto"],
    "focal": ["--model.loss=focal"],
    "focal_weighted": ["--model.loss=focal", "--model.class_weights=auto"],
}
MINORITY = "1"  # SST-2's positive label


def read(name: str) -> list[tuple[str, str]]:
    with (SST2 / name).open(encoding="utf-8") as f:
        return [(row["sentence"], row["label"]) for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def make_data(folder: Path) -> dict[str, str]:
    """The 95:5 split files (csv), drawn with a fixed seed; their paths by split."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    train = read("train.tsv")
    rng.shuffle(train)
    by_label = {label: [row for row in train if row[1] == label] for label in ("0", "1")}
    held = read("validation.tsv") + read("test.tsv")
    rng.shuffle(held)
    negatives = [row for row in held if row[1] == "0"]
    minority = round(len(negatives) * 5 / 95)
    splits = {
        "train": by_label["0"][:9_500] + by_label["1"][:500],
        "validation": by_label["0"][9_500:10_355] + by_label["1"][500:545],
        "test": negatives + [row for row in held if row[1] == "1"][:minority],
    }
    paths = {}
    for split, rows in splits.items():
        rng.shuffle(rows)
        paths[split] = str(folder / f"{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows(rows)
    return paths


def minority_scores(labels: list[str], predicted: list[str]) -> dict[str, float]:
    hit = sum(t == p == MINORITY for t, p in zip(labels, predicted))
    precision = hit / max(1, sum(p == MINORITY for p in predicted))
    recall = hit / max(1, sum(t == MINORITY for t in labels))
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def run(arm: str, seed: int, paths: dict[str, str], out: Path, threads: int) -> dict:
    folder = fit(["--config=configs/sst2_local.yaml", f"--seed_everything={seed}", *ARMS[arm]], paths,
                 out / f"{arm}-s{seed}", out / f"{arm}-s{seed}.log", threads)
    metrics, best = scores(folder), next(folder.glob("checkpoints/best-*.ckpt"))
    lines = subprocess.run([sys.executable, "-m", "project", "predict", f"--ckpt_path={best}",
                            f"--input={paths['test']}", "--text_column=sentence"], cwd=ROOT,
                           env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                           capture_output=True, text=True, check=True).stdout.splitlines()
    with open(paths["test"], encoding="utf-8") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    predicted = [json.loads(line)["label"] for line in lines]
    return {"macro_f1": metrics["test/f1"], "acc": metrics["test/acc"], "minority": minority_scores(labels, predicted)}


def main() -> None:
    args = arguments(__doc__, "skewed", arms=",".join(ARMS))
    out, seeds = args.out, args.seeds
    paths = make_data(out / "data")
    recorded, arms = Results(out), args.arms.split(",")
    for seed in seeds:
        for arm in arms:
            recorded.get(f"{arm}-s{seed}", lambda: run(arm, seed, paths, out, args.threads))
    results = recorded.found
    print(f"\nSST-2 made 95:5 (positive the minority), test {sum(1 for _ in open(paths['test'])) - 1:,} sentences; "
          f"test figures in %, median (min-max) of seeds {', '.join(map(str, seeds))}")
    print("| loss | macro-F1 | minority precision | minority recall | minority F1 | macro-F1 vs plain, per seed |")
    print("|---|---|---|---|---|---|")
    for arm in arms:
        rows = [results[f"{arm}-s{seed}"] for seed in seeds]
        plain = [results.get(f"plain-s{seed}", {}).get("macro_f1") for seed in seeds]
        gains = ", ".join(f"{100 * (r['macro_f1'] - p):+.2f}" for r, p in zip(rows, plain) if p is not None)
        print(f"| {arm} {' '.join(ARMS[arm])} | {spread([r['macro_f1'] for r in rows])} | "
              f"{spread([r['minority']['precision'] for r in rows])} | {spread([r['minority']['recall'] for r in rows])} | "
              f"{spread([r['minority']['f1'] for r in rows])} | {gains} |")


if __name__ == "__main__":
    main()
