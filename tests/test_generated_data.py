"""Generated data files and class folders through the real CLI. Each example starts from
plainly fine data and applies a few changes users make: quotes, newlines, CJK, emoji or
whitespace in texts, a BOM, CRLF, blank lines, empty, missing, mixed and nested labels, one
class, duplicate headers, ragged rows; hidden, binary, empty and non-UTF-8 files in class
folders. Whatever comes, ``fit`` trains or refuses with one ``error: ... fix: ...`` line (exit
code 2, no traceback, nothing half-written), and data that is still plainly fine must train.
``PROJECT_EXAMPLES=300`` runs a long hunt."""

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import QUICK, assert_contract, examples, run_cli

FLAGS = [*QUICK, "--data.batch_size=4", "--data.validation_size=0.5"]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
WORDS = ["good", "bad", "film", "plot"]  # a text holding one of them is plainly a text
CLASSES = ["a", "b", "c"]
ODD = ['"', "'", ",", ";", "\t", "\n", "\r\n", "\r", " ", "\u00a0", "\u3000", "\u200b", "今天天气很好", "😀🎉",
       "null", "NA", "True", "12", "#", "\\", "{", "[", "\x00", "\ufeff", "é", '""', '"a, b"']
BAD_LABELS = ["", " ", None, True, 1.5, [1], {"k": 1}, "a b", "A", "nan"]
TABLE_CHANGES = ["bom", "crlf", "blank lines", "odd text", "any text", "odd label", "int labels", "mixed labels",
                 "ints in the 2nd half", "bool labels", "one class", "one row", "duplicate header", "label first",
                 "id column", "ragged", "other extension"]

words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
any_text = st.one_of(st.text(max_size=12), st.lists(st.sampled_from(ODD + WORDS), max_size=5).map("".join),
                     st.none())


@st.composite
def tables(draw: st.DrawFn) -> dict:
    """One split's rows and how its file is written: plainly fine, then up to 3 changes."""
    kind = draw(st.sampled_from(["csv", "tsv", "jsonl", "json", "field"]))
    k = draw(st.integers(2, 3))
    rows = [{"text": draw(words), "label": CLASSES[i % k]} for i in range(draw(st.integers(2 * k, 10)))]
    table = {"kind": kind, "rows": rows, "bom": False, "crlf": False, "blank_lines": [], "ragged": None,
             "header": ["text", "label"], "ext": {"jsonl": ".jsonl", "tsv": ".tsv", "csv": ".csv"}.get(kind, ".json")}
    for change in draw(st.lists(st.sampled_from(TABLE_CHANGES), max_size=3)):
        if change in ("bom", "crlf"):
            table[change] = True
        elif change == "blank lines":
            table["blank_lines"] = draw(st.lists(st.integers(0, 11), min_size=1, max_size=2))
        elif change == "odd text":
            rows[draw(st.integers(0, len(rows) - 1))]["text"] += draw(st.sampled_from(ODD))
        elif change == "any text":
            rows[draw(st.integers(0, len(rows) - 1))]["text"] = draw(any_text)
        elif change == "odd label":
            rows[draw(st.integers(0, len(rows) - 1))]["label"] = draw(st.sampled_from(BAD_LABELS))
        elif change in ("int labels", "mixed labels", "ints in the 2nd half"):  # a -> 0, or b -> 1 alone
            for i, r in enumerate(rows):
                if r["label"] in CLASSES and (change == "int labels" or r["label"] == "b"
                                              or change.startswith("ints") and i >= len(rows) // 2):
                    r["label"] = CLASSES.index(r["label"])
        elif change == "bool labels":
            for r in rows:
                r["label"] = {"a": True, "b": False}.get(r["label"], r["label"])
        elif change == "one class":
            for r in rows:
                r["label"] = rows[0]["label"]
        elif change == "one row":
            del rows[1:]
        elif change == "ragged":
            table["ragged"] = draw(st.sampled_from(["short", "long"]))
        elif change == "other extension" and kind in ("jsonl", "json"):
            table["ext"] = ".json" if kind == "jsonl" else ".jsonl"  # both readers take both
        else:
            table["header"] = {"duplicate header": ["text", "text", "label"], "label first": ["label", "text"],
                               "id column": ["id", "text", "label"]}.get(change, table["header"])
    return table


def value(row: dict, name: str, i: int) -> object:
    return i if name == "id" else row[name]


def write_table(path: Path, table: dict) -> None:
    kind, rows, header = table["kind"], table["rows"], table["header"]
    if kind in ("csv", "tsv"):
        lines = []
        for values in [header, *([value(r, n, i) for n in header] for i, r in enumerate(rows))]:
            values = ["" if v is None else str(v) for v in values]
            out = io.StringIO()
            if kind == "tsv":  # unquoted, as GLUE: a tab or newline in a text breaks the row
                out.write("\t".join(values))
            else:
                csv.writer(out, lineterminator="").writerow(values)
            lines.append(out.getvalue())
        sep = "\t" if kind == "tsv" else ","
        if table["ragged"]:
            lines[-1] = lines[-1].rsplit(sep, 1)[0] if table["ragged"] == "short" else f"{lines[-1]}{sep}x"
    elif kind == "jsonl":  # a missing value is a missing key
        lines = [json.dumps({n: value(r, n, i) for n in header if value(r, n, i) is not None}, ensure_ascii=i % 2 == 0)
                 for i, r in enumerate(rows)]
    else:
        records = [{n: value(r, n, i) for n in header} for i, r in enumerate(rows)]
        lines = [json.dumps(records if kind == "json" else {"data": records}, indent=2, ensure_ascii=False)]
    for at in table["blank_lines"] if kind in ("csv", "tsv", "jsonl") else []:
        lines.insert(min(at, len(lines)), "")
    end = "\r\n" if table["crlf"] else "\n"
    path.write_bytes((("\ufeff" if table["bom"] else "") + end.join(lines) + end).encode("utf-8", "surrogatepass"))


def plainly_fine(train: dict, validation: dict | None) -> bool:
    """Data any user expects to train on: every text holds a word, every label is a class name
    or id, 2 or more classes with 2 or more rows each (half of train is held out, stratified,
    when there is no validation), no duplicate header or ragged row."""
    def fine(table: dict) -> bool:
        bad = "\x00\t\r\n" if table["kind"] == "tsv" else "\x00"
        texts_ok = all(isinstance(r["text"], str) and any(w in r["text"] for w in WORDS)
                       and not any(c in r["text"] for c in bad) for r in table["rows"])
        labels_ok = all(r["label"] in CLASSES or r["label"] in (0, 1, 2) and not isinstance(r["label"], bool)
                        for r in table["rows"])
        return texts_ok and labels_ok and not table["ragged"] and table["header"].count("text") == 1

    counts: dict[str, int] = {}
    for row in train["rows"]:
        counts[str(row["label"])] = counts.get(str(row["label"]), 0) + 1
    seen = {str(r["label"]) for r in validation["rows"]} if validation else set()
    return (fine(train) and len(counts) >= 2 and min(counts.values()) >= 2
            and (validation is None or (fine(validation) and seen <= counts.keys())))


def fit(root: Path, *args: str) -> tuple[int, str]:
    code, err = run_cli(["fit", *FLAGS, f"--trainer.default_root_dir={root}", f"--data.cache_dir={root}/cache",
                         *args])
    assert_contract(code, err, root)
    return code, err


@pytest.mark.slow
@settings(max_examples=examples(6), **SETTINGS)
@given(train=tables(), validation=st.one_of(st.none(), tables()), spread=st.sampled_from(["file", "list", "glob"]),
       key=st.sampled_from(["validation", "dev", "valid", "val"]))
def test_generated_data_files_train_or_are_refused_in_one_line(train: dict, validation: dict | None,
                                                               spread: str, key: str) -> None:
    """``spread``: train in one file, or its halves in two files named by a list or a glob;
    ``key``: what data_files calls the validation split."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        ext, rows = train["ext"], train["rows"]
        halves = [rows] if spread == "file" or len(rows) < 2 else [rows[:len(rows) // 2], rows[len(rows) // 2:]]
        for i, half in enumerate(halves):
            write_table(root / f"train_{i}{ext}", {**train, "rows": half})
        names = [str(root / f"train_{i}{ext}") for i in range(len(halves))]
        files = {"train": str(root / f"train_*{ext}") if spread == "glob" else names}
        if validation is not None:
            files[key] = str(root / f"dev{validation['ext']}")
            write_table(Path(files[key]), validation)
        code, err = fit(root, f"--data.data_files={json.dumps(files)}")
        if plainly_fine(train, validation):
            assert code == 0, err[-2000:]


FILES = {  # name -> content of the files users leave in class folders; None: a folder
    ".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(64), "photo.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    ".notes.txt": b"good hidden", "latin1.txt": "caf\xe9 good".encode("latin-1"), "empty.txt": b"",
    "blank.txt": b" \n\t\n", "bom.txt": "\ufeffgood film".encode(), "crlf.txt": b"good\r\nfilm\r\n",
    "zh.txt": "今天天气很好 good".encode(), "emoji.txt": "😀 good 🎉".encode(), "sub": None, ".git": None,
}


@st.composite
def class_folders(draw: st.DrawFn) -> dict[str, dict[str, bytes | None]]:
    """Class name -> file name -> content: 2 or 3 classes of plainly fine files, then up to
    3 files from FILES put in them, or a class with no file."""
    classes = {name: {f"{i}.txt": draw(words).encode() for i in range(draw(st.integers(2, 4)))}
               for name in CLASSES[:draw(st.integers(2, 3))]}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(FILES) + ["empty class"]))
        target = draw(st.sampled_from(sorted(classes)))
        if name == "empty class":
            classes["d"] = {}
        else:
            classes[target][name] = FILES[name]
    return classes


@pytest.mark.slow
@settings(max_examples=examples(4), **SETTINGS)
@given(classes=class_folders())
def test_generated_class_folders_train_or_are_refused_in_one_line(classes: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, files in classes.items():
            (root / "corpus" / name).mkdir(parents=True)
            for file, content in files.items():
                (root / "corpus" / name / file).mkdir() if content is None else \
                    (root / "corpus" / name / file).write_bytes(content)
        code, err = fit(root, f"--data.path={root / 'corpus'}")
        kept = [[c for n, c in files.items() if c is not None and not n.startswith(".") and b"\x00" not in c]
                for files in classes.values()]  # what is read as text: neither hidden nor binary
        if all(len(texts) >= 2 and all(plain(text) for text in texts) for texts in kept):
            assert code == 0, err[-2000:]


def plain(content: bytes) -> bool:
    try:
        return any(w in content.decode("utf-8") for w in WORDS)
    except UnicodeDecodeError:
        return False
