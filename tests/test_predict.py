"""``python -m project predict`` from a checkpoint alone: the training files of ``tiny_run``
are gone and no config is given."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from project.cli import main
from tests.conftest import make_rows, write_rows


def best(tiny_run) -> str:
    return tiny_run.trainer.checkpoint_callback.best_model_path


def run_predict(args: list[str], capsys) -> list[dict]:
    main(["predict", *args])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_file_gives_one_line_per_input_line_in_order(tiny_run, tmp_path: Path, capsys) -> None:
    texts = [row["sentence"] for row in make_rows(40, seed=9)]
    lines = texts[:10] + ["", "   "] + texts[10:]  # blank lines in the middle are kept
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    out = run_predict([f"--ckpt_path={best(tiny_run)}", f"--input={tmp_path / 'in.txt'}", "--batch_size=8"], capsys)
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
    back = run_predict([f"--ckpt_path={best(tiny_run)}", f"--input={tmp_path / 'rev.txt'}", "--batch_size=8"], capsys)
    assert list(reversed(back)) == out


def test_same_probabilities_as_the_model_itself(tiny_run, tmp_path: Path, capsys) -> None:
    text = "great superb lovely film"
    (tmp_path / "one.txt").write_text(text + "\n")
    out = run_predict([f"--ckpt_path={best(tiny_run)}", f"--input={tmp_path / 'one.txt'}"], capsys)
    model = tiny_run.model.__class__.load_from_checkpoint(best(tiny_run)).eval()
    ids = tiny_run.datamodule.tokenizer.encode(text).ids
    with torch.no_grad():
        expected = model(torch.tensor([ids]), torch.tensor([len(ids)])).softmax(-1)[0].tolist()
    assert list(out[0]["probabilities"].values()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_table_input_and_file_output(tiny_run, tmp_path: Path, suffix: str) -> None:
    rows = make_rows(12, seed=4)
    source = write_rows(tmp_path / f"in{suffix}", rows)
    target = tmp_path / "out.jsonl"
    main(["predict", f"--ckpt_path={best(tiny_run)}", f"--input={source}", "--text_column=sentence",
          f"--output={target}"])
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [o["text"] for o in out] == [row["sentence"] for row in rows]
    assert not list(tmp_path.glob(".out.jsonl*"))  # the partial file was renamed into place


def test_stdin_to_stdout_in_a_folder_without_config_or_data(tiny_run, tmp_path: Path) -> None:
    lines = ["good great film", "", "awful dull boring"]
    done = subprocess.run(
        [sys.executable, "-m", "project", "predict", "--ckpt_path", best(tiny_run)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"}, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["text"] for o in out] == lines and [o["blank"] for o in out] == [False, True, False]


def bad_inputs(tmp_path: Path, ckpt: str) -> dict[str, tuple[list[str], bytes | None, str]]:
    """case -> (args, stdin bytes, what the error line must say)."""
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"\n  \n\t\n")
    (tmp_path / "latin1.txt").write_bytes("fine\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
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
        "missing input": ([f"--ckpt_path={ckpt}", "--input=nope.txt"], None, "no such file"),
        "missing column": ([f"--ckpt_path={ckpt}", good], None, "--text_column"),
        "missing checkpoint": (["--ckpt_path=nope.ckpt", good], None, "no such checkpoint"),
        "truncated checkpoint": ([f"--ckpt_path={tmp_path / 'truncated.ckpt'}", good], None, "not a readable"),
        "foreign checkpoint": ([f"--ckpt_path={tmp_path / 'other.ckpt'}", good], None, "without this project"),
        "missing output folder": ([f"--ckpt_path={ckpt}", good, "--text_column=sentence",
                                   f"--output={tmp_path / 'no' / 'out.jsonl'}"], None, "no folder"),
    }


def test_bad_input_is_one_line_and_exit_code_2(tiny_run, tmp_path: Path, capsys, monkeypatch) -> None:
    for case, (args, stdin, says) in bad_inputs(tmp_path, best(tiny_run)).items():
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b"")))
        with pytest.raises(SystemExit) as exit_:
            main(["predict", *args])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert exit_.value.code == 2, (case, err[-5:])
        assert err[-1].startswith("error: ") and says in err[-1] and "fix: " in err[-1], (case, err[-1])
        assert captured.out == "", case
