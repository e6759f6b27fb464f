"""``python -m project fit > run.log``: with stdout not a terminal the Trainer gets
project.training.progress.LineProgressBar, whose plain lines must carry the figures the run logged."""

import csv
import os
import pty
import re
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from project.commands.cli import main
from project.training.fit import ProjectCLI
from project.training.progress import LineProgressBar, ModelTable, TerminalProgressBar
from tests.helpers import ForkServer, run_dir

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): (.*)$", re.M)


def tiny_args(files: dict[str, str], root: Path) -> list[str]:
    """A tiny fit with the progress bar left on (not helpers.TINY, which turns it off)."""
    return [f"--data.data_files={files}", "--data.text_column=sentence", "--data.min_frequency=1",
            "--data.batch_size=15",  # 60 train rows: 4 batches of 15
            "--model.embedding_dim=8", "--model.hidden_size=8", f"--trainer.default_root_dir={root}"]


def figure(line: str, name: str) -> str:
    """``0.4667`` from ``..., val acc 0.4667, ...``."""
    found = re.search(rf"(?:^|[:,] ){name} ([\d.]+)(?:,|$)", line)
    assert found, f"no {name} in {line!r}"
    return found.group(1)


def logged(metrics_csv: Path, name: str) -> list[float]:
    """Every value CSVLogger wrote for one metric, in order."""
    with metrics_csv.open() as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


@pytest.mark.slow  # a real `python -m project` process: ~15 s on 2 loaded cores
def test_fit_to_a_file_prints_one_line_per_epoch_with_the_logged_figures(
    tiny_csv: dict[str, str], tmp_path: Path, fork_server: ForkServer, capsys: pytest.CaptureFixture
) -> None:
    # A fit whose stdout and stderr go to a file (the fork server's log), as under nohup.
    code, text = fork_server.run("fit", *tiny_args(tiny_csv, tmp_path), "--trainer.max_epochs=3",
                                 "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                                 f"--trainer.logger.save_dir={tmp_path}")
    assert code == 0, text[-3000:]
    assert "\r" not in text  # no bar redrawn in place (datasets' neither)
    # The model's table, without FLOPs of 0 and without Lightning's lines about it or its adverts.
    assert "RecurrentEncoder" in text and "FLOPs" not in text, text[:3000]
    assert "Trainer already configured" not in text and "litlogger" not in text

    epochs = EPOCH_LINE.findall(text)
    assert [(n, m) for n, m, _ in epochs] == [("1", "3"), ("2", "3"), ("3", "3")]
    metrics = run_dir(tmp_path) / "metrics.csv"
    for tag, name in (("val/acc", "val acc"), ("val/f1", "val f1"), ("val/loss", "val loss"),
                      ("train/loss_epoch", "train loss")):
        assert [figure(line, name) for _, _, line in epochs] == [f"{v:.4f}" for v in logged(metrics, tag)], tag
    speeds = [f"{v:,.0f}" for v in logged(metrics, "perf/train_tokens_per_s")]
    assert [re.search(r", ([\d,]+) train tokens/s,", line).group(1) for _, _, line in epochs] == speeds
    assert [re.search(r"step (\d+)/12", line).group(1) for _, _, line in epochs] == ["4", "8", "12"]
    assert epochs[-1][2].endswith("eta 0:00:00")
    assert not re.search(r"^epoch \d+/\d+, batch", text, re.M)  # epochs of seconds: no line inside them

    # The test after fit: the best checkpoint (by val f1, the first epoch of the best), its figures.
    best = next((run_dir(tmp_path) / "checkpoints").glob("best-*.ckpt"))
    val_f1 = [figure(line, "val f1") for _, _, line in epochs]
    assert best.name == f"best-epoch={val_f1.index(max(val_f1))}-val_f1={max(val_f1)}.ckpt"
    tests = re.findall(r"^test \((.*)\): (.*)$", text, re.M)
    assert [name for name, _ in tests] == [best.name]
    assert figure(tests[0][1], "acc") == f"{logged(metrics, 'test/acc')[-1]:.4f}"
    assert figure(tests[0][1], "f1") == f"{logged(metrics, 'test/f1')[-1]:.4f}"

    # validate and test of that checkpoint: one line each, the figures fit printed for it.
    capsys.readouterr()
    for subcommand in ("validate", "test"):
        main([subcommand, *tiny_args(tiny_csv, tmp_path), "--ckpt_path=best", "--trainer.enable_model_summary=false"])
    lines = re.findall(r"^(validate|test) \((.*)\): (.*)$", capsys.readouterr().out, re.M)
    assert [(kind, name) for kind, name, _ in lines] == [("validate", best.name), ("test", best.name)]
    best_epoch = epochs[val_f1.index(max(val_f1))][2]
    assert [figure(lines[0][2], name) for name in ("loss", "acc", "f1")] == [
        figure(best_epoch, f"val {name}") for name in ("loss", "acc", "f1")]
    assert lines[1][2] == tests[0][1]


@pytest.mark.slow
def test_lines_inside_an_epoch_show_the_running_train_loss(
    tiny_csv: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Thresholds of 0: a line after every batch. A bar given in --trainer.callbacks is the one used."""
    main(["fit", *tiny_args(tiny_csv, tmp_path), "--trainer.max_epochs=1", "--trainer.logger=false",
          "--test_after_fit=false", "--trainer.enable_model_summary=false",
          "--trainer.callbacks+=project.training.progress.LineProgressBar", "--trainer.callbacks.interval_s=0",
          "--trainer.callbacks.long_epoch_s=0"])
    out = capsys.readouterr().out
    batches = re.findall(r"^epoch 1/1, batch (\d+)/4: train loss ([\d.]+) \(mean so far\), elapsed \d+:\d\d:\d\d$",
                         out, re.M)
    assert [b for b, _ in batches] == ["1", "2", "3", "4"], out
    epoch = EPOCH_LINE.findall(out)
    assert len(epoch) == 1
    # This bar comes before the callback that logs throughput at epoch end: the line waits for it.
    assert re.search(r", [\d,]+ train tokens/s, ", epoch[0][2]), epoch
    # After the last batch the mean so far is the epoch's (4 batches of 15: Lightning's weighted mean too).
    assert float(batches[-1][1]) == pytest.approx(float(figure(epoch[0][2], "train loss")), abs=1.5e-4)
    assert batches[0][1] != batches[-1][1]


def test_the_bar_a_trainer_gets(tiny_csv: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bar(*extra: str) -> type:
        cli = ProjectCLI("fit", [*tiny_args(tiny_csv, tmp_path), *extra])
        return type(cli.trainer.progress_bar_callback)

    monkeypatch.setattr(sys, "stdout", (tmp_path / "out.log").open("w"))
    assert bar() is LineProgressBar
    assert bar("--trainer.enable_progress_bar=false") is type(None)
    assert bar("--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar") is TQDMProgressBar
    master, terminal = pty.openpty()
    with os.fdopen(terminal, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert bar() is TerminalProgressBar  # Lightning's Rich bar, counting epochs from 1
        assert issubclass(TerminalProgressBar, RichProgressBar)
    os.close(master)


def test_the_model_table_has_no_flops_of_0(tiny_csv: dict[str, str], tmp_path: Path, capsys) -> None:
    """The 2026-12-05 trial: "Total FLOPs: 0" (torch counts no recurrent kernel). The run's
    table is Lightning's without that column and line; a summary the user asked for is theirs."""
    from lightning.pytorch.callbacks import ModelSummary
    from lightning.pytorch.utilities.model_summary import summarize

    from project.model.classifier import TextClassifier

    cli = ProjectCLI("fit", tiny_args(tiny_csv, tmp_path))
    (table,) = [c for c in cli.trainer.callbacks if isinstance(c, ModelSummary)]
    assert type(table) is ModelTable
    assert [c for c in ProjectCLI("fit", [*tiny_args(tiny_csv, tmp_path), "--trainer.enable_model_summary=false"])
            .trainer.callbacks if isinstance(c, ModelSummary)] == []
    given = ProjectCLI("fit", [*tiny_args(tiny_csv, tmp_path), "--trainer.callbacks+=lightning.pytorch.callbacks.ModelSummary"])
    assert [type(c) for c in given.trainer.callbacks if isinstance(c, ModelSummary)] == [ModelSummary]
    capsys.readouterr()
    model = TextClassifier(vocab_size=50, label_names=["a", "b"], embedding_dim=8, hidden_size=8)
    summary = summarize(model)
    ModelTable.summarize(summary._get_summary_data(), summary.total_parameters, summary.trainable_parameters,
                         summary.model_size, summary.total_training_modes, summary.total_flops)
    shown = capsys.readouterr().out
    assert "encoder" in shown and "RecurrentEncoder" in shown and "Total params" in shown
    assert "FLOPs" not in shown


@pytest.mark.slow  # real fits
def test_the_terminal_bar_counts_epochs_from_1_shows_loss_and_f1_and_one_4_digit_test_table(
        tiny_csv: dict[str, str], tmp_path: Path) -> None:
    """The 2026-12-05 trial's terminal: "Epoch 0/1" where every line says epoch 1/2, ``v_num: on_0``
    and no figure on the bar, and the test table printed twice with 16 digits."""
    import io

    import lightning as L

    from project.data.datamodule import TextDataModule
    from project.model.classifier import TextClassifier

    screen = io.StringIO()
    data = TextDataModule(data_files=tiny_csv, text_column="sentence", min_frequency=1, batch_size=16,
                          cache_dir=str(tmp_path / "cache"))
    model = TextClassifier(vocab_size=data.vocab_size, label_names=data.label_names, embedding_dim=8, hidden_size=8)
    bar = TerminalProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 200})
    trainer = L.Trainer(max_epochs=2, callbacks=[bar], default_root_dir=tmp_path, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "Epoch 1/2" in shown and "Epoch 2/2" in shown and "Epoch 0" not in shown and "Epoch 1/1" not in shown
    assert "v_num" not in shown and re.search(r"loss: \d\.\d+", shown) and re.search(r"val f1: \d\.\d+", shown)
    assert shown.count("test/acc") == 1 and re.search(r"test/acc +\d\.\d{4}\n", shown), shown[-1500:]
