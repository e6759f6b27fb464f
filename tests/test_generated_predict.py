"""Generated ``predict`` inputs and flag values (Hypothesis). Whatever the text (CJK, emoji,
control characters, CRLF, blank lines, a BOM) or the table around it, predict writes exactly one
JSON line per input line or row, in order, or stops with one error line; whatever the flag
values (batch sizes, accelerators, output paths onto the input, the checkpoint, folders or
existing files), it keeps the contract and leaves the files it did not write as they were.
``PROJECT_EXAMPLES=300 pytest tests/test_generated_predict.py`` runs a long hunt."""

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_contract, best_checkpoint, examples, run_cli, write_rows


def budget(small: int) -> settings:
    # tmp_path and tiny_run are shared by the examples of a test: each example works in a fresh
    # folder of its own, so nothing carries over between them.
    return settings(max_examples=examples(small), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# Characters that trip up readers and writers, drawn often on top of the whole of Unicode.
AWKWARD = list("中文字日本語한국😀👍🏽🇫🇷") + list("\x00\x01\x1b\t\x0b\x0c\x1c\x85\u2028\u2029\ufeff\u200b\u00a0\r \"',\\{}")
CHARS = st.one_of(st.characters(codec="utf-8", exclude_characters="\n"), st.sampled_from(AWKWARD))
TEXT = st.text(CHARS, max_size=30)
BOM = "\ufeff"


def folder(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


def read_jsonl(path: Path) -> list[dict]:
    """Split on newline alone: U+2028, U+0085 and friends are text inside a JSON string."""
    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "", "the last line is not ended"
    return [json.loads(line) for line in lines[:-1]]


def check_lines(out: list[dict], texts: list[str]) -> None:
    assert [o["text"] for o in out] == texts
    for o, text in zip(out, texts):
        if not text.strip():
            assert o["blank"], o
        assert (o["label"] is None) == o["blank"] == (o["probabilities"] is None), o
        if not o["blank"]:
            assert abs(sum(o["probabilities"].values()) - 1) < 1e-4 and o["label"] in o["probabilities"], o


KINDS = ["--batch_size", "Parser key", "device '", "is the input", "is the checkpoint", "already exists",
         "is a folder", "not a regular file", "no folder", "no text at all", "one device only"]


def outcome(code: int, err: str) -> str:
    """What an example ended in, for --hypothesis-show-statistics: written, or which refusal."""
    return "written" if code == 0 else "refused: " + next((k for k in KINDS if k in err), "other")


def run(tiny_run, root: Path, source: Path, *flags: str) -> tuple[int, str]:
    code, err = run_cli(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={source}",
                         f"--output={root / 'out.jsonl'}", *flags])
    assert_contract(code, err, root)
    event(outcome(code, err))
    return code, err


@pytest.mark.slow
@budget(8)
@given(lines=st.lists(TEXT.filter(lambda line: not line.endswith("\r")), max_size=12),
       newline=st.sampled_from(["\n", "\r\n"]), ended=st.booleans(), bom=st.booleans())
def test_plain_text_gives_one_line_per_input_line(tiny_run, tmp_path: Path, lines, newline, ended, bom) -> None:
    root = folder(tmp_path)
    content = (BOM if bom else "") + newline.join(lines) + (newline if ended and lines else "")
    (root / "in.txt").write_bytes(content.encode("utf-8"))
    # What a reader of the file sees: a BOM at its very start is not text; nor is a final newline.
    texts = list(lines[:-1] if lines and lines[-1] == "" and not ended else lines)
    if texts:
        texts[0] = ((BOM if bom else "") + texts[0]).removeprefix(BOM)
    code, err = run(tiny_run, root, root / "in.txt")
    if not any(t.strip() for t in texts):
        assert code == 2 and "no text at all" in err, err
        assert sorted(p.name for p in root.iterdir()) == ["in.txt"]
    else:
        assert code == 0
        check_lines(read_jsonl(root / "out.jsonl"), texts)


@pytest.mark.slow
@budget(6)
@given(texts=st.lists(TEXT, min_size=1, max_size=8), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_table_gives_one_line_per_row(tiny_run, tmp_path: Path, texts, suffix) -> None:
    root = folder(tmp_path)
    source = Path(write_rows(root / f"in{suffix}", [{"review": t, "id": i} for i, t in enumerate(texts)]))
    code, err = run(tiny_run, root, source, "--text_column=review")
    if code == 0:
        check_lines(read_jsonl(root / "out.jsonl"), texts)
    else:
        assert "no text at all" in err and not any(t.strip() for t in texts), err


# Valid values are drawn about half the time, so that later checks and the writing are reached.
PATHS = ["new.jsonl"] * 3 + ["existing.jsonl", "in.txt", "./in.txt", "link-to-in.txt", "model.ckpt", "hard.ckpt",
                             "sub", "sub/", "nowhere/out.jsonl", "dangling.jsonl", ".", "/dev/null"]
BATCH_SIZES = st.one_of(st.integers(1, 300), st.integers(10**6, 10**30), st.integers(-10**20, 0),
                        st.sampled_from(["1.5", "1e3", "true", "null", "", "[]", " 3", "0x10", "٣", "nan"]))
ACCELERATORS = st.sampled_from(["cpu", "auto"] * 3 + ["gpu", "cuda", "mps", "tpu", "nonsense", ""])
DEVICES = st.sampled_from(["1"] * 4 + ["[0]", "[1]", "2", "0", "-1", "[0, 1]", "[]", "auto", "cpu"])
PRECISIONS = st.sampled_from(["32-true"] * 4 + ["bf16-mixed", "16-mixed", "64-true", "16", "32", "bf16-true",
                                                "transformer-engine", "half", ""])


@pytest.mark.slow
@budget(10)
@given(batch_size=BATCH_SIZES, output=st.sampled_from(PATHS), overwrite=st.booleans(), accelerator=ACCELERATORS,
       devices=DEVICES, precision=PRECISIONS)
# Found by a hunt: bf16 probabilities summed to 0.999 (the softmax now runs in float32).
@example(batch_size=1, output="new.jsonl", overwrite=False, accelerator="cpu", devices="1", precision="bf16-mixed")
def test_flag_values_keep_the_contract(tiny_run, tmp_path: Path, batch_size, output, overwrite, accelerator, devices,
                                       precision) -> None:
    root = folder(tmp_path)
    (root / "in.txt").write_text("great superb film\n\nawful dull film\n")
    (root / "model.ckpt").write_bytes(Path(best_checkpoint(tiny_run)).read_bytes())
    os.link(root / "model.ckpt", root / "hard.ckpt")
    (root / "link-to-in.txt").symlink_to(root / "in.txt")
    (root / "dangling.jsonl").symlink_to(root / "gone")
    (root / "existing.jsonl").write_text("mine\n")
    (root / "sub").mkdir()
    before = {p: p.read_bytes() for p in root.iterdir() if p.is_file()}
    names = sorted(p.name for p in root.iterdir())
    cwd = os.getcwd()
    os.chdir(root)  # relative paths as a user types them; pytest's monkeypatch is function-scoped
    try:
        code, err = run_cli(["predict", f"--ckpt_path={root / 'model.ckpt'}", "--input=in.txt",
                             f"--output={output}", f"--batch_size={batch_size}", f"--accelerator={accelerator}",
                             f"--devices={devices}", f"--precision={precision}", *(["--overwrite"] if overwrite else [])])
    finally:
        os.chdir(cwd)
    written = assert_contract(code, err, root)
    event(outcome(code, err))
    target = root / output
    for path, content in before.items():  # every file predict did not write is as it was
        if not (written and path == target):
            assert path.read_bytes() == content, (path, err)
    if written:  # a new name, or an existing file (or link) with --overwrite: never the input or model
        assert output == "new.jsonl" or overwrite and output in ("existing.jsonl", "dangling.jsonl"), err
        check_lines(read_jsonl(target), ["great superb film", "", "awful dull film"])
        assert not target.is_symlink()
    else:
        assert sorted(p.name for p in root.iterdir()) == names, err


@pytest.mark.slow
@budget(8)
@given(accelerator=ACCELERATORS, devices=DEVICES, precision=PRECISIONS)
def test_hardware_flags_label_or_are_refused_in_one_line(tiny_run, tmp_path: Path, accelerator, devices,
                                                         precision) -> None:
    """--accelerator / --devices / --precision with everything else valid: the lines are written
    (in any precision this machine runs, the same labels), or one line names the setting."""
    root = folder(tmp_path)
    (root / "in.txt").write_text("great superb film\n\nawful dull film\n")
    code, err = run_cli(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={root / 'in.txt'}",
                         f"--output={root / 'out.jsonl'}", f"--accelerator={accelerator}", f"--devices={devices}",
                         f"--precision={precision}"])
    event(outcome(code, err))
    if assert_contract(code, err, root):
        check_lines(read_jsonl(root / "out.jsonl"), ["great superb film", "", "awful dull film"])
    else:
        assert not (root / "out.jsonl").exists(), err
