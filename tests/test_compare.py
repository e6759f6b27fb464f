"""``python -m project compare`` on a tiny config: every column filled, parameter counts as the
formula says, verdicts that follow the numbers, and a re-run that skips finished runs."""

import contextlib
import csv
import json
from pathlib import Path

import pytest
import torch

from project import tags
from project.commands.cli import main
from project.commands.compare_report import COLUMNS, FORMATS, grouped, growth_verdict, table, verdict, verdicts
from project.training.metrics_file import FILENAME
from tests.helpers import assert_contract, run_cli, tiny_data

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
E = H = 8  # helpers.TINY's embedding and hidden sizes


def expected_params(cell: str, vocab: int, classes: int) -> int:
    """Embedding + one bidirectional layer (weights and both biases per gate) + classifier."""
    direction = GATES[cell] * (H * (E + H) + 2 * H)
    return vocab * E + 2 * direction + (2 * H * classes + classes)


@pytest.fixture(autouse=True, scope="module")
def own_hf_cache(tmp_path_factory: pytest.TempPathFactory):
    """compare runs each fit as a child process: give them a datasets cache of their own, never
    the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf")))
        yield


def expected_row(run: Path) -> dict[str, float]:
    """What a run's row should hold, read from its own metrics.json and kept checkpoint."""
    metrics = json.loads((run / FILENAME).read_text())
    best, test = metrics["best"], metrics["test"]
    return {
        "params": metrics[tags.TRAINABLE_PARAMS],
        "checkpoint_mb": (run / metrics["best_checkpoint"]).stat().st_size / 2**20,
        "memory_mb": metrics[tags.MEMORY_GROWTH_MB],
        "train_tokens_per_s": metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN],
        "infer_tokens_per_s": metrics[tags.VAL_TOKENS_PER_S],
        "epoch_s": metrics[tags.EPOCH_S],
        "time_to_best_s": best[tags.ELAPSED_S],
        "best_val_acc": best[tags.VAL_ACC], "best_val_f1": best[tags.VAL_F1],
        "test_acc": test[tags.TEST_ACC], "test_f1": test[tags.TEST_F1],
    }


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("compare")
    args = ["compare", "--seeds=1", f"--output_dir={root / 'out'}", *tiny_data(root, 48, 12, 12),
            "--trainer.max_epochs=2", "--trainer.enable_progress_bar=true"]  # the epoch lines compare relays
    with (root / "printed.txt").open("w") as printed, contextlib.redirect_stdout(printed):
        main(args)
    return root / "out", args


@pytest.mark.slow
def test_each_run_is_announced_and_its_epochs_shown_as_they_end(compared) -> None:
    """compare was silent for whole runs (2026-12-05 trial): now each run says where its output
    goes, and its epoch lines come through under its name."""
    out, _ = compared
    printed = (out.parent / "printed.txt").read_text().splitlines()
    for cell in ("rnn", "lstm", "gru"):
        start = printed.index(f"{cell}-seed1: training (its output: {out / 'runs' / f'{cell}-seed1' / 'fit.log'})")
        epochs = [line for line in printed[start:] if line.startswith(f"  {cell}-seed1: epoch ")][:2]
        assert [line.split(":")[1].strip().split(",")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], printed
        assert printed.index(epochs[-1]) < next(i for i, line in enumerate(printed) if line.startswith(
            f"{cell}-seed1: test acc"))


@pytest.mark.slow
def test_every_column_is_filled_and_numeric(compared) -> None:
    out, _ = compared
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["cell_type"] for r in rows] == ["rnn", "lstm", "gru"]
    for row in rows:  # each column present, a number, the run's own figure
        expected = expected_row(out / "runs" / f"{row['cell_type']}-seed1")
        assert {key: float(row[key]) for key, _, _ in COLUMNS} == pytest.approx(expected), row["cell_type"]
    report = json.loads((out / "compare.json").read_text())
    assert len(report["verdicts"]) == 6 and report["machine"]
    assert "| rnn |" in (out / "compare.md").read_text()
    for plot in ("val_acc_vs_time.png", "val_acc_vs_epoch.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    # The TensorBoard runs sit side by side, so one dashboard overlays their curves.
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["gru-seed1", "lstm-seed1", "rnn-seed1"]


@pytest.mark.slow
def test_records_are_read_from_each_runs_metrics_json(compared) -> None:
    out, _ = compared
    for run in sorted((out / "runs").iterdir()):
        record = json.loads((run / "record.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert record["best_val_f1"] == metrics["best"]["val/f1"] and record["test_acc"] == metrics["test"]["test/acc"]
        assert record["time_to_best_s"] == metrics["best"]["perf/elapsed_s"]
        assert [acc for _, _, acc in record["curve"]] == [e["val/acc"] for e in metrics["history"]]
        assert record["checkpoint_mb"] == (run / metrics["best_checkpoint"]).stat().st_size / 2**20


@pytest.mark.slow
def test_parameter_counts_follow_the_formula(compared) -> None:
    out, _ = compared
    vocab = len(json.loads((out / "runs" / "lstm-seed1" / "tokenizer.json").read_text())["model"]["vocab"])
    for row in csv.DictReader((out / "compare.csv").open()):
        assert int(float(row["params"])) == expected_params(row["cell_type"], vocab, classes=3)


@pytest.mark.slow
def test_a_rerun_skips_finished_runs(compared, capsys) -> None:
    out, args = compared
    capsys.readouterr()
    finished = (out / "runs" / "rnn-seed1" / "record.json").stat().st_mtime_ns
    (out / "runs" / "gru-seed1" / "record.json").unlink()  # as if killed before its record
    main(args)
    printed = capsys.readouterr().out
    assert "rnn-seed1: finished before, skipped" in printed
    assert "lstm-seed1: finished before, skipped" in printed
    assert "gru-seed1: test acc" in printed  # run again
    assert (out / "runs" / "rnn-seed1" / "record.json").stat().st_mtime_ns == finished
    assert len(list(csv.DictReader((out / "compare.csv").open()))) == 3


def test_verdicts_follow_the_numbers() -> None:
    claim = "GRU trains faster than LSTM"
    assert verdict(claim, "train_tokens_per_s", "gru", True,
                   {"gru": [120.0, 125.0, 130.0], "lstm": [100.0, 101.0, 99.0]}).startswith(f"{claim}? yes")
    assert verdict(claim, "train_tokens_per_s", "gru", True,
                   {"gru": [90.0, 91.0, 92.0], "lstm": [100.0, 101.0, 99.0]}).startswith(f"{claim}? no, the opposite")
    overlapping = verdict(claim, "train_tokens_per_s", "gru", True,
                          {"gru": [95.0, 105.0, 100.0], "lstm": [100.0, 110.0, 104.0]})
    assert overlapping.startswith(f"{claim}? no clear difference")
    fewer = verdict("GRU has fewer parameters than LSTM", "params", "gru", False,
                    {"gru": [75.0], "lstm": [100.0]})
    assert fewer.endswith("(0.75x)") and "? yes" in fewer  # a count is exact: one seed says it
    # A measured figure from fewer than 3 seeds: no verdict, the values (2026-12-05 trial: one seed
    # stated "GRU predicts faster 29.01x" on a shared machine).
    one = verdict("GRU predicts faster than LSTM", "infer_tokens_per_s", "gru", True, {"gru": [2901.0], "lstm": [100.0]})
    assert one == ("GRU predicts faster than LSTM? no verdict possible from 1 seed(s) (at least 3 needed, --seeds 3): "
                   "GRU 2,901 vs LSTM 100")
    shown = table(grouped([{"cell_type": c, "seed": 1, "train_fraction": 1.0, "curve": [], **dict.fromkeys(FORMATS, 1.0)}
                           for c in ("lstm", "gru")]))
    assert "±" not in shown and "| lstm | 1 | 1.00 |" in shown


def test_growth_verdict_needs_fractions_and_follows_the_gap() -> None:
    def runs(lstm: list[float], gru: list[float]) -> dict:
        return {cell: [{"test_acc": a, "best_val_acc": a} for a in accs]
                for cell, accs in (("lstm", lstm), ("gru", gru))}

    assert "not measured" in growth_verdict({1.0: runs([0.9], [0.9])})
    grows = {0.1: runs([0.70, 0.71], [0.70, 0.71]), 1.0: runs([0.90, 0.91], [0.85, 0.86])}
    assert "? yes" in growth_verdict(grows)
    shrinks = {0.1: runs([0.75, 0.76], [0.70, 0.71]), 1.0: runs([0.90, 0.91], [0.90, 0.91])}
    assert "? no, the opposite" in growth_verdict(shrinks)
    mixed = {0.1: runs([0.70, 0.70], [0.70, 0.70]), 1.0: runs([0.91, 0.89], [0.90, 0.90])}
    assert "no clear difference" in growth_verdict(mixed)


# --- rows of the new-user trial (/work/shared/reports/new-user-trial-2026-11-26.md) ---


@pytest.mark.parametrize("args, says", [
    (["--seeds=0"], "--seeds: '0' is not a whole number of 1 or more; fix:"),  # row 89
    (["--seeds=-2"], "--seeds"),
    (["--seeds=many"], "--seeds"),
    (["--seeds"], "expected one argument"),
    (["--cell_types=lsmt"], "--cell_types"),
    (["--train_fractions=0,2"], "--train_fractions"),
    (["--model.cell_type=gru"], "--cell_types"),
])
@pytest.mark.slow
def test_row_89_argument_errors_are_one_line_without_usage(tmp_path: Path, args: list[str], says: str) -> None:
    code, err = run_cli(["compare", *args, f"--output_dir={tmp_path / 'out'}"])
    assert not assert_contract(code, err, tmp_path) and says in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists(), err  # no usage dump, no run


def test_row_90_output_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine\n")
    for output_dir in ["afile", "afile/sub"]:
        code, err = run_cli(["compare", "--seeds=1", f"--output_dir={tmp_path / output_dir}"])
        assert not assert_contract(code, err, tmp_path) and "--output_dir" in err, err
    assert (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.slow
def test_row_93_runs_shorter_than_an_epoch_report_what_was_measured(tmp_path: Path, capsys) -> None:
    """3 steps of 8 batches per epoch: no validation ran, so no best epoch: n/a, not a crash."""
    code, err = run_cli(["compare", "--cell_types=lstm", "--seeds=1", f"--output_dir={tmp_path / 'out'}",
                         *tiny_data(tmp_path, 64, 12, 12, batch_size=8), "--trainer.max_steps=3"])
    assert assert_contract(code, err, tmp_path)
    run = tmp_path / "out" / "runs" / "lstm-seed1"
    record = json.loads((run / "record.json").read_text())
    vocab = len(json.loads((run / "tokenizer.json").read_text())["model"]["vocab"])
    assert record["best_val_acc"] is None and record["curve"] == []
    assert record["params"] == expected_params("lstm", vocab, classes=3)
    tested = json.loads((run / FILENAME).read_text())["test"][tags.TEST_ACC]  # fit tests the last weights
    assert tested is not None and record["test_acc"] == tested
    report = (tmp_path / "out" / "compare.md").read_text()
    assert "| n/a |" in report and "n/a: not measured" in report
    assert "best val acc n/a" in capsys.readouterr().out


def test_verdicts_leave_out_missing_figures() -> None:
    claim = "GRU predicts faster than LSTM"
    assert verdict(claim, "infer_tokens_per_s", "gru", True,
                   {"gru": [None], "lstm": [100.0]}) == f"{claim}? not measured: no infer_tokens_per_s figure for GRU"
    assert verdict(claim, "infer_tokens_per_s", "gru", True,
                   {"gru": [120.0, None, 121.0, 122.0], "lstm": [100.0, 101.0, 102.0]}).startswith(f"{claim}? yes: GRU 121")
    runs = {"lstm": [{"test_acc": None, "best_val_acc": None}], "gru": [{"test_acc": None, "best_val_acc": None}]}
    assert "not measured" in growth_verdict({0.1: runs, 1.0: runs})
    records = [{"cell_type": c, "seed": 1, "train_fraction": 1.0, "curve": [], **dict.fromkeys(FORMATS)}
               for c in ("lstm", "gru")]
    assert all("not measured" in line for line in verdicts(grouped(records)))


@pytest.mark.slow
def test_missing_accelerator_is_one_line(tmp_path: Path) -> None:
    """Without a GPU, ``--trainer.accelerator=cuda`` is refused in one line; with one, the runs use it."""
    code, err = run_cli(["compare", "--cell_types=lstm", "--seeds=1", f"--output_dir={tmp_path / 'out'}",
                         *tiny_data(tmp_path), "--trainer.max_epochs=1", "--trainer.accelerator=cuda"])
    run = tmp_path / "out" / "runs" / "lstm-seed1"
    if torch.cuda.is_available():  # a machine that has it trains with it
        assert assert_contract(code, err, tmp_path)
        assert "GPU available: True (cuda), used: True" in (run / "fit.log").read_text()
        assert json.loads((run / "record.json").read_text())["test_acc"] == expected_row(run)["test_acc"]
    else:
        assert not assert_contract(code, err, tmp_path) and "lstm-seed1: `CUDAAccelerator` can not run" in err, err
        assert not run.exists()  # fit's refusal says it all
