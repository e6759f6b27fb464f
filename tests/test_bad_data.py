"""Bad data through the real CLI: one line on stderr naming the file, column or row and the fix,
exit code 2, and nothing left in the tokenization cache."""

from pathlib import Path

import pytest

from tests.helpers import make_rows, refused, write_class_folders, write_rows


def run_fit(tmp_path: Path, *args: str) -> str:
    """The one error line of a refused fit (the contract: exit code 2, no traceback, nothing
    half-written), which left nothing in the tokenization cache."""
    cache = tmp_path / "cache"
    err = refused(["fit", "--data.text_column=sentence", f"--data.cache_dir={cache}", "--trainer.max_steps=1",
                   f"--trainer.default_root_dir={tmp_path}", *args], tmp_path)
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-cached
    return err


def files(tmp_path: Path, ext: str = ".csv", **bad_rows: list[dict]) -> str:
    """--data.data_files with good generated splits, and the rows of ``bad_rows[split]``
    appended to that split."""
    paths = {}
    for i, split in enumerate(("train", "validation", "test")):
        rows = make_rows(30 if split == "train" else 9, seed=i) + bad_rows.get(split, [])
        paths[split] = write_rows(tmp_path / f"{split}{ext}", rows)
    return f"--data.data_files={paths}"


def test_missing_column(tmp_path: Path) -> None:
    err = run_fit(tmp_path, files(tmp_path), "--data.text_column=review")
    assert "train.csv has no column 'review' (it has: sentence, label)" in err
    assert "--data.text_column" in err


def test_empty_split(tmp_path: Path) -> None:
    arg = files(tmp_path)
    (tmp_path / "test.csv").write_text("sentence,label\n")  # a header and no rows
    assert "test.csv (test) has no rows" in run_fit(tmp_path, arg)


def test_empty_file(tmp_path: Path) -> None:
    arg = files(tmp_path)
    (tmp_path / "validation.csv").write_text("")
    assert "validation.csv is empty" in run_fit(tmp_path, arg)


@pytest.mark.parametrize("ext", [".jsonl", ".parquet"])
def test_missing_text(tmp_path: Path, ext: str) -> None:
    err = run_fit(tmp_path, files(tmp_path, ext, train=[{"sentence": None, "label": "pos"}]))
    assert f"train{ext} line 31: 'sentence' is missing" in err


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text(tmp_path: Path, text: str) -> None:
    err = run_fit(tmp_path, files(tmp_path, validation=[{"sentence": text, "label": "pos"}]))
    assert "validation.csv line 11: 'sentence' is empty" in err  # header + 9 rows, then ours


@pytest.mark.parametrize("split", ["validation", "test"])
def test_label_seen_only_outside_train(tmp_path: Path, split: str) -> None:
    err = run_fit(tmp_path, files(tmp_path, **{split: [{"sentence": "good", "label": "maybe"}]}))
    assert f"{split}.csv line 11: label 'maybe' of the {split} split never occurs in train" in err
    assert "(train has: neg, neu, pos)" in err


def test_float_labels(tmp_path: Path) -> None:
    rows = [{"sentence": r["sentence"], "label": 0.5 + i % 2} for i, r in enumerate(make_rows(30, 0))]
    path = write_rows(tmp_path / "train.csv", rows)
    err = run_fit(tmp_path, f"--data.data_files={{train: {path}}}")
    assert "train.csv line 2: 'label' holds floats (0.5)" in err


def test_non_utf8_bytes(tmp_path: Path) -> None:
    arg = files(tmp_path)
    with open(tmp_path / "test.csv", "ab") as f:
        f.write("un café très bon,pos\n".encode("latin-1"))
    err = run_fit(tmp_path, arg)
    assert "test.csv: not UTF-8" in err and "iconv -f latin1 -t utf-8" in err


def test_row_92_a_utf16_file_is_told_to_convert_from_utf16(tmp_path: Path) -> None:
    """The fix said ``iconv -f latin1``, which turns UTF-16 into mojibake; its byte order mark says what it is."""
    arg = files(tmp_path)
    train = tmp_path / "train.csv"
    train.write_bytes(train.read_text(encoding="utf-8").encode("utf-16"))
    assert "train.csv: not UTF-8" in (err := run_fit(tmp_path, arg)) and "iconv -f utf-16 -t utf-8" in err


def test_a_one_megabyte_row(tmp_path: Path) -> None:
    huge = {"sentence": "good " * 200_000, "label": "pos"}
    err = run_fit(tmp_path, files(tmp_path, train=[huge]))
    assert "train.csv line 32: 'sentence' is 1,000,000 characters long (limit 100,000)" in err
    assert "--data.max_chars" in err


def test_unknown_file_extension(tmp_path: Path) -> None:
    (tmp_path / "train.xlsx").write_bytes(b"PK\x03\x04")
    err = run_fit(tmp_path, f"--data.data_files={{train: {tmp_path / 'train.xlsx'}}}")
    assert "train.xlsx: unknown file extension '.xlsx'" in err and ".csv" in err


def test_missing_file(tmp_path: Path) -> None:
    err = run_fit(tmp_path, f"--data.data_files={{train: {tmp_path / 'nope.csv'}}}")
    assert "nope.csv: no such file" in err


def test_bad_tokenizer_file(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    err = run_fit(tmp_path, files(tmp_path), f"--data.tokenizer={tmp_path / 'tokenizer.json'}")
    assert "tokenizer.json" in err


def test_class_folder_only_in_test(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "corpus" / "train", {"neg": 6, "pos": 6})
    write_class_folders(tmp_path / "corpus" / "test", {"neg": 6, "pos": 6, "odd": 6})
    err = run_fit(tmp_path, f"--data.path={tmp_path / 'corpus'}")
    assert "corpus/test/odd: class folder not in train (train has: neg, pos)" in err
