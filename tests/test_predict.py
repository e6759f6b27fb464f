"""``python -m project predict`` from a checkpoint alone: the training files of ``tiny_run``
are gone and no config is given."""

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from project.commands.cli import main
from project.data.tokenization import KINDS, train_tokenizer
from project.inference import predict
from project.inference.labeller import Labeller
from tests.helpers import ROOT, best_checkpoint, make_rows, refused, run_cli, write_rows


def run_predict(args: list[str], capsys) -> list[dict]:
    main(["predict", *args])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_file_gives_one_line_per_input_line_in_order(tiny_run, tmp_path: Path, capsys) -> None:
    texts = [row["sentence"] for row in make_rows(40, seed=9)]
    lines = texts[:10] + ["", "   "] + texts[10:]  # blank lines in the middle are kept
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    ckpt = best_checkpoint(tiny_run)
    out = run_predict([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'in.txt'}", "--batch_size=8"], capsys)
    assert [o["text"] for o in out] == lines
    assert [o["blank"] for o in out] == [not line.strip() for line in lines]
    assert all(o["label"] is None and o["probabilities"] is None for o in out if o["blank"])
    for o in out:
        if not o["blank"]:
            assert set(o["probabilities"]) == {"neg", "neu", "pos"}
            assert abs(sum(o["probabilities"].values()) - 1) < 1e-4
            assert o["label"] == max(o["probabilities"], key=o["probabilities"].get)
    # Batches are length-sorted inside: the same texts reversed get the same numbers back.
    (tmp_path / "rev.txt").write_text("\n".join(reversed(lines)) + "\n")
    back = run_predict([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'rev.txt'}", "--batch_size=8"], capsys)
    assert list(reversed(back)) == out


def test_same_probabilities_as_the_model_itself(tiny_run, tmp_path: Path, capsys) -> None:
    text = "great superb lovely film"
    (tmp_path / "one.txt").write_text(text + "\n")
    out = run_predict([f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'one.txt'}"], capsys)
    model = tiny_run.model.__class__.load_from_checkpoint(best_checkpoint(tiny_run)).eval()
    ids = tiny_run.datamodule.tokenizer.encode(text).ids
    with torch.no_grad():
        expected = (model(torch.tensor([ids]), torch.tensor([len(ids)])) / model.temperature).softmax(-1)[0].tolist()
    assert list(out[0]["probabilities"].values()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_table_input_and_file_output(tiny_run, tmp_path: Path, suffix: str) -> None:
    rows = make_rows(12, seed=4)
    source = write_rows(tmp_path / f"in{suffix}", rows)
    target = tmp_path / "out.jsonl"
    main(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={source}", "--text_column=sentence",
          f"--output={target}"])
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [o["text"] for o in out] == [row["sentence"] for row in rows]
    assert not list(tmp_path.glob(".out.jsonl*"))  # the partial file was renamed into place


@pytest.mark.slow
def test_stdin_to_stdout_in_a_folder_without_config_or_data(tiny_run, tmp_path: Path) -> None:
    lines = ["good great film", "", "awful dull boring"]
    done = subprocess.run(
        [sys.executable, "-m", "project", "predict", "--ckpt_path", best_checkpoint(tiny_run)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["text"] for o in out] == lines and [o["blank"] for o in out] == [False, True, False]


def bad_inputs(tmp_path: Path, ckpt: str) -> dict[str, tuple[list[str], bytes | None, str]]:
    """case -> (args, stdin bytes, what the error line must say)."""
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"\n  \n\t\n")
    (tmp_path / "latin1.txt").write_bytes("fine\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    (tmp_path / "utf16.txt").write_bytes("fine\ncafé\n".encode("utf-16"))
    (tmp_path / "truncated.ckpt").write_bytes(Path(ckpt).read_bytes()[:2000])
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    write_rows(tmp_path / "rows.csv", make_rows(3, seed=1))
    good = f"--input={tmp_path / 'rows.csv'}"
    return {
        "empty file": ([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'empty.txt'}"], None, "no text at all"),
        "blank lines only": ([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'blank.txt'}"], None, "no text at all"),
        "empty stdin": ([f"--ckpt_path={ckpt}"], b"", "stdin has no text"),
        "latin-1 file": ([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'latin1.txt'}"], None, "line 2"),
        "latin-1 stdin": ([f"--ckpt_path={ckpt}"], b"caf\xe9\n", "not UTF-8"),
        "utf-16 file": ([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'utf16.txt'}"], None, "iconv -f utf-16 -t utf-8"),
        "missing input": ([f"--ckpt_path={ckpt}", "--input=nope.txt"], None, "no such file"),
        "missing column": ([f"--ckpt_path={ckpt}", good], None, "--text_column"),
        "missing checkpoint": (["--ckpt_path=nope.ckpt", good], None, "no such checkpoint"),
        "truncated checkpoint": ([f"--ckpt_path={tmp_path / 'truncated.ckpt'}", good], None, "not a readable"),
        "foreign checkpoint": ([f"--ckpt_path={tmp_path / 'other.ckpt'}", good], None, "without this project"),
        "missing output folder": ([f"--ckpt_path={ckpt}", good, "--text_column=sentence",
                                   f"--output={tmp_path / 'no' / 'out.jsonl'}"], None, "no folder"),
    }


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_code_2(tiny_run, tmp_path: Path, capsys, monkeypatch) -> None:
    for case, (args, stdin, says) in bad_inputs(tmp_path, best_checkpoint(tiny_run)).items():
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b"")))
        with pytest.raises(SystemExit) as exit_:
            main(["predict", *args])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert exit_.value.code == 2, (case, err[-5:])
        assert err[-1].startswith("error: ") and says in err[-1] and "fix: " in err[-1], (case, err[-1])
        assert captured.out == "", case


# --- rows of the new-user trial (/work/shared/reports/new-user-trial-2026-11-26.md) ---


@pytest.mark.slow
def test_row_66_output_equal_to_the_input_is_refused(tiny_run, tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "in.txt"
    source.write_text("good film\n")
    (tmp_path / "link.txt").symlink_to(source)
    monkeypatch.chdir(tmp_path)
    for output in ["in.txt", "./in.txt", str(source), "link.txt", f"../{tmp_path.name}/in.txt"]:
        for overwrite in ([], ["--overwrite"]):  # never the input, even with --overwrite
            refused(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", "--input=in.txt", f"--output={output}",
                     *overwrite], tmp_path, "is the input")
    assert source.read_text() == "good film\n"


def test_row_67_output_equal_to_the_checkpoint_is_refused(tiny_run, tmp_path: Path) -> None:
    ckpt = tmp_path / "copy.ckpt"
    ckpt.write_bytes(Path(best_checkpoint(tiny_run)).read_bytes())
    os.link(ckpt, tmp_path / "hard.ckpt")  # the same inode under another name
    (tmp_path / "in.txt").write_text("good film\n")
    for output in [ckpt, tmp_path / "hard.ckpt"]:
        refused(["predict", f"--ckpt_path={ckpt}", f"--input={tmp_path / 'in.txt'}", f"--output={output}",
                 "--overwrite"], tmp_path, "is the checkpoint")
    assert ckpt.read_bytes() == Path(best_checkpoint(tiny_run)).read_bytes()


@pytest.mark.slow
def test_row_66_an_existing_output_is_replaced_only_with_overwrite(tiny_run, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("good film\n")
    (tmp_path / "folder").mkdir()
    target = tmp_path / "out.jsonl"
    target.write_text("precious\n")
    args = [f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'in.txt'}"]
    refused(["predict", *args, f"--output={target}"], tmp_path, "--overwrite")
    assert target.read_text() == "precious\n"
    refused(["predict", *args, f"--output={tmp_path / 'folder'}"], tmp_path, "is a folder")
    refused(["predict", *args, f"--output={tmp_path / 'nofolder'}/"], tmp_path, "is a folder")
    refused(["predict", *args, "--output=/dev/null", "--overwrite"], tmp_path, "not a regular file")
    assert run_cli(["predict", *args, f"--output={target}", "--overwrite"])[0] == 0
    assert json.loads(target.read_text())["text"] == "good film"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "in.txt", "out.jsonl"]


@pytest.mark.parametrize("size", ["0", "-1"])
def test_row_69_70_batch_size_below_one_is_refused(tiny_run, tmp_path: Path, size: str) -> None:
    (tmp_path / "in.txt").write_text("good film\n")
    refused(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'in.txt'}",
             f"--batch_size={size}"], tmp_path, f"--batch_size is {size}; fix: 1 or more")


def test_row_71_input_that_is_a_folder_is_refused(tiny_run, tmp_path: Path) -> None:
    refused(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path}"], tmp_path, "is a folder")


@pytest.mark.parametrize("accelerator", ["gpu", "mps", "nonsense"])
def test_row_72_missing_accelerator_is_refused(tiny_run, tmp_path: Path, accelerator: str) -> None:
    (tmp_path / "in.txt").write_text("good film\n")
    args = ["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'in.txt'}",
            f"--accelerator={accelerator}", f"--output={tmp_path / 'out.jsonl'}"]
    if accelerator == "gpu" and torch.cuda.is_available():  # a machine that has it labels with it
        assert run_cli(args)[0] == 0 and json.loads((tmp_path / "out.jsonl").read_text())["text"] == "good film"
    else:
        refused(args, tmp_path, f"device '{accelerator}'")


@pytest.mark.slow
def test_row_73_a_bom_is_not_text(tiny_run, tmp_path: Path) -> None:
    lines = ["great superb film", "", "awful film"]
    (tmp_path / "plain.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")  # Notepad's way
    out = {}
    for name in ("plain", "bom"):
        main(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / name}.txt",
              f"--output={tmp_path / name}.jsonl"])
        out[name] = (tmp_path / f"{name}.jsonl").read_text()
    assert out["bom"] == out["plain"] and [json.loads(o)["text"] for o in out["bom"].splitlines()] == lines


@pytest.mark.slow
def test_row_63_a_big_input_streams_through_in_input_order(tiny_run, tmp_path: Path) -> None:
    """More than one chunk (the first one blank lines only: held back until a text shows up)."""
    texts = [row["sentence"] for row in make_rows(30, seed=7)]
    lines = [""] * predict.CHUNK + texts[:15] + [" "] + texts[15:]
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n")
    main(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'big.txt'}",
          f"--output={tmp_path / 'out.jsonl'}"])
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().split("\n")[:-1]]
    assert [o["text"] for o in out] == lines and [o["blank"] for o in out] == [not t.strip() for t in lines]


def test_row_63_a_bad_byte_in_a_later_chunk_leaves_nothing(tiny_run, tmp_path: Path, capsys) -> None:
    """The first chunk is labelled and written before the second fails (blank lines: quick)."""
    head = b"good film\n" + b"\n" * (predict.CHUNK - 1)
    (tmp_path / "big.txt").write_bytes(head + b"caf\xe9\n")
    for output in [tmp_path / "out.jsonl", "-"]:  # to stdout: the whole input is checked first
        refused(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'big.txt'}",
                 f"--output={output}"], tmp_path, f"at offset {len(head) + 3}, line {predict.CHUNK + 1})")
        assert capsys.readouterr().out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_a_closed_pipe_ends_quietly(tiny_run, tmp_path: Path, monkeypatch) -> None:
    """``predict ... | head -1``: the reader goes away; no traceback (exit code 1, as Python advises)."""
    (tmp_path / "in.txt").write_text("good film\n" * 2000)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        code, err = run_cli(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'in.txt'}"])
    assert code == 1 and "Traceback" not in err and "error" not in err, err[-2000:]


def test_input_from_a_pipe(tiny_run, tmp_path: Path) -> None:
    """``--input <(zcat texts.gz)``: a pipe is read once, as it comes."""
    os.mkfifo(tmp_path / "pipe")
    writer = threading.Thread(target=(tmp_path / "pipe").write_text, args=("good film\n\nawful film\n",))
    writer.start()
    main(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--input={tmp_path / 'pipe'}",
          f"--output={tmp_path / 'out'}"])
    writer.join()
    assert [json.loads(line)["text"] for line in (tmp_path / "out").read_text().splitlines()] == \
        ["good film", "", "awful film"]


class Even(Labeller):
    """The steps every predictor shares, around a model that gives every class the same share."""

    def __init__(self, tokenizer) -> None:  # noqa: ANN001 - a tokenizers.Tokenizer
        self.tokenizer, self.label_names, self.batch_size = tokenizer, ["a", "b"], 3

    def _run(self, batches) -> np.ndarray:  # noqa: ANN001
        return np.full((sum(len(batch) for batch in batches), 2), 0.5, dtype=np.float32)


TRAINED = {}  # one tokenizer of each kind, trained once, reading at most 5 tokens


def tokenizer_of(kind: str):  # noqa: ANN201
    if kind not in TRAINED:
        train = Dataset.from_dict({"text": ["good film", "bad film", "a good plot"] * 5})
        TRAINED[kind] = train_tokenizer(train, kind, vocab_size=60, min_frequency=1, lowercase=True)
        TRAINED[kind].enable_truncation(5)
    return TRAINED[kind]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(["good ", "film ", "qq ", "xyz ", " ", "中", "😀", "\t"]), max_size=9)
                      .map("".join), max_size=9))
def test_what_was_read_is_counted_per_text(kind: str, texts: list[str]) -> None:
    """Tokens read, unknown ones and truncation, per text and in order, as the tokenizer reads
    each text alone; whatever the mix of blank, unknown and long texts in a batch."""
    tokenizer = tokenizer_of(kind)
    unk = tokenizer.token_to_id("[UNK]")
    got = Even(tokenizer).predict(texts)
    for text, line in zip(texts, got, strict=True):
        encoding = tokenizer.encode(text)
        ids = encoding.ids if text.strip() else []
        assert (line["tokens"], line["unknown_tokens"], line["truncated"]) == \
            (len(ids), ids.count(unk), bool(ids) and bool(encoding.overflowing))
        assert line["blank"] == (not ids) and (line["label"] is None) == (not ids)


def test_top_k_gives_the_k_best_labels_in_order(tiny_run, tmp_path: Path, capsys) -> None:
    """``--top_k K`` and ``predict(texts, top_k=K)``: the K most probable labels, best first, each
    with its probability as in ``probabilities``; null for a blank line; K outside 1..classes is
    one line."""
    from project.inference.predictor import Predictor

    texts = [row["sentence"] for row in make_rows(12, seed=4)]
    (tmp_path / "in.txt").write_text("\n".join([*texts, ""]) + "\n")
    ckpt = best_checkpoint(tiny_run)
    plain = run_predict([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'in.txt'}"], capsys)
    for k in (1, 2, 3):
        lines = run_predict([f"--ckpt_path={ckpt}", f"--input={tmp_path / 'in.txt'}", f"--top_k={k}"], capsys)
        assert [{key: v for key, v in line.items() if key != "top_k"} for line in lines] == plain
        assert lines[-1]["top_k"] is None
        for line in lines[:-1]:
            shares = sorted(line["probabilities"].items(), key=lambda item: -item[1])[:k]
            assert [(t["label"], t["probability"]) for t in line["top_k"]] == shares
            assert line["top_k"][0]["label"] == line["label"]
    api = Predictor.from_checkpoint(ckpt, device="cpu").predict([*texts, ""], top_k=2)
    assert [[t["label"] for t in row["top_k"]] for row in api[:-1]] == [[t["label"] for t in line["top_k"][:2]]
                                                                         for line in lines[:-1]]
    assert "top_k" not in Predictor.from_checkpoint(ckpt, device="cpu").predict(texts)[0]
    for bad in ("0", "4", "-1"):
        refused(["predict", f"--ckpt_path={ckpt}", f"--input={tmp_path / 'in.txt'}", f"--top_k={bad}"], tmp_path,
                f"top_k is {bad}", "from 1 to 3")
