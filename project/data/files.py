"""Reading local data files (csv, tsv, json, jsonl, parquet) as a split's rows: one file, or a
split's several (a path, a glob or a list of them, the Hugging Face way) as one.

``datasets`` reads them; this file adds what it leaves out (a ``.csv`` separated by ``;``,
tabs or ``|``; a JSON object whose one list field holds the records) and turns a reader's deep
failure into one line that names the file, its editor line and the fix. ``Part`` and ``Loaded``,
what every source kind returns, and ``folder_name``, how each names itself, live here: sources.py
and frame.py import this file, not the reverse.
"""

import bisect
import contextlib
import csv
import glob
import itertools
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, Value, concatenate_datasets
from lightning_utilities.core.rank_zero import rank_zero_info  # Lightning routes it to its log once loaded

from project.data import checks
from project.errors import UserError, resave_as_utf8

# datasets' progress bars (a split generated, saved, mapped) redraw one line with \r: a bar on a
# terminal, but in a log file (nohup, a scheduler, > run.log) one endless line of them.
if not (sys.stderr and sys.stderr.isatty()):
    datasets.disable_progress_bars()

VALIDATION_ALIASES = ("dev", "valid", "val")  # GLUE, SNLI, ... call validation so
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


def folder_name(text: str) -> str:
    """``text`` as the data part of a run folder's name (runs.py), which every kind of source
    gives: lower case, each run of other characters than ``a-z0-9_.-`` one ``_``."""
    return re.sub(r"[^a-z0-9_.-]+", "_", text.lower()).strip("_.-")


def unreadable(path: Path, error: OSError) -> UserError:
    return UserError(f"{path}: cannot be read ({error.strerror or error}); fix: make it readable "
                     f"(chmod a+r), or move it away")


def with_validation_alias(split_names: dict[str, str | None], available: Collection[str]) -> dict[str, str | None]:
    """Use ``dev`` / ``valid`` / ``val`` as validation when the default name has no split."""
    if split_names["validation"] != "validation" or "validation" in available:
        return split_names
    for alias in VALIDATION_ALIASES:
        if alias in available:
            rank_zero_info(f"Using the split '{alias}' as the validation split.")
            return {**split_names, "validation": alias}
    return split_names


def expand_data_files(data_files: dict[str, str | list[str]]) -> dict[str, list[Path]]:
    """Each split's files: a path, a glob (its matches, sorted) or a list of either."""
    expanded = {}
    for split, given in data_files.items():
        files = []
        for item in [given] if isinstance(given, str) else list(given or []):
            item = str(item)
            if Path(item).exists() or not glob.has_magic(item):
                files.append(Path(item))
            elif matches := sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file()):
                files += map(Path, matches)
            else:
                raise UserError(f"{item}: no file matches; fix: correct --data.data_files.{split}")
        if not files:
            raise UserError(f"--data.data_files.{split} names no file; fix: give a file, a glob or a list")
        expanded[split] = files
    return expanded


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """datasets logs a reader's failure on stderr before raising it; our UserError says it once."""
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)


def _csv_options(file: Path, options: dict) -> dict:
    """Check the header line; a .csv whose header has no comma but ';', tabs or '|' is read so."""
    line = checks.header_line(file)
    if line is None:  # empty, or not UTF-8: the reader's failure says which
        return options
    delimiter = options.get("delimiter", ",")
    if delimiter == "," and "," not in line and any(c in line for c in ";\t|"):
        delimiter = max(";\t|", key=line.count)
        named = "tab" if delimiter == "\t" else repr(delimiter)
        rank_zero_info(f"Reading {file} as {named}-separated: its header line has no comma.")
        options = {**options, "delimiter": delimiter}
    _no_twice(file, next(csv.reader([line], delimiter=delimiter, quoting=options.get("quoting", 0))))
    return options


def _no_twice(file: Path, names: list[str]) -> None:
    """pandas renames a second 'text' to 'text.1' and reads the first alone: say so instead."""
    if twice := next((name for name, n in Counter(names).items() if n > 1), None):
        raise UserError(f"{file}: column '{twice}' appears twice in the header; fix: rename or "
                        f"remove one of them")


def _read(file: Path, builder: str, options: dict) -> Dataset:
    with _quiet_datasets():
        return datasets.load_dataset(builder, data_files=str(file), split="train", **options)


def _failure(file: Path, split: str, builder: str, options: dict, error: Exception) -> UserError:
    """What is wrong with a file its reader failed on, as one line."""
    if builder != "parquet" and (where := checks.utf8_error(file)):
        with file.open("rb") as head:
            return UserError(f"{file}: not UTF-8 ({where}); {resave_as_utf8(head.read(2))}")
    text = " ".join(str(e) for e in checks.causes(error))
    if file.stat().st_size == 0 or "No columns to parse" in text:
        return UserError(f"{file} is empty; fix: give a file with a header and rows")
    if "corresponds to no data" in text:  # a header and no rows: zero examples
        return UserError(f"{file} ({split}) has no rows; fix: give a split with data, or leave it out")
    delimiter = options.get("delimiter", ",")
    if match := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text):
        line = checks.csv_record_line(file, delimiter, options.get("quoting", 0), int(match[2]) - 1)
        quote = "TSV has no quoting: remove the extra tab" if options.get("quoting") == csv.QUOTE_NONE \
            else f'quote a field that holds {delimiter!r} ("like{delimiter} this")'
        return UserError(f"{file} line {line}: {match[3]} fields where the header has {match[1]}; fix: {quote}")
    if match := re.search(r"EOF inside string starting at row (\d+)", text):
        line = checks.csv_record_line(file, delimiter, options.get("quoting", 0), int(match[1]))
        return UserError(f'{file} line {line}: a quote (") opens a field that never closes; fix: '
                         f'close it, or double the quotes inside a text ("")')
    if builder == "json" and (where := checks.json_error(file)):
        return UserError(f"{file} {where}; fix: repair it (one JSON object per line, or one JSON array)")
    text = text if len(text) < 300 else text[:300] + " ..."
    return UserError(f"{file}: cannot be read as {builder} ({text or type(error).__name__}); fix: repair the file")


def _read_copy(file: Path, lines: Iterable[str]) -> Dataset:
    """Read JSON ``lines`` from a temporary copy of ``file``: datasets' reader fails on some
    valid files (blank lines among mixed-type values; a BOM before one multi-line object)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / f"{file.stem}.jsonl"
        with copy.open("w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        return _read(copy, "json", {})


def _records_field(file: Path, split: str) -> tuple[str, list] | None:
    """``(field, records)`` of a file that is one JSON object whose one list field (or the
    one named as the split) holds the records (``{"data": [...]}``); None for JSON lines,
    arrays and anything else."""
    first = checks.header_line(file)
    if first is None or not first.lstrip().startswith("{"):
        return None
    try:
        document = json.loads(first)
        if checks.has_more_lines(file):  # JSON lines: one object per line
            return None
    except json.JSONDecodeError:  # one object over several lines
        try:
            document = json.loads(file.read_text(encoding="utf-8-sig"))
        except (ValueError, OSError):
            return None
    if not isinstance(document, dict):
        return None
    lists = [k for k, v in document.items() if isinstance(v, list) and all(isinstance(x, dict) for x in v)]
    if split in lists or len(lists) == 1:
        return (split if split in lists else lists[0]), document[split if split in lists else lists[0]]
    if len(lists) > 1:
        raise UserError(f"{file} holds several lists of records ({', '.join(lists)}) and none is called "
                        f"'{split}'; fix: give each split its own file, or name the lists as the splits")
    return None


def _read_json(file: Path, split: str) -> tuple[Dataset, str | None]:
    """A .json / .jsonl file: JSON lines, a JSON array, or one object whose single list field
    holds the records. Returns the rows and that field."""
    if found := _records_field(file, split):
        field, records = found
        if not records:
            raise UserError(f"{file} ({split}) has no rows under '{field}'; fix: give a split with data, or leave it out")
        rank_zero_info(f"Reading the records of {file} under its field '{field}'.")
        try:
            return _read_copy(file, (json.dumps(record, ensure_ascii=False) for record in records)), field
        except Exception as error:
            raise _failure(file, split, "json", {}, error) from None
    try:
        return _read(file, "json", {}), None
    except Exception as error:
        if checks.json_error(file) is not None or not checks.has_blank_lines(file):
            raise _failure(file, split, "json", {}, error) from None
        try:
            with file.open(encoding="utf-8-sig") as f:
                return _read_copy(file, (line.strip() for line in f if line.strip())), None
        except Exception as error:
            raise _failure(file, split, "json", {}, error) from None


def load_file(file: Path, split: str) -> Part:
    if file.is_dir():
        raise UserError(f"{file}: a folder, not a file; fix: name its files, e.g. {file}/*.csv")
    if file.suffix.lower() not in FILE_KINDS:
        raise UserError(
            f"{file}: unknown file extension '{file.suffix}'; fix: use one of "
            f"{', '.join(FILE_KINDS)} (the extension picks the reader)"
        )
    if not file.is_file():
        raise UserError(f"{file}: no such file; fix: correct --data.data_files.{split}")
    try:
        file.open("rb").close()
    except OSError as error:
        raise unreadable(file, error) from None
    builder, options = FILE_KINDS[file.suffix.lower()]
    if builder == "parquet":
        try:
            names = pq.read_schema(file).names
        except (pa.ArrowException, OSError):  # not parquet: the reader's failure says so
            names = []
        _no_twice(file, names)
    field = None
    if builder == "json":
        dataset, field = _read_json(file, split)
    else:
        if builder == "csv":
            options = _csv_options(file, options)
        try:
            dataset = _read(file, builder, options)
        except Exception as error:  # the readers fail deep down; say what is wrong with the file
            raise _failure(file, split, builder, options, error) from None
    dataset = checks.decode_json_columns(dataset)
    return Part(dataset, str(file), checks.locator(file, builder, options, field))


def _same_types(parts: list[Part], split: str) -> list[Dataset]:
    """The files of one split with one type per column: ints and strings as strings (as
    pandas does within one file), ints and floats as floats."""
    first = parts[0]
    columns = first.dataset.column_names
    for part in parts[1:]:
        if set(part.dataset.column_names) != set(columns):
            raise UserError(f"{part.name} has the columns {', '.join(part.dataset.column_names)} but "
                            f"{first.name} has {', '.join(columns)}; fix: give every {split} file the same header")
    result = [part.dataset.select_columns(columns) for part in parts]
    for column in columns:
        features = [d.features[column] for d in result]
        if all(f == features[0] for f in features):
            continue
        if any(not isinstance(f, Value) for f in features):  # lists, structs, class labels
            other = next(p for p, f in zip(parts, features) if f != features[0])
            raise UserError(f"{other.name}: column '{column}' holds {other.dataset.features[column]} but "
                            f"{first.name} holds {features[0]}; fix: give every {split} file the same kind of values")
        dtypes = {f.dtype for f in features} - {"null"}
        numeric = all(re.fullmatch(r"u?int\d+|float\d+|bool", t) for t in dtypes)
        target = ("float64" if any(t.startswith("float") for t in dtypes) else "int64") if numeric else "string"
        result = [d.cast_column(column, Value(target)) for d in result]
    return result


def _combine(parts: list[Part], split: str) -> Part:
    """Several files of one split as one part; a row is still named by its own file and line."""
    if len(parts) == 1:
        return parts[0]
    dataset = concatenate_datasets(_same_types(parts, split))
    starts = [0, *itertools.accumulate(len(p.dataset) for p in parts)][:-1]

    def locate(row: int) -> str:
        i = bisect.bisect_right(starts, row) - 1
        return parts[i].locate(row - starts[i])

    return Part(dataset, f"{parts[0].name} (+{len(parts) - 1} more {split} files)", locate)


def load_files(data_files: dict[str, str | list[str]], split_names: dict[str, str | None]) -> Loaded:
    expanded = expand_data_files(data_files)
    split_names = with_validation_alias(split_names, expanded)
    loaded = {}
    for ours, theirs in split_names.items():
        if theirs is not None and theirs in expanded:
            loaded[ours] = _combine([load_file(f, theirs) for f in expanded[theirs]], theirs)
    if "train" not in loaded:
        raise UserError(
            f"data_files has no '{split_names['train']}' split (it has: {', '.join(data_files)}); "
            f"fix: add it or set --data.train_split"
        )
    return loaded
