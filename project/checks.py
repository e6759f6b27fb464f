"""Bad-data checks. Each failure is a ``DataError``: one line that says where (file, column,
row) and how to fix it; the CLI prints it and exits with code 2. Checks run on the Arrow
columns with ``pyarrow.compute``, so a million rows cost milliseconds and no Python list."""

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Value

Locate = Callable[[int], str]  # row index -> "train.csv line 17"


class DataError(ValueError):
    """Input the user can fix: the message names the problem and the fix, on one line."""


def _first(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first True in a boolean column, or None."""
    index = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if index < 0 else index


def check_not_empty(dataset: Dataset, where: str) -> None:
    if len(dataset) == 0:
        raise DataError(f"{where} has no rows; fix: give a split with data, or leave it out")


def check_columns(dataset: Dataset, columns: list[str], where: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            have = ", ".join(dataset.column_names)
            raise DataError(
                f"{where} has no column '{column}' (it has: {have}); fix: set "
                f"--data.text_column / --data.label_column to the right names"
            )


def check_texts(dataset: Dataset, column: str, locate: Locate, max_chars: int) -> None:
    """No missing, blank or suspiciously huge texts (a 1 MB "row" is usually an unclosed quote
    that swallowed the rest of a csv file)."""
    values = dataset.data.column(column)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        raise DataError(
            f"{locate(0)}: column '{column}' holds {values.type}, not text; fix: point "
            f"--data.text_column at a text column"
        )
    if (row := _first(pc.is_null(values))) is not None:
        raise DataError(f"{locate(row)}: '{column}' is missing; fix: fill in or delete that row")
    if (row := _first(pc.equal(pc.utf8_trim_whitespace(values), ""))) is not None:
        raise DataError(f"{locate(row)}: '{column}' is empty; fix: fill in or delete that row")
    lengths = pc.utf8_length(values)
    if (row := _first(pc.greater(lengths, max_chars))) is not None:
        size = lengths[row].as_py()
        raise DataError(
            f"{locate(row)}: '{column}' is {size:,} characters long (limit {max_chars:,}), "
            f"often an unclosed quote that swallowed later rows; fix: repair the quoting, or "
            f"raise --data.max_chars if such long texts are real"
        )


def check_labels(dataset: Dataset, column: str, locate: Locate) -> None:
    """Labels are class ids or names: present, not floats, not the -1 of unlabelled rows."""
    feature = dataset.features[column]
    values = dataset.data.column(column)
    if isinstance(feature, ClassLabel):
        if (row := _first(pc.less(values, 0))) is not None:
            raise DataError(
                f"{locate(row)}: '{column}' is {values[row].as_py()} (no label: an unlabelled "
                f"split); fix: use a labelled split, or set that split to null"
            )
        return
    if isinstance(feature, Value) and feature.dtype.startswith("float"):
        row = _first(pc.is_valid(values)) or 0
        raise DataError(
            f"{locate(row)}: '{column}' holds floats ({values[row].as_py()}); this tool classifies, it "
            f"does not regress; fix: use integer ids or names as labels"
        )
    if (row := _first(pc.is_null(values))) is not None:
        raise DataError(f"{locate(row)}: '{column}' is missing; fix: fill in or delete that row")
    if pa.types.is_string(values.type) and (row := _first(pc.equal(values, ""))) is not None:
        raise DataError(f"{locate(row)}: '{column}' is empty; fix: fill in or delete that row")


def check_labels_known(dataset: Dataset, names: list[str], locate: Locate, split: str) -> None:
    """Every validation / test label was seen in train: the model has no output for others."""
    values = pc.cast(dataset.data.column("label"), pa.string())
    unknown = pc.invert(pc.is_in(values, value_set=pa.array(names)))
    if (row := _first(unknown)) is not None:
        raise DataError(
            f"{locate(row)}: label '{values[row].as_py()}' of the {split} split never occurs in "
            f"train (train has: {', '.join(names)}); fix: add it to train or drop those rows"
        )


def check_tokens(dataset: Dataset, split: str) -> None:
    """Every text kept at least one token (a text of symbols alone can lose them all)."""
    if (row := _first(pc.equal(dataset.data.column("length"), 0))) is not None:
        raise DataError(
            f"{split} split row {row}: no tokens after tokenization; fix: delete that row "
            f"or use another --data.tokenizer"
        )
