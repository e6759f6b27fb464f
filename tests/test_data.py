import csv
from collections import Counter

import pytest

from project.data.datamodule import TextDataModule
from project.data.sources import bbc_news_dir
from tests.helpers import token_ids


def labels(ds) -> list[int]:
    return list(ds.with_format(None)["label"])


@pytest.fixture(scope="module")
def bbc() -> TextDataModule:
    return TextDataModule()


@pytest.mark.slow
def test_bbc_split_sizes_labels_and_stratification(bbc: TextDataModule) -> None:
    splits = bbc.dataset
    assert {k: len(v) for k, v in splits.items()} == {"train": 1780, "validation": 222, "test": 223}
    folders = sorted(d.name for d in bbc_news_dir().iterdir() if d.is_dir())
    assert bbc.label_names == folders == ["business", "entertainment", "politics", "sports", "tech"]
    counts = {split: Counter(labels(ds)) for split, ds in splits.items()}
    for label in range(5):
        total = sum(c[label] for c in counts.values())
        assert abs(counts["validation"][label] - total / 10) <= 1
        assert abs(counts["test"][label] - total / 10) <= 1


@pytest.mark.slow
def test_bbc_split_is_reproducible(bbc: TextDataModule) -> None:
    again = TextDataModule()
    for split in ("train", "validation", "test"):
        assert labels(again.dataset[split]) == labels(bbc.dataset[split])
    assert again.tokenizer.to_str() == bbc.tokenizer.to_str()
    other_seed = TextDataModule(seed=7)
    assert labels(other_seed.dataset["test"]) != labels(bbc.dataset["test"])


def test_tokenizer_is_fitted_on_train_only(tiny_csv: dict[str, str]) -> None:
    dm = TextDataModule(data_files=tiny_csv, text_column="sentence", min_frequency=1)
    assert dm.tokenizer.token_to_id("superb") is not None  # a train word
    assert dm.tokenizer.token_to_id("zebraword") is None  # appears in test only
    assert dm.tokenizer.token_to_id("[PAD]") == 0 and dm.pad_id == 0


def test_string_labels_become_sorted_class_names(tiny_csv: dict[str, str]) -> None:
    dm = TextDataModule(data_files=tiny_csv, text_column="sentence")
    assert dm.label_names == ["neg", "neu", "pos"] and dm.num_classes == 3
    assert set(labels(dm.dataset["test"])) == {0, 1, 2}


def test_missing_validation_is_carved_from_train(tiny_csv: dict[str, str]) -> None:
    files = {"train": tiny_csv["train"], "test": tiny_csv["test"]}
    dm = TextDataModule(data_files=files, text_column="sentence", validation_size=0.2)
    assert len(dm.dataset["train"]) == 48 and len(dm.dataset["validation"]) == 12
    assert Counter(labels(dm.dataset["validation"])) == {0: 4, 1: 4, 2: 4}  # stratified
    again = TextDataModule(data_files=files, text_column="sentence", validation_size=0.2)
    assert token_ids(again, "validation") == token_ids(dm, "validation")  # same seed, same rows
    other = TextDataModule(data_files=files, text_column="sentence", validation_size=0.2, seed=1)
    assert token_ids(other, "validation") != token_ids(dm, "validation")


def test_eval_batches_are_sorted_by_length_and_padded_per_batch(tiny_csv: dict[str, str]) -> None:
    dm = TextDataModule(data_files=tiny_csv, text_column="sentence", max_length=12, batch_size=4)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    lengths = [length for batch in batches for length in batch["lengths"].tolist()]
    assert lengths == sorted(lengths) and len(lengths) == 15
    texts = [row["sentence"] for row in csv.DictReader(open(tiny_csv["validation"]))]
    assert sorted(min(len(dm.tokenizer.encode(t).ids), 12) for t in texts) == lengths
    for batch in batches:
        longest = int(batch["lengths"].max())
        assert batch["input_ids"].shape == (len(batch["lengths"]), longest)  # not max_length
        for row, length in zip(batch["input_ids"], batch["lengths"]):
            assert (row[length:] == dm.pad_id).all() and (row[:length] != dm.pad_id).all()


def test_three_or_more_text_columns_are_joined_with_the_separator(tmp_path) -> None:
    """(Two columns are a pair: tests/test_pairs.py.)"""
    rows = "Oil up,Prices rise again,wire,business\nGoal!,A late winner,desk,sport\n"
    (tmp_path / "train.csv").write_text("title,description,source,label\n" + rows * 5)
    files = {"train": str(tmp_path / "train.csv")}
    dm = TextDataModule(
        data_files=files, text_column=["title", "description", "source"], text_separator=" | ",
        validation_size=0.2, min_frequency=1,
    )
    texts = {dm.tokenizer.decode(x) for split in ("train", "validation") for x in token_ids(dm, split)}
    assert texts == {"oil up | prices rise again | wire", "goal ! | a late winner | desk"}
    assert dm.label_names == ["business", "sport"]
    assert dm.sep_id is None
    assert set(dm.dataset["train"].column_names) == {"input_ids", "length", "label", "row"}
    # The source's text, as written (the reports show mistakes so), is found by a batch's rows.
    rows = dm.dataset["train"].with_format(None)["row"]
    assert set(dm.texts("train", rows)) == {"Oil up | Prices rise again | wire", "Goal! | A late winner | desk"}


def warnings_for(split: str, rows: list[str], words: str, tiny_csv: dict[str, str], tmp_path,
                 caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings holding ``words`` that preparing tiny_csv with ``split`` made of ``rows``
    (under tiny_csv's header) gives."""
    header = open(tiny_csv["train"]).readline().strip()
    path = tmp_path / f"{split}-{len(list(tmp_path.glob('*.csv')))}.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        TextDataModule(data_files={**tiny_csv, split: str(path)}, text_column="sentence",
                       cache_dir=str(tmp_path / "cache")).dataset  # noqa: B018
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


def test_row_103_validation_or_test_texts_copied_from_train_are_counted(tiny_csv: dict[str, str], tmp_path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    rows = open(tiny_csv["train"]).read().splitlines()
    new = ["zebraword and quokka,pos", "a quokka of zebrawords,neg"]  # in no training text
    words = "test texts are also training texts"
    copies = warnings_for("test", [*rows[1:4], *new], words, tiny_csv, tmp_path, caplog)
    assert len(copies) == 1 and copies[0].startswith("Warning: 3 of 5 test texts are also training")
    assert warnings_for("test", new, words, tiny_csv, tmp_path, caplog) == []


def test_row_104_a_validation_split_of_one_class_is_said(tiny_csv: dict[str, str], tmp_path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A validation split of one class gave val_f1 1.0000 and a kept checkpoint that meant
    nothing, with no word but the calibration's (2026-12-05 trial, row 104)."""
    rows = open(tiny_csv["validation"]).read().splitlines()[1:]
    words = "validation split holds one class"
    one = warnings_for("validation", [r for r in rows if r.endswith(",pos")], words, tiny_csv, tmp_path, caplog)
    assert one == ["Warning: the validation split holds one class ('pos') of 3: its accuracy and macro-F1, and the "
                   "checkpoint kept by them, say little; fix: a validation split with every class, or none "
                   "(--data.validation_size then holds a share of train out)"]
    assert warnings_for("validation", rows, words, tiny_csv, tmp_path, caplog) == []


def test_one_file_alone_is_the_training_split(tiny_csv: dict[str, str]) -> None:
    """``--data.data_files train.csv`` (a path, not a mapping), as load_dataset(data_files=...) takes
    it: the training split, validation held out of it, no test."""
    alone = TextDataModule(data_files=tiny_csv["train"], text_column="sentence", min_frequency=1)
    mapped = TextDataModule(data_files={"train": tiny_csv["train"]}, text_column="sentence", min_frequency=1)
    assert set(alone.dataset) == {"train", "validation"}
    assert all(alone.dataset[s]["input_ids"] == mapped.dataset[s]["input_ids"] for s in ("train", "validation"))
