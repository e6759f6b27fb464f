"""Tokenized data is cached on disk: equal settings load it, any change makes a new entry."""

import os
from pathlib import Path

import pytest

from project.commands.cli import main
from project.data.datamodule import TextDataModule
from tests.helpers import QUICK, make_rows, token_ids, write_rows


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    rows = make_rows(40, seed=5)
    return {"train": write_rows(tmp_path / "train.csv", rows[:30]),
            "test": write_rows(tmp_path / "test.csv", rows[30:])}


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
        assert token_ids(second, split) == token_ids(first, split)


@pytest.mark.slow
def test_a_cli_fit_and_a_datamodule_with_the_same_arguments_share_one_entry(files: dict[str, str],
                                                                            tmp_path: Path) -> None:
    """The key is made of the DataModule's own arguments only: what Lightning's CLI adds to its
    hparams (``_instantiator``) would otherwise give the two different entries."""
    cache = tmp_path / "cache"
    cli = main(["fit", f"--data.data_files={files}", "--data.text_column=sentence", f"--data.cache_dir={cache}",
                f"--trainer.default_root_dir={tmp_path / 'run'}", *QUICK])
    assert cli.datamodule.cache_hit is False and len(entries(cache)) == 1
    direct = module(files, cache, min_frequency=1)  # QUICK's one data setting
    direct.dataset  # noqa: B018
    assert direct.cache_hit is True and len(entries(cache)) == 1
    for split in direct.dataset:
        assert token_ids(direct, split) == token_ids(cli.datamodule, split)


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
        assert token_ids(two, split) == token_ids(one, split)


def test_bad_data_leaves_no_entry_and_no_temporary_files(files: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with open(files["test"], "a") as f:
        f.write("a line with a label train never had,maybe\n")
    with pytest.raises(ValueError, match="maybe"):
        module(files, cache).dataset  # noqa: B018
    assert entries(cache) == []
    assert not [p for p in Path(os.path.dirname(files["test"])).iterdir() if p.name.endswith(".tmp")]
