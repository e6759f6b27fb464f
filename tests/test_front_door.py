"""The front door: one parser lists and documents every subcommand, a misspelt one is one line,
and the Python API (``from project import Predictor``) gives what ``predict`` writes."""

import json
from pathlib import Path

import pytest

from project import Predictor, TextClassifier, TextDataModule
from project.commands.cli import SUBCOMMANDS, main
from tests.helpers import QUICK, assert_contract, best_checkpoint, run_cli, tiny_data


def help_text(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_subcommand_with_one_line(capsys) -> None:
    text = help_text([], capsys)
    names = ("fit", "pretrain", "lr_find", "validate", "test", "predict", "compare", "tune", "export", "serve", "env")
    for name in names:
        assert any(line.split()[:1] == [name] for line in text.splitlines()), name
    assert set(SUBCOMMANDS) == set(names)


@pytest.mark.parametrize(("sub", "flag"), [("fit", "--model.cell_type"), ("validate", "--ckpt_path"),
                                           ("test", "--data.batch_size"), ("predict", "--precision"),
                                           ("predict", "--devices"), ("compare", "--cell_types"),
                                           ("compare", "--model.hidden_size"), ("predict", "--model"),
                                           ("export", "--output"), ("serve", "--max_request_bytes"),
                                           ("tune", "--n_trials"), ("tune", "--model.hidden_size"),
                                           ("pretrain", "--data.unlabeled_files"), ("pretrain", "--model.weight_drop"),
                                           ("fit", "--model.init_from"), ("lr_find", "--num_training")])
def test_each_subcommand_documents_its_flags(sub: str, flag: str, capsys) -> None:
    assert flag in help_text([sub], capsys)


@pytest.mark.parametrize(("typed", "meant"), [("predictt", "predict"), ("fti", "fit"), ("compar", "compare"),
                                              ("serv", "serve"), ("exprot", "export")])
def test_a_misspelt_subcommand_is_one_line_naming_the_close_one(typed: str, meant: str, tmp_path: Path) -> None:
    code, err = run_cli([typed, "--ckpt_path=x"])
    assert not assert_contract(code, err, tmp_path)
    assert f"did you mean {meant}?" in err.splitlines()[-1]


def test_a_bad_compare_flag_is_refused_before_any_run(tmp_path: Path) -> None:
    """compare's parser holds fit's flags: a misspelt one stops it before its first fit."""
    code, err = run_cli(["compare", f"--output_dir={tmp_path / 'out'}", "--model.hiden_size=8"])
    assert not assert_contract(code, err, tmp_path)
    assert "--model.hidden_size" in err and not (tmp_path / "out" / "runs").exists()


def test_the_package_exports_the_api() -> None:
    import project

    assert project.__all__ == ["Predictor", "TextClassifier", "TextDataModule"]
    assert TextClassifier.__module__ == "project.model.classifier"
    assert TextDataModule.__module__ == "project.data.datamodule"


def test_predictor_gives_the_probabilities_of_the_cli(tiny_run, tmp_path: Path, capsys) -> None:
    texts = ["good film", "", "a bad and long film that never ends", "   ", "zzzz qqqq"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    ckpt = best_checkpoint(tiny_run)
    main(["predict", f"--ckpt_path={ckpt}", f"--input={source}", "--accelerator=cpu"])
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    rows = Predictor.from_checkpoint(ckpt, device="cpu").predict(texts)
    assert [r["text"] for r in rows] == texts
    assert [r["blank"] for r in rows] == [w["blank"] for w in written] == [False, True, False, True, False]
    for row, line in zip(rows, written):
        assert row["label"] == line["label"]
        if line["probabilities"] is None:
            assert row["probabilities"] is None
            continue
        assert row["probabilities"].keys() == line["probabilities"].keys()
        # The CLI writes 6 decimals: the same figures, rounded.
        assert all(abs(row["probabilities"][k] - v) <= 5e-7 for k, v in line["probabilities"].items()), (row, line)
    # Batches of other sizes pad other texts together: the figures stay the model's own.
    one_by_one = Predictor.from_checkpoint(ckpt, device="cpu", batch_size=1).predict(texts)
    for a, b in zip(rows, one_by_one):
        assert a["label"] == b["label"]
        assert a["probabilities"] is None or max(abs(a["probabilities"][k] - b["probabilities"][k])
                                                 for k in a["probabilities"]) < 1e-5


def test_predictor_refuses_a_lone_string_and_a_device_it_lacks(tiny_run) -> None:
    from project.errors import UserError

    ckpt = best_checkpoint(tiny_run)
    with pytest.raises(UserError, match="list of texts"):
        Predictor.from_checkpoint(ckpt, device="cpu").predict("good film")
    with pytest.raises(UserError, match="device 'nonsense'"):
        Predictor.from_checkpoint(ckpt, device="nonsense")
    with pytest.raises(UserError, match=r"device 'cuda:x': 'x' is not a device index; fix: e.g. 'cuda:0'"):  # row 15
        Predictor.from_checkpoint(ckpt, device="cuda:x")


def test_predictor_takes_any_iterable_of_strings_and_names_the_first_bad_item(tiny_run) -> None:
    """Rows 7-9 of the 2026-12-05 trial: a tokenizers TypeError that named no item; and a
    generator was read twice (the second time empty)."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from project.errors import UserError

    predictor = Predictor.from_checkpoint(best_checkpoint(tiny_run), device="cpu")
    texts = ["good film", "a dull one", ""]
    expected = predictor.predict(texts)
    for kind in (tuple, iter, np.array, lambda t: (x for x in t), lambda t: dict.fromkeys(t).keys()):
        assert [r["probabilities"] for r in predictor.predict(kind(texts))] == [r["probabilities"] for r in expected]

    bad = st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text(), max_size=2))
    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.text(max_size=20), max_size=5), bad, st.lists(st.text(max_size=20), max_size=5))
    def names_it(before: list[str], item: object, after: list[str]) -> None:
        with pytest.raises(UserError) as refused:
            predictor.predict([*before, item, *after])
        line = str(refused.value)
        kind = "None" if item is None else type(item).__name__
        assert line.startswith(f"texts[{len(before)}] is {kind}, not a string; fix:"), line
        assert ("decode it first" in line) == isinstance(item, bytes)

    names_it()
    with pytest.raises(UserError, match=r"list of texts \(got int\)"):
        predictor.predict(5)


def test_no_sanity_check_is_a_setting_not_a_refusal(tmp_path: Path) -> None:
    """--trainer.num_sanity_val_steps 0 (skip the sanity check) trains; -2 means nothing."""
    args = ["fit", *tiny_data(tmp_path), *QUICK, f"--trainer.default_root_dir={tmp_path}"]
    code, err = run_cli([*args, "--trainer.num_sanity_val_steps=0"])
    assert assert_contract(code, err, tmp_path), err[-2000:]
    code, err = run_cli([*args, "--trainer.num_sanity_val_steps=-2"])
    assert not assert_contract(code, err, tmp_path) and "0 or more" in err.splitlines()[-1]


def test_predict_runs_on_one_device(tiny_run, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("good film\n")
    ckpt = best_checkpoint(tiny_run)
    code, err = run_cli(["predict", f"--ckpt_path={ckpt}", f"--input={source}", "--devices=2"])
    assert not assert_contract(code, err, tmp_path) and "one device only" in err.splitlines()[-1]


@pytest.mark.slow
def test_ctrl_c_in_predict_leaves_no_output_file(tiny_run, tmp_path: Path) -> None:
    """SIGINT while predict waits for stdin: exit 130, one line saying what was kept, and no
    --output file (nor its partial file). The signal is sent once the partial file exists, so
    predict is inside its writing, not still importing."""
    import signal
    import subprocess
    import time

    from tests.helpers import best_checkpoint, finish, start

    output = tmp_path / "labels.jsonl"
    # A shell that runs a job in the background (``.ci/run &``) ignores SIGINT for it, and the
    # child would inherit that: restore the default, as a terminal gives it.
    child = start(["predict", f"--ckpt_path={best_checkpoint(tiny_run)}", f"--output={output}"], tmp_path,
                  stdin=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    child.stdin.write("good film\n")
    child.stdin.flush()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".labels.jsonl.*.tmp")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, finish(child)
    child.send_signal(signal.SIGINT)
    _, err = finish(child, timeout=60)
    assert child.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ("stopped by SIGINT; an --output file is not written "
                                            "(it is put in place only when complete)"), err[-2000:]
    assert "Traceback" not in err and not list(tmp_path.glob("*labels.jsonl*"))


def test_old_import_paths_name_the_modules_that_hold_them_now() -> None:
    """Configs saved before the packages (issue 29) name classes by their old paths."""
    import importlib

    from project import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    module = importlib.import_module("project.training.runs")
    assert module.__spec__.name == "project.training.runs"  # its own spec, not the alias's
    from project.runs import RunLogger  # as a trial's config.yaml names it

    assert RunLogger.__module__ == "project.training.runs"
