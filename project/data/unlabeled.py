"""The language model's data (``python -m project pretrain``): the labelled source's training text
(its labels set aside) plus any unlabelled text named by ``--data.unlabeled_files``, tokenized
by a tokenizer trained on all of it, cut into contiguous windows of ``bptt`` tokens.

Windows never cross from one text into the next: a classifier reads each text from a fresh
state, and so does its language model. A text longer than ``bptt`` gives several windows, each
one token longer than ``bptt`` and overlapping the next by that token, so that every token is a
next-token target once and a previous-token target once (the forward and backward models). The
windows are batched by length (batching.py), so short texts (SST-2's sentences) pad little.
The validation split's text scores the model (perplexity); the test split is not read.

The tokenizer is saved with the run (``tokenizer.json``): ``fit --model.init_from`` takes it, so
the classifier reads text with the vocabulary the language model learned."""

import glob
from functools import cached_property
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets
from lightning.pytorch.utilities import rank_zero_info

from project.data import cache
from project.data.checks import check_tokens
from project.data.datamodule import TextDataModule
from project.data.files import FILE_KINDS, load_file
from project.data.sources import _read_text
from project.data.tokenization import make_tokenizer
from project.errors import UserError

TEXT_FILES = (".txt",)


def _matches(pattern: str) -> list[Path]:
    """A pattern's files: a file, a folder (every ``.txt`` under it, as class folders without
    labels) or a glob; sorted, so the rows come in the same order on every machine."""
    path = Path(pattern)
    if path.is_dir():
        found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_FILES
                       and not any(part.startswith(".") for part in f.relative_to(path).parts))
        if not found:
            raise UserError(f"{pattern}: a folder without .txt files; fix: name a folder of text files, or the "
                            f"files themselves ({', '.join(TEXT_FILES + tuple(FILE_KINDS))})")
        return found
    found = sorted(Path(f) for f in glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [path]
    if not found or not all(f.exists() for f in found):
        raise UserError(f"--data.unlabeled_files {pattern}: no such file; fix: give existing files, folders or a "
                        f"glob such as texts/*.txt")
    return [f for f in found if f.is_file()]


def load_unlabeled(patterns: list[str], text_column: str) -> Dataset:
    """One ``text`` column: a ``.txt`` file is one text; a csv / tsv / json / jsonl / parquet
    file gives its ``text_column``'s rows."""
    texts, tables = [], []
    for pattern in patterns:
        for file in _matches(pattern):
            if file.suffix.lower() in TEXT_FILES:
                text = _read_text(file, latin1_fallback=False)
                if text is None:
                    raise UserError(f"{file}: a binary file, not text; fix: leave it out of --data.unlabeled_files")
                texts.append(text)
                continue
            if file.suffix.lower() not in FILE_KINDS:
                raise UserError(f"{file}: unknown file extension '{file.suffix}'; fix: use one of "
                                f"{', '.join(TEXT_FILES + tuple(FILE_KINDS))}")
            dataset = load_file(file, "unlabeled").dataset
            if text_column not in dataset.column_names:
                raise UserError(f"{file}: no column '{text_column}' (it has {', '.join(dataset.column_names)}); "
                                f"fix: --data.unlabeled_text_column names its text column")
            column = dataset.select_columns(text_column).rename_column(text_column, "text")
            tables.append(column.cast(Features({"text": Value("string")})).filter(lambda row: bool(row["text"])))
    parts = [Dataset.from_dict({"text": texts}, features=Features({"text": Value("string")}))] if texts else []
    return concatenate_datasets(parts + tables) if parts + tables else Dataset.from_dict({"text": []})


class LanguageModelData(TextDataModule):
    """The DataModule of ``pretrain``: every ``TextDataModule`` argument names the labelled source
    (its labels are not used), and these add the unlabelled text and the window length."""

    def __init__(self, *args: Any, unlabeled_files: list[str] | None = None, unlabeled_text_column: str | None = None,
                 bptt: int = 70, **kwargs: Any) -> None:
        """
        Args:
            unlabeled_files: More text to learn from, beside the training split's: files, folders
                (every ``.txt`` under them) or globs; a ``.txt`` file is one text, a csv / tsv /
                json / jsonl / parquet file gives one text per row.
            unlabeled_text_column: The column of those tabular files that holds the text;
                None: ``--data.text_column``'s (its first, if a list).
            bptt: Tokens per training window (back-propagation through time); longer texts are
                cut into several.
        """
        super().__init__(*args, **kwargs)
        if bptt < 2:
            raise UserError(f"--data.bptt is {bptt}; fix: 2 or more tokens per window")

    def cache_settings(self) -> dict[str, Any]:
        hp = self.hparams
        files = [f for pattern in hp.unlabeled_files or [] for f in _matches(pattern)]
        return {**super().cache_settings(), "language_model": True, "bptt": hp.bptt,
                "unlabeled": cache.file_stamps(files), "unlabeled_text_column": self._unlabeled_column}

    @property
    def _unlabeled_column(self) -> str:
        return self.hparams.unlabeled_text_column or self.text_columns[0]

    def _build(self) -> cache.Prepared:
        hp = self.hparams
        splits = self._load_splits()
        train = splits["train"].select_columns("text")
        if hp.unlabeled_files:
            unlabeled = load_unlabeled(hp.unlabeled_files, self._unlabeled_column)
            rank_zero_info(f"Unlabelled text: {len(unlabeled):,} texts beside the {len(train):,} of the training split.")
            train = concatenate_datasets([train.cast(unlabeled.features), unlabeled])
        tokenizer = make_tokenizer(train, hp.tokenizer, hp.max_vocab_size, hp.min_frequency, hp.lowercase,
                                   hp.max_length, pairs=self.pairs)
        tokenizer.no_truncation()  # the language model reads every token; fit truncates at its max_length
        window = hp.bptt + 1

        def windows(batch: dict[str, list]) -> dict[str, list]:
            cut = [ids[start:start + window] for e in tokenizer.encode_batch(batch["text"])
                   for ids in [e.ids] for start in range(0, max(len(ids) - 1, 1), hp.bptt)]
            cut = [ids for ids in cut if len(ids) >= 2]  # a window of one token predicts nothing
            return {"input_ids": cut, "length": [len(ids) for ids in cut]}

        features = Features({"input_ids": List(Value("int32")), "length": Value("int32")})
        texts = DatasetDict({"train": train, "validation": splits["validation"].select_columns("text")})
        encoded = texts.map(windows, batched=True, remove_columns=["text"], features=features,
                            num_proc=hp.num_proc, desc="Cutting windows")
        for split, dataset in encoded.items():
            if len(dataset) == 0:
                raise UserError(f"the {split} split has no text of two tokens or more to learn from; fix: give "
                                f"it longer texts, or more text with --data.unlabeled_files")
            check_tokens(dataset, split)
        tokenizer.enable_truncation(hp.max_length)
        return cache.Prepared(encoded, tokenizer)

    @cached_property
    def dataset(self) -> DatasetDict:
        return self._prepared.splits.with_format("arrow")

    @property
    def label_names(self) -> list[str]:
        return []  # a language model predicts tokens, not labels

    @property
    def num_tokens(self) -> int:
        """Training tokens per epoch."""
        return int(self._prepared.splits["train"].data.column("length").to_numpy().sum())

    def test_dataloader(self) -> None:  # noqa: D102 - pretrain reads no test text
        raise UserError("pretrain has no test; fix: score the classifier it starts (fit --model.init_from)")
