"""The data rows of the new-user trial (shared/reports/new-user-trial-2026-11-26.md), each
through the real CLI or DataModule: a clean success, or one ``error: ... fix: ...`` line that
names the file and the line an editor shows."""

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from project.data.datamodule import TextDataModule
from tests.helpers import (QUICK, assert_contract, make_rows, refused, run_cli, run_cli_as_nobody, write_class_folders,
                           write_rows)

FLAGS = [*QUICK, "--data.batch_size=8"]


def rows(n: int, seed: int) -> list[dict[str, str]]:
    return [{"text": r["sentence"], "label": r["label"]} for r in make_rows(n, seed)]


def fit_args(tmp: Path, data_files: dict | None = None, *extra: str) -> list[str]:
    """``python -m project fit`` on tiny data, in ``tmp``."""
    args = ["fit", *FLAGS, f"--trainer.default_root_dir={tmp}/run", f"--data.cache_dir={tmp}/cache", *extra]
    return args + ([f"--data.data_files={json.dumps(data_files)}"] if data_files else [])


def fit(tmp: Path, data_files: dict | None = None, *extra: str) -> tuple[int, str]:
    """The fit's exit code and stderr; the contract holds whatever the outcome."""
    code, err = run_cli(fit_args(tmp, data_files, *extra))
    assert_contract(code, err, tmp)
    return code, err


def fit_refused(tmp: Path, data_files: dict | None = None, *extra: str) -> str:
    """The one error line of a refused fit."""
    return refused(fit_args(tmp, data_files, *extra), tmp)


def with_dev(tmp: Path, train: str) -> dict[str, str]:
    return {"train": str(tmp / train), "validation": write_rows(tmp / "dev.csv", rows(15, 2))}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def console() -> Iterator[list[str]]:
    """The info and warning lines Lightning's logger prints (rank_zero_info and ours)."""
    handler, logger = Lines(), logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def test_row_02_csv_errors_name_the_line_an_editor_shows(tmp_path: Path) -> None:
    lines, expected = ["text,label"], None
    for i, row in enumerate(rows(30, 1)):
        if i in (4, 11):
            lines.append("")  # pandas skips blank lines; editors count them
        if i == 19:
            expected = sum(line.count("\n") + 1 for line in lines) + 1
        text = " " if i == 19 else f'{row["text"]}\nsecond line, quoted'  # two lines per row
        lines.append(f'"{text}",{row["label"]}')
    (tmp_path / "nl_blank.csv").write_text("\n".join(lines) + "\n")
    err = fit_refused(tmp_path, with_dev(tmp_path, "nl_blank.csv"))
    assert f"nl_blank.csv line {expected}: 'text' is empty" in err and expected == 42


@pytest.mark.slow
def test_row_02_json_lines_name_the_line_and_arrays_the_item(tmp_path: Path) -> None:
    good = rows(20, 1)
    lines = [json.dumps(r) for r in good[:5]] + ["", "  "] + [json.dumps({"text": None, "label": "pos"})]
    (tmp_path / "gaps.jsonl").write_text("\n".join(lines + [json.dumps(r) for r in good[5:]]) + "\n")
    assert "gaps.jsonl line 8: 'text' is missing" in fit_refused(tmp_path, with_dev(tmp_path, "gaps.jsonl"))
    (tmp_path / "arr.json").write_text(json.dumps(good[:6] + [{"text": "", "label": "pos"}] + good[6:], indent=2))
    assert "arr.json item 7: 'text' is empty" in fit_refused(tmp_path, with_dev(tmp_path, "arr.json"))


@pytest.mark.parametrize("name, bad, expected", [
    ("ragged.tsv", "bad\tx\ty", "ragged.tsv line 12: 3 fields where the header has 2; fix: TSV has no quoting"),
    ("ragged.csv", '"two\nlines",x,y', "ragged.csv line 12: 3 fields where the header has 2; fix: quote a field"),
])
def test_row_04_a_row_of_too_many_fields_names_file_and_line_only(tmp_path: Path, name: str, bad: str,
                                                                 expected: str) -> None:
    sep = "\t" if name.endswith(".tsv") else ","
    body = [f"{r['text']}{sep}{r['label']}" for r in rows(20, 1)]
    (tmp_path / name).write_text("\n".join([f"text{sep}label", *body[:10], bad, *body[10:]]) + "\n")
    logged, datasets_logger = Lines(), logging.getLogger("datasets")
    datasets_logger.addHandler(logged)
    try:
        err = fit_refused(tmp_path, with_dev(tmp_path, name))
    finally:
        datasets_logger.removeHandler(logged)
    assert expected in err
    assert not logged.lines  # datasets' own "Failed to read file ..." stays quiet


@pytest.mark.parametrize("label", ["", "   "])
def test_row_06_empty_label_is_refused(tmp_path: Path, label: str) -> None:
    data = rows(20, 1)
    data[6]["label"] = label
    write_rows(tmp_path / "emptylab.csv", data)
    assert "emptylab.csv line 8: 'label' is empty" in fit_refused(tmp_path, with_dev(tmp_path, "emptylab.csv"))


@pytest.mark.parametrize("sep", [";", "\t"])
def test_row_07_a_csv_separated_otherwise_is_read_so(tmp_path: Path, console: list[str], sep: str) -> None:
    body = [f"{r['text']}{sep}{r['label']}" for r in rows(30, 1)]
    (tmp_path / "semi.csv").write_text("\n".join([f"text{sep}label", *body]) + "\n")
    assert fit(tmp_path, with_dev(tmp_path, "semi.csv"))[0] == 0
    said = [line for line in console if "semi.csv as" in line]
    assert len(said) == 1 and ("';'-separated" if sep == ";" else "tab-separated") in said[0]


def test_row_09_only_one_class_is_refused(tmp_path: Path) -> None:
    write_rows(tmp_path / "oneclass.csv", [dict(r, label="sport") for r in rows(20, 1)])
    files = {"train": str(tmp_path / "oneclass.csv"), "validation": str(tmp_path / "oneclass.csv")}
    err = fit_refused(tmp_path, files)
    assert "oneclass.csv (train) holds one class only ('sport')" in err and "2 or more classes" in err


@pytest.mark.parametrize("name", ["duphdr.csv", "duphdr.tsv", "duphdr.parquet"])
def test_row_13_duplicate_header_names_are_refused(tmp_path: Path, name: str) -> None:
    if name.endswith(".parquet"):  # pyarrow writes duplicate names; datasets would fail on them
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table([["a b"] * 4, ["c d"] * 4, ["pos", "neg"] * 2], names=["text", "text", "label"]),
                       tmp_path / name)
    else:
        sep = "\t" if name.endswith(".tsv") else ","
        (tmp_path / name).write_text(sep.join(["text", "text", "label\n"]) + sep.join(["a b", "c d", "pos\n"]) * 4)
    assert f"{name}: column 'text' appears twice in the header" in fit_refused(tmp_path, with_dev(tmp_path, name))


def test_row_18_records_under_one_json_field_are_read(tmp_path: Path, console: list[str]) -> None:
    data = rows(30, 1)
    (tmp_path / "nested.json").write_text("\ufeff" + json.dumps({"version": 2, "data": data}, indent=2))
    assert fit(tmp_path, with_dev(tmp_path, "nested.json"))[0] == 0
    assert [line for line in console if "nested.json under its field 'data'" in line]
    (tmp_path / "splits.json").write_text(json.dumps({"train": data[:20], "test": data[20:]}))
    dm = TextDataModule(data_files={"train": str(tmp_path / "splits.json")}, validation_size=0.3,
                        cache_dir=str(tmp_path / "cache"))
    assert len(dm.dataset["train"]) + len(dm.dataset["validation"]) == 20  # the list named as the split
    err = fit_refused(tmp_path, {"train": str(tmp_path / "splits.json"), "validation": str(tmp_path / "splits.json")})
    assert "splits.json holds several lists of records (train, test) and none is called 'validation'" in err


def test_row_19_json_labels_mixing_ints_and_strings_are_their_string_form(tmp_path: Path) -> None:
    data = [{"text": r["text"], "label": [1, 2, "3"][i % 3]} for i, r in enumerate(rows(30, 1))]
    (tmp_path / "mixtype.jsonl").write_text("\n".join(json.dumps(r) for r in data) + "\n\n")  # blank end
    dm = TextDataModule(data_files={"train": str(tmp_path / "mixtype.jsonl")}, min_frequency=1,
                        validation_size=0.3, cache_dir=str(tmp_path / "cache"))
    assert dm.label_names == ["1", "2", "3"] and len(dm.dataset["train"]) == 21


@pytest.mark.parametrize("label", [[1, 2], {"id": 1}])
def test_row_19_nested_labels_are_refused(tmp_path: Path, label: object) -> None:
    data = rows(20, 1)
    data[3]["label"] = label
    (tmp_path / "nest.jsonl").write_text("\n".join(json.dumps(r) for r in data) + "\n")
    err = fit_refused(tmp_path, with_dev(tmp_path, "nest.jsonl"))
    assert f"nest.jsonl line 4: 'label' holds {label!r}, not a class id or name" in err


def test_row_23_an_empty_class_folder_is_refused(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "folders_empty", {"food": 10, "tech": 10, "weather": 0})
    err = fit_refused(tmp_path, None, f"--data.path={root}")
    assert "folders_empty/weather: empty class folder (no text files)" in err


def test_row_24_25_hidden_and_binary_files_are_skipped_and_counted(tmp_path: Path, console: list[str]) -> None:
    root = write_class_folders(tmp_path / "folders_bin", {"food": 10, "tech": 10})
    (root / "food" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(100))
    (root / "tech" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\0\x10JFIF" + bytes(range(256)))
    dm = TextDataModule(path=str(root), min_frequency=1, cache_dir=str(tmp_path / "cache"))
    assert len(dm.dataset["train"]) + len(dm.dataset["validation"]) == 20
    said = [line for line in console if line.startswith("Skipped")]
    assert said == [f"Skipped 2 files in class folders: 1 hidden, 1 binary (first: {root / 'food' / '.DS_Store'})."]
    for content, was in (("caf\xe9 au lait".encode("latin-1"), "latin1"), ("café".encode("utf-16"), "utf-16")):
        (root / "tech" / "notes.txt").write_bytes(content)  # a text, not UTF-8 (UTF-16 has NULs)
        err = fit_refused(tmp_path, None, f"--data.path={root}")
        assert "notes.txt: not UTF-8 (byte 0x" in err and f"iconv -f {was} -t utf-8" in err


def test_row_27_an_unreadable_file_is_named() -> None:
    # Root reads any file, so as root the CLI runs as 'nobody' (effective uid only, given back
    # after), on data in a folder that 'nobody' may enter: pytest's tmp_path is root's alone.
    tmp = Path(tempfile.mkdtemp())
    try:
        tmp.chmod(0o777)
        root = write_class_folders(tmp / "folders_ro", {"food": 6, "tech": 6})
        (root / "tech" / "1.txt").chmod(0)
        args = ["fit", *FLAGS, f"--data.path={root}", f"--data.cache_dir={tmp / 'cache'}",
                f"--trainer.default_root_dir={tmp / 'run'}"]
        code, err = run_cli_as_nobody(args)
        assert_contract(code, err, tmp)
        assert code == 2 and f"error: {root / 'tech' / '1.txt'}: cannot be read (Permission denied)" in err
    finally:
        shutil.rmtree(tmp)


def test_row_28_a_folder_in_data_files_is_called_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dirsplit").mkdir()
    err = fit_refused(tmp_path, {"train": str(tmp_path / "dirsplit")})
    assert "dirsplit: a folder, not a file; fix: name its files, e.g." in err


@pytest.mark.slow
def test_row_29_30_globs_and_lists_of_files_per_split(tmp_path: Path) -> None:
    data = rows(40, 1)
    for i, name in enumerate(("part_a.csv", "part_b.csv", "part_c.csv")):
        write_rows(tmp_path / name, data[i * 10:(i + 1) * 10])
    listed = {"train": [str(tmp_path / "part_a.csv"), str(tmp_path / "part_b.csv")],
              "validation": write_rows(tmp_path / "dev.csv", data[30:])}
    assert fit(tmp_path, listed)[0] == 0
    globbed = {"train": str(tmp_path / "part_*.csv"), "validation": str(tmp_path / "dev.csv")}
    dm = TextDataModule(data_files=globbed, min_frequency=1, cache_dir=str(tmp_path / "cache"))
    assert len(dm.dataset["train"]) == 30  # a, b and c, in sorted order
    data[24]["text"] = ""  # row 5 of part_c.csv: its line 6
    write_rows(tmp_path / "part_c.csv", data[20:30])
    assert "part_c.csv line 6: 'text' is empty" in fit_refused(tmp_path, globbed)
    assert "part_*.tsv: no file matches" in fit_refused(tmp_path, {"train": str(tmp_path / "part_*.tsv")})


@pytest.mark.parametrize("texts", [["今天天气很好", "我喜欢吃苹果", "股票市场上涨", "球队赢了比赛"],
                                   ["😀🎉", "🍕🍔🍟", "⚽🏆", "📈💰"]])
def test_row_31_33_mostly_unknown_tokens_are_warned_about_once(tmp_path: Path, console: list[str],
                                                               texts: list[str]) -> None:
    def write(name: str, seed: int) -> str:
        data = [{"text": f"{texts[i % 4]}{texts[(i * seed) % 4]}{i}", "label": "ab"[i % 2]} for i in range(20)]
        return write_rows(tmp_path / name, data)

    files = {"train": write("train.csv", 1), "validation": write("dev.csv", 3)}
    TextDataModule(data_files=files, cache_dir=str(tmp_path / "cache")).dataset  # noqa: B018
    assert len([line for line in console if "[UNK]" in line and "--data.tokenizer bpe" in line]) == 1
    console.clear()
    TextDataModule(data_files=files, cache_dir=str(tmp_path / "cache"), tokenizer="bpe").dataset  # noqa: B018
    assert not [line for line in console if "[UNK]" in line and "--data.tokenizer bpe" in line]


@pytest.mark.parametrize("knob", ["seed", "min_frequency"])
def test_row_53_a_negative_seed_is_refused_as_such(tmp_path: Path, knob: str) -> None:
    err = fit_refused(tmp_path, {"train": write_rows(tmp_path / "train.csv", rows(30, 1))}, f"--data.{knob}=-1")
    assert err == f"error: --data.{knob} is -1; fix: 0 or more"


def test_row_54_one_column_for_text_and_label_is_refused(tmp_path: Path) -> None:
    err = fit_refused(tmp_path, with_dev(tmp_path, "train.csv"), "--data.text_column=label")
    assert "--data.label_column 'label' is also a --data.text_column" in err


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["dev", "valid", "val"])
@pytest.mark.parametrize("source", ["data_files", "split folders", "load_dataset"])
def test_dev_valid_and_val_are_the_validation_split(tmp_path: Path, console: list[str], alias: str,
                                                    source: str) -> None:
    if source == "split folders":
        write_class_folders(tmp_path / "corpus" / "train", {"neg": 10, "pos": 10})
        write_class_folders(tmp_path / "corpus" / alias, {"neg": 3, "pos": 4})
        dm = TextDataModule(path=str(tmp_path / "corpus"), min_frequency=1, cache_dir=str(tmp_path / "cache"))
    else:
        files = {"train": write_rows(tmp_path / "a.csv", rows(30, 1)), alias: write_rows(tmp_path / "b.csv", rows(7, 2))}
        path = "csv" if source == "load_dataset" else None
        dm = TextDataModule(path=path, data_files=files, min_frequency=1, cache_dir=str(tmp_path / "cache"))
    assert len(dm.dataset["validation"]) == 7  # that split, not 10% carved from train
    assert f"Using the split '{alias}' as the validation split." in console
