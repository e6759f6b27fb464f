"""Every kind of source becomes the same text + label splits: local files by extension, folders
of class folders (flat or per split), and the `load_dataset` path used for hub names."""

from pathlib import Path

import pytest

from project.data import TextDataModule
from tests.helpers import make_rows, token_ids, write_class_folders, write_rows


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_local_files_are_read_by_extension(tmp_path: Path, extension: str) -> None:
    rows = make_rows(30, seed=1)
    rows[0]["sentence"] = 'null NA "quoted" text'  # neither missing values nor csv quoting in tsv
    files = {
        split: write_rows(tmp_path / f"{split}{extension}", part)
        for split, part in (("train", rows[:20]), ("validation", rows[20:25]), ("test", rows[25:]))
    }
    dm = TextDataModule(data_files=files, text_column="sentence", min_frequency=1, lowercase=False)
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 20, "validation": 5, "test": 5}
    assert dm.label_names == ["neg", "neu", "pos"]
    assert dm.tokenizer.decode(token_ids(dm, "train")[0]) == 'null NA " quoted " text'


def test_int_labels_keep_their_order_and_split_names_are_configurable(tmp_path: Path) -> None:
    rows = [{"review": row["sentence"], "stars": i % 3 + 1} for i, row in enumerate(make_rows(30, 1))]
    files = {"fit": write_rows(tmp_path / "a.jsonl", rows[:24]), "dev": write_rows(tmp_path / "b.jsonl", rows[24:])}
    dm = TextDataModule(
        data_files=files, train_split="fit", validation_split="dev", test_split=None,
        text_column="review", label_column="stars",
    )
    assert dm.label_names == ["1", "2", "3"]
    assert set(dm.dataset) == {"train", "validation"} and len(dm.dataset["validation"]) == 6


def test_a_folder_of_class_folders_is_split_into_train_and_validation(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "corpus", {"b": 10, "a": 10})
    dm = TextDataModule(path=str(tmp_path / "corpus"), validation_size=0.2, min_frequency=1)
    assert dm.label_names == ["a", "b"]  # sorted folder names
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 16, "validation": 4}


def test_split_folders_of_class_folders_as_aclimdb(tmp_path: Path) -> None:
    root = tmp_path / "aclImdb"
    write_class_folders(root / "train", {"neg": 8, "pos": 8, "unsup": 5})
    write_class_folders(root / "test", {"neg": 3, "pos": 3})
    (root / "train" / "urls_pos.txt").write_text("not a review")  # loose files are ignored
    dm = TextDataModule(path=str(root), validation_size=0.25, min_frequency=1)
    assert dm.label_names == ["neg", "pos"]  # unsup: only in train, unlabelled, left out
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 12, "validation": 4, "test": 6}


def test_load_dataset_path_on_a_local_dataset_folder(tmp_path: Path) -> None:
    """The code path of hub names (`imdb`, `glue` + `sst2`), run on a folder `load_dataset`
    reads the way it reads a hub repository: one file per split, named for the split."""
    rows = make_rows(40, seed=2)
    write_rows(tmp_path / "train.csv", rows[:30])
    write_rows(tmp_path / "test.csv", rows[30:])
    dm = TextDataModule(path=str(tmp_path), text_column="sentence", revision=None, min_frequency=1)
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 27, "validation": 3, "test": 10}
    assert dm.label_names == ["neg", "neu", "pos"]


def test_a_classlabel_feature_keeps_its_names_and_order(tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["sad", "happy"])})
    rows = make_rows(24, seed=4)
    for split, part in (("train", rows[:16]), ("validation", rows[16:])):
        data = {"text": [r["sentence"] for r in part], "label": [int(r["label"] == "pos") for r in part]}
        Dataset.from_dict(data, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    files = {split: str(tmp_path / f"{split}.parquet") for split in ("train", "validation")}
    dm = TextDataModule(data_files=files, min_frequency=1)
    assert dm.label_names == ["sad", "happy"]  # the feature's order, not sorted
    labels = dm.dataset["train"].with_format(None)["label"]
    assert labels == [int(r["label"] == "pos") for r in rows[:16]]
