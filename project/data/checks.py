"""Bad-data checks. Each failure is a ``UserError`` (errors.py): one line that says where (file,
column, row) and how to fix it; the CLI prints it and exits with code 2. Checks run on the Arrow
columns with ``pyarrow.compute``, so a million rows cost milliseconds and no Python list.

Where a row is (``locator``) is worked out only when an error names it: the line an editor
shows, found by reading the file again with Python's csv module or line by line."""

import codecs
import csv
import itertools
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import lightning_utilities.core.rank_zero as rank_zero
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, Json, Value

from project.data.padding import SEP
from project.errors import UserError

Locate = Callable[[int], str]  # row index -> "train.csv line 17"


# --- where a row of a file is ---


def _text(file: Path):  # noqa: ANN202 - a text file object
    return file.open(encoding="utf-8-sig", newline="")  # a BOM is not part of the header


def header_line(file: Path) -> str | None:
    """The first non-blank line of a text file (None: empty, or not UTF-8)."""
    try:
        with _text(file) as f:
            return next((line.rstrip("\r\n") for line in f if line.strip()), None)
    except UnicodeDecodeError:
        return None


def _csv_records(file: Path, delimiter: str, quoting: int) -> list[tuple[int, bool]]:
    """``(line where it starts, is blank)`` per csv record. pandas counts records (a quoted
    field may span lines) and skips blank ones; editors count lines."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # its default stops at 128 kB
    records, end = [], 0
    with _text(file) as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        for row in reader:
            records.append((end + 1, not row or (len(row) == 1 and not row[0].strip())))
            end = reader.line_num
    return records


def csv_record_line(file: Path, delimiter: str, quoting: int, index: int) -> int | str:
    """The line where record ``index`` (0-based, blank lines counted, as pandas does) starts."""
    try:
        return _csv_records(file, delimiter, quoting)[index][0]
    except (IndexError, csv.Error, OSError, UnicodeDecodeError):
        return f"{index + 1} (counting records)"


def _json_lines(file: Path) -> list[int]:
    """Line numbers of the non-blank lines (readers skip blank ones)."""
    with file.open("rb") as f:
        return [n for n, line in enumerate(f, 1) if line.strip()]


def locator(file: Path, builder: str, options: dict, field: str | None) -> Locate:
    """How to name row ``i`` of ``file`` in a message; the file is re-read on the first call."""
    if builder == "parquet":
        return lambda row: f"{file} line {row + 1}"
    if builder == "json":
        first = (header_line(file) or "").lstrip()[:1]
        if field is not None:
            return lambda row: f"{file} item {row + 1} of '{field}'"
        if first == "[":
            return lambda row: f"{file} item {row + 1}"
        lines = cache(lambda: _json_lines(file))
    else:
        delimiter, quoting = options.get("delimiter", ","), options.get("quoting", 0)
        lines = cache(lambda: [line for line, blank in _csv_records(file, delimiter, quoting) if not blank][1:])
    header = 1 if builder == "json" else 2  # if the file cannot be re-read: the old arithmetic

    def locate(row: int) -> str:
        try:
            return f"{file} line {lines()[row]}"
        except (IndexError, csv.Error, OSError, UnicodeDecodeError):
            return f"{file} line {row + header}"

    return locate


def causes(error: BaseException) -> list[BaseException]:
    """An exception and those it was raised from (the readers wrap the useful one)."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def utf8_error(file: Path) -> str | None:
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


def has_more_lines(file: Path) -> bool:
    """Whether a second non-blank line follows the first."""
    with file.open("rb") as f:
        return sum(1 for line in itertools.islice((x for x in f if x.strip()), 2)) > 1


def has_blank_lines(file: Path) -> bool:
    with file.open("rb") as f:
        return any(not line.strip() for line in f)


def json_error(file: Path) -> str | None:
    """``line N: not valid JSON (...)`` for the first bad line of JSON lines, or the first
    error of a whole-file JSON document (an array, or one object over several lines)."""
    try:
        with _text(file) as f:
            first = f.readline()
            try:
                json.loads(first) if first.strip() else None
                whole = False
            except json.JSONDecodeError:
                whole = first.lstrip().startswith(("[", "{"))
            f.seek(0)
            if whole:
                json.loads(f.read())
                return None
            for number, line in enumerate(f, 1):
                if line.strip():
                    json.loads(line)
    except json.JSONDecodeError as error:
        at = error.lineno if whole else number
        return f"line {at}: not valid JSON ({error.msg})"
    except (OSError, UnicodeDecodeError):
        return None
    return None


# --- column values ---


def _json_text(value: object) -> object:
    return value if value is None or isinstance(value, str) else json.dumps(value)


def decode_json_columns(dataset: Dataset) -> Dataset:
    """datasets reads a JSON column of mixed types (1, 2, "3") as JSON text; one of scalars
    alone becomes strings (1 -> "1", as pandas does in a csv). Lists and objects stay JSON
    and are refused where they are used."""
    for name, feature in dataset.features.items():
        if isinstance(feature, Json):
            values = dataset[name]
            if not any(isinstance(v, (list, dict)) for v in values):
                order = dataset.column_names
                strings = [_json_text(v) for v in values]
                dataset = dataset.remove_columns(name).add_column(name, strings).select_columns(order)
    return dataset


def _first_nested(dataset: Dataset, column: str) -> int:
    values = dataset[column] if isinstance(dataset.features[column], Json) else []
    return next((i for i, v in enumerate(values) if isinstance(v, (list, dict))), 0)


def _first(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first True in a boolean column, or None."""
    index = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if index < 0 else index


def check_not_empty(dataset: Dataset, where: str) -> None:
    if len(dataset) == 0:
        raise UserError(f"{where} has no rows; fix: give a split with data, or leave it out")


def check_columns(dataset: Dataset, columns: list[str], where: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            have = ", ".join(dataset.column_names)
            raise UserError(
                f"{where} has no column '{column}' (it has: {have}); fix: set "
                f"--data.text_column / --data.label_column to the right names"
            )


def check_texts(dataset: Dataset, column: str, locate: Locate, max_chars: int) -> None:
    """No missing, blank or suspiciously huge texts (a 1 MB "row" is usually an unclosed quote
    that swallowed the rest of a csv file)."""
    values = dataset.data.column(column)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        row = _first_nested(dataset, column)
        kind = f"JSON values such as {dataset[row][column]!r:.40}" if isinstance(
            dataset.features[column], Json) else values.type
        raise UserError(
            f"{locate(row)}: column '{column}' holds {kind}, not text; fix: point "
            f"--data.text_column at a text column"
        )
    if (row := _first(pc.is_null(values))) is not None:
        raise UserError(f"{locate(row)}: '{column}' is missing; fix: fill in or delete that row")
    if (row := _first(pc.equal(pc.utf8_trim_whitespace(values), ""))) is not None:
        raise UserError(f"{locate(row)}: '{column}' is empty; fix: fill in or delete that row")
    lengths = pc.utf8_length(values)
    if (row := _first(pc.greater(lengths, max_chars))) is not None:
        size = lengths[row].as_py()
        raise UserError(
            f"{locate(row)}: '{column}' is {size:,} characters long (limit {max_chars:,}), "
            f"often an unclosed quote that swallowed later rows; fix: repair the quoting, or "
            f"raise --data.max_chars if such long texts are real"
        )


def check_no_separator(dataset: Dataset, column: str, locate: Locate) -> None:
    """A pair's text holding ``[SEP]`` would be split there: the token is the pair's own."""
    if (row := _first(pc.match_substring(dataset.data.column(column), SEP))) is not None:
        raise UserError(f"{locate(row)}: '{column}' holds {SEP}, the token that separates the two texts of a pair; "
                        f"fix: remove it from the text (e.g. replace it with a space)")


def check_labels(dataset: Dataset, column: str, locate: Locate) -> None:
    """Labels are class ids or names: present, not floats, not the -1 of unlabelled rows."""
    feature = dataset.features[column]
    values = dataset.data.column(column)
    if isinstance(feature, ClassLabel):
        if (row := _first(pc.less(values, 0))) is not None:
            raise UserError(
                f"{locate(row)}: '{column}' is {values[row].as_py()} (no label: an unlabelled "
                f"split); fix: use a labelled split, or set that split to null"
            )
        return
    if not isinstance(feature, Value):  # a list, an object, JSON of several shapes
        row = _first_nested(dataset, column)
        raise UserError(
            f"{locate(row)}: '{column}' holds {dataset[row][column]!r:.40}, not a class id or name; "
            f"fix: give one label (an integer or a name) per row, or lists of labels for multi-label data"
        )
    if feature.dtype.startswith("float"):
        row = _first(pc.is_valid(values)) or 0
        raise UserError(
            f"{locate(row)}: '{column}' holds floats ({values[row].as_py()}); this tool classifies, it "
            f"does not regress; fix: use integer ids or names as labels"
        )
    if (row := _first(pc.is_null(values))) is not None:
        raise UserError(f"{locate(row)}: '{column}' is missing; fix: fill in or delete that row")
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return
    if (row := _first(pc.equal(pc.utf8_trim_whitespace(values), ""))) is not None:
        raise UserError(f"{locate(row)}: '{column}' is empty; fix: fill in or delete that row")


def check_label_lists(dataset: Dataset, column: str, locate: Locate) -> None:
    """Multi-label rows: each a list of one or more labels (ids or names), none missing or blank."""
    values = dataset.data.column(column)
    if (row := _first(pc.is_null(values))) is not None:
        raise UserError(f"{locate(row)}: '{column}' is missing; fix: fill in or delete that row")
    if (row := _first(pc.equal(pc.list_value_length(values), 0))) is not None:
        raise UserError(f"{locate(row)}: '{column}' is an empty list of labels; fix: give the text its labels, or "
                        f"delete that row (a text of no label: 0/1 columns, --data.label_columns, say it with zeros)")
    flat = pc.list_flatten(values)
    if pa.types.is_floating(flat.type) or not (pa.types.is_integer(flat.type) or pa.types.is_string(flat.type)
                                               or pa.types.is_large_string(flat.type) or pa.types.is_boolean(flat.type)):
        row = _first_nested(dataset, column) or 0
        raise UserError(f"{locate(row)}: '{column}' holds {dataset[row][column]!r:.40}, not a list of class ids or "
                        f"names; fix: give each row a list of labels, e.g. [\"sport\", \"politics\"]")
    blank = pc.equal(pc.utf8_trim_whitespace(pc.cast(flat, pa.string())), "")
    if pc.any(pc.fill_null(blank, True)).as_py():
        parents = pc.list_parent_indices(values)
        row = parents[pc.index(pc.fill_null(blank, True), True).as_py()].as_py()
        raise UserError(f"{locate(row)}: '{column}' holds a blank or missing label; fix: fill it in or remove it")


def check_label_flags(dataset: Dataset, columns: list[str], locate: Locate) -> None:
    """Multi-label 0/1 columns (``--data.label_columns``): each holds 0 or 1 (or true / false) in every row."""
    for column in columns:
        values = dataset.data.column(column)
        if pa.types.is_boolean(values.type):
            bad = pc.is_null(values)
        elif pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            bad = pc.invert(pc.fill_null(pc.is_in(values, value_set=pa.array([0, 1], values.type)), False))
        else:
            raise UserError(f"{locate(0)}: --data.label_columns '{column}' holds {values.type}, not 0 / 1; fix: name "
                            f"columns of 0 and 1 (one per label), or use --data.label_column for a column of names")
        if (row := _first(bad)) is not None:
            raise UserError(f"{locate(row)}: --data.label_columns '{column}' is {values[row].as_py()}, not 0 or 1; "
                            f"fix: 1 where the text has the label, 0 where not")


def check_labels_known(dataset: Dataset, names: list[str], locate: Locate, split: str) -> None:
    """Every validation / test label was seen in train: the model has no output for others."""
    values = dataset.data.column("label")
    parents = None
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):  # multi-label: each of a row's
        values = values.combine_chunks()
        parents, values = pc.list_parent_indices(values), pc.list_flatten(values)
    values = pc.cast(values, pa.string())
    unknown = pc.invert(pc.is_in(values, value_set=pa.array(names)))
    if (row := _first(unknown)) is not None:
        label, row = values[row].as_py(), row if parents is None else parents[row].as_py()
        raise UserError(
            f"{locate(row)}: label '{label}' of the {split} split never occurs in "
            f"train (train has: {', '.join(names)}); fix: add it to train or drop those rows"
        )


def check_tokens(dataset: Dataset, split: str) -> None:
    """Every text kept at least one token (a text of symbols alone can lose them all)."""
    if (row := _first(pc.equal(dataset.data.column("length"), 0))) is not None:
        raise UserError(
            f"{split} split row {row}: no tokens after tokenization; fix: delete that row "
            f"or use another --data.tokenizer"
        )


def warn_overlap(splits: DatasetDict) -> None:
    """Validation or test texts that are training texts word for word score what the model
    memorised, not what it learnt: say how many, once per run (cache hits too), one plain line
    (2026-12-05 trial, row 103: a test split of copies gave no word)."""
    if "text" not in splits["train"].column_names:  # pretrain's windows of token ids: no texts to compare
        return
    train = splits["train"].data.column("text").combine_chunks()
    for split in ("validation", "test"):
        if split not in splits or not len(splits[split]) or "text" not in splits[split].column_names:
            continue
        texts = splits[split].data.column("text").combine_chunks()
        copies = pc.sum(pc.is_in(texts, value_set=train)).as_py() or 0
        if copies:
            rank_zero.log.warning(f"Warning: {copies:,} of {len(texts):,} {split} texts are also training texts, word "
                                  f"for word: the {split} figures overstate how it does on new text; fix: remove them "
                                  f"from one of the splits")


def warn_one_class(splits: DatasetDict) -> None:
    """A validation split of one class scores any model that names that class as perfect, so its
    figures, and the checkpoint kept by them, say little: one plain line (2026-12-05 trial, row
    104: the best checkpoint was kept at val_f1=1.0000 on a split of sport alone)."""
    validation = splits.get("validation")
    if validation is None or not len(validation) or "label" not in validation.column_names:
        return
    if not hasattr(splits["train"].features["label"], "names"):  # multi-label: a text holds several
        return
    names = splits["train"].features["label"].names
    classes = pc.unique(validation.data.column("label").combine_chunks()).to_pylist()
    if len(classes) == 1 and len(names) > 1:
        rank_zero.log.warning(f"Warning: the validation split holds one class ('{names[classes[0]]}') of {len(names)}: "
                              f"its accuracy and macro-F1, and the checkpoint kept by them, say little; fix: a "
                              f"validation split with every class, or none (--data.validation_size then holds a "
                              f"share of train out)")
