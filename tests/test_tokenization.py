"""Tokenizers trained on train only, each kind, or loaded from a tokenizer.json."""

from pathlib import Path

import pytest

from project.data.datamodule import TextDataModule
from project.data.tokenization import KINDS
from tests.helpers import token_ids


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_on_train_with_pad_and_unk_first(tiny_csv: dict[str, str], kind: str) -> None:
    dm = TextDataModule(data_files=tiny_csv, text_column="sentence", tokenizer=kind,
                        max_vocab_size=60, min_frequency=1)
    tok = dm.tokenizer
    assert tok.token_to_id("[PAD]") == 0 and tok.token_to_id("[UNK]") == 1 and dm.pad_id == 0
    assert 10 < dm.vocab_size <= 60
    for split in ("train", "validation", "test"):
        assert all(0 < len(x) for x in token_ids(dm, split))
        assert all(2 <= i < dm.vocab_size for x in token_ids(dm, split) for i in x if i != 1)
    # Train-only vocabulary: the word that occurs only in test is not one token.
    assert tok.token_to_id("zebraword") is None
    assert tok.encode("zebraword").tokens != ["zebraword"]


def test_lowercase_and_max_length(tiny_csv: dict[str, str]) -> None:
    lower = TextDataModule(data_files=tiny_csv, text_column="sentence", max_length=5)
    cased = TextDataModule(data_files=tiny_csv, text_column="sentence", lowercase=False)
    assert lower.tokenizer.encode("GREAT Film").tokens == ["great", "film"]
    assert cased.tokenizer.encode("GREAT film").ids[0] == 1  # unknown: train has only "great"
    assert max(len(x) for x in token_ids(lower, "train")) == 5
    assert max(len(x) for x in token_ids(cased, "train")) > 5


def test_min_frequency_drops_rare_words(tmp_path: Path) -> None:
    rows = "good good once,pos\nbad bad twice twice,neg\n" * 2 + "rare,neg\n"
    (tmp_path / "train.csv").write_text("sentence,label\n" + rows)
    files = {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "train.csv")}
    dm = TextDataModule(data_files=files, text_column="sentence", min_frequency=4)
    vocab = dm.tokenizer.get_vocab()
    assert {"good", "bad", "twice"} <= vocab.keys() and not {"once", "rare"} & vocab.keys()


def test_a_tokenizer_json_gives_the_same_ids(tiny_csv: dict[str, str], tmp_path: Path) -> None:
    trained = TextDataModule(data_files=tiny_csv, text_column="sentence", tokenizer="bpe", min_frequency=1)
    trained.tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = TextDataModule(data_files=tiny_csv, text_column="sentence",
                            tokenizer=str(tmp_path / "tokenizer.json"))
    assert loaded.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    for split in ("train", "validation", "test"):
        assert token_ids(loaded, split) == token_ids(trained, split)
