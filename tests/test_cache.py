"""Tokenized data is cached on disk: equal settings load it, any change makes a new entry."""

import os
from pathlib import Path

import pytest

from conftest import make_rows, write_rows
from project.data import TextDataModule


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    rows = make_rows(40, seed=5)
    return {"train": write_rows(tmp_path / "train.csv", rows[:30]),
            "test": write_rows(tmp_path / "test.csv", rows[30:])}


def ids(dm: TextDataModule, split: str) -> list[list[int]]:
    return dm.dataset[split].with_format(None)["input_ids"]


def module(files: dict[str, str], cache: Path, **settings) -> TextDataModule:
    return TextDataModule(data_files=files, text_column="sentence", cache_dir=str(cache), **settings)


def test_second_run_with_equal_settings_is_a_cache_hit(files: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = module(files, cache)
    first.dataset  # noqa: B018
    assert first.cache_hit is False and len(entries(cache)) == 1
    entry = cache / entries(cache)[0]
    written = {p: p.stat().st_mtime_ns for p in entry.rglob("*")}
    second = module(files, cache, batch_size=4, num_workers=0)  # loader knobs: same entry
    second.dataset  # noqa: B018
    assert second.cache_hit is True and entries(cache) == [entry.name]
    assert {p: p.stat().st_mtime_ns for p in entry.rglob("*")} == written  # nothing rewritten
    assert second.tokenizer.to_str() == first.tokenizer.to_str()
    assert second.label_names == first.label_names
    for split in first.dataset:
        assert ids(second, split) == ids(first, split)


@pytest.mark.parametrize(
    "change", [{"lowercase": False}, {"max_length": 5}, {"tokenizer": "bpe"}, {"seed": 3},
               {"min_frequency": 1}, {"validation_size": 0.2}],
)
def test_any_changed_setting_makes_a_new_entry(files: dict[str, str], tmp_path: Path, change: dict) -> None:
    cache = tmp_path / "cache"
    module(files, cache).dataset  # noqa: B018
    changed = module(files, cache, **change)
    changed.dataset  # noqa: B018
    assert changed.cache_hit is False and len(entries(cache)) == 2


def test_a_changed_source_file_makes_a_new_entry(files: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    module(files, cache).dataset  # noqa: B018
    with open(files["train"], "a") as f:
        f.write("a brand new superb line,pos\n")
    changed = module(files, cache)
    assert len(changed.dataset["train"]) + len(changed.dataset["validation"]) == 31
    assert changed.cache_hit is False and len(entries(cache)) == 2


def test_num_proc_tokenizes_the_same(files: dict[str, str], tmp_path: Path) -> None:
    one = module(files, tmp_path / "one")
    two = module(files, tmp_path / "two", num_proc=2)
    for split in one.dataset:
        assert ids(two, split) == ids(one, split)


def test_bad_data_leaves_no_entry_and_no_temporary_files(files: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with open(files["test"], "a") as f:
        f.write("a line with a label train never had,maybe\n")
    with pytest.raises(ValueError, match="maybe"):
        module(files, cache).dataset  # noqa: B018
    assert entries(cache) == []
    assert not [p for p in Path(os.path.dirname(files["test"])).iterdir() if p.name.endswith(".tmp")]
