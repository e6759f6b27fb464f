"""metrics.json, written by every fit in its run folder (project/training/metrics_file.py): its figures
are the ones the checkpoint, the test, TensorBoard and the callbacks have; a run shorter than an
epoch has null validation fields; a resumed run goes on with the same history."""

import json
import re
import statistics
from pathlib import Path

import pytest
import torch

from project import tags
from project.commands.cli import main
from project.inference.predictor import Predictor
from project.training.throughput import Throughput
from tests.helpers import best_checkpoint, run_cli, run_dir, scalars, tiny_data

EPOCHS = 3  # 60 train rows, batches of 16: 4 steps an epoch


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [*tiny_data(tmp_path_factory.mktemp("metrics_data")), "--trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def whole(data: list[str], tmp_path_factory: pytest.TempPathFactory):
    """A 3-epoch fit, never stopped, and its metrics.json as the fit left it."""
    root = tmp_path_factory.mktemp("whole")
    cli = main(["fit", *data, f"--trainer.default_root_dir={root}", f"--trainer.max_epochs={EPOCHS}",
                "--throughput.warmup_steps=2"])
    return cli, json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())


@pytest.mark.slow
def test_the_best_entry_is_the_kept_checkpoint_and_the_test_is_what_trainer_test_returned(whole) -> None:
    cli, metrics = whole
    run = Path(cli.trainer.log_dir)
    kept = Path(best_checkpoint(cli))
    assert metrics["best_checkpoint"] == f"checkpoints/{kept.name}"
    assert f"{metrics['best'][tags.VAL_F1]:.4f}" == re.search(r"val_f1=([\d.]+)\.ckpt", kept.name).group(1)
    saved = torch.load(kept, weights_only=False)
    assert (metrics["best"]["epoch"], metrics["best"]["step"]) == (saved["epoch"], saved["global_step"])
    # The first best of the history, as the checkpoint callback chose it.
    f1s = [e[tags.VAL_F1] for e in metrics["history"]]
    assert metrics["best"] == metrics["history"][f1s.index(max(f1s))]

    returned = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(kept))[0]
    assert metrics["test"] == {tag: returned[tag] for tag in tags.TEST}
    assert not list(run.glob(".*.tmp"))  # written beside, then renamed


@pytest.mark.slow
def test_history_and_figures_match_tensorboard_and_the_callbacks(whole) -> None:
    cli, metrics = whole
    logged = scalars(Path(cli.trainer.log_dir))
    history = metrics["history"]
    assert [(e["epoch"], e["step"]) for e in history] == [(0, 4), (1, 8), (2, 12)]
    for tag in tags.VALIDATION:  # one per validation, the same values TensorBoard shows
        assert [e[tag] for e in history] == logged[tag], tag
    assert metrics["final"] == history[-1]
    elapsed = [e[tags.ELAPSED_S] for e in history]
    assert 0 < elapsed[0] < elapsed[1] < elapsed[2] < metrics["wall_s"]
    assert metrics[tags.VAL_TOKENS_PER_S] == statistics.median(logged[tags.VAL_TOKENS_PER_S])

    throughput = next(c for c in cli.trainer.callbacks if isinstance(c, Throughput))
    assert len(throughput.step_rates) == EPOCHS * 3  # the first step of an epoch is not timed
    assert metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN] == statistics.median(throughput.step_rates[2:])  # warmup_steps
    assert metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN] == pytest.approx(logged[tags.TRAIN_TOKENS_PER_S_MEDIAN][-1])
    assert metrics[tags.EPOCH_S] == pytest.approx(statistics.median(logged[tags.EPOCH_S]))
    assert metrics[tags.PEAK_MEMORY_MB] == pytest.approx(max(logged[tags.PEAK_MEMORY_MB]))
    assert metrics[tags.MEMORY_GROWTH_MB] == pytest.approx(max(logged[tags.MEMORY_GROWTH_MB]))
    assert metrics[tags.TRAINABLE_PARAMS] == sum(p.numel() for p in cli.model.parameters())


@pytest.mark.slow
def test_a_test_run_writes_its_own_folder(whole, data: list[str]) -> None:
    cli, metrics = whole
    root = Path(cli.trainer.default_root_dir)
    code, err = run_cli(["test", *data, f"--trainer.default_root_dir={root}", "--ckpt_path=best"])
    assert code == 0, err[-3000:]
    tested = json.loads((run_dir(root, 1) / "metrics.json").read_text())
    assert tested["test"] == metrics["test"] and tested["best"] is None and tested["history"] == []
    assert tested["tested_checkpoint"] == str(Path(best_checkpoint(cli)).resolve())
    assert json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())["best"] == metrics["best"]


@pytest.mark.slow
def test_a_resumed_run_goes_on_with_the_same_history(whole, data: list[str], tmp_path: Path) -> None:
    _, metrics = whole
    at = [f"--trainer.default_root_dir={tmp_path}", f"--trainer.max_epochs={EPOCHS}"]
    code, err = run_cli(["fit", *data, *at, "--trainer.callbacks+=tests.killer.KillAtStep",
                         "--trainer.callbacks.step=6", "--trainer.callbacks.send=SIGTERM"])
    assert code == 143, err[-3000:]
    file = run_dir(tmp_path) / "metrics.json"
    stopped = json.loads(file.read_text())
    assert [e["step"] for e in stopped["history"]] == [4] and stopped["test"] is None
    code, err = run_cli(["fit", *data, *at, "--ckpt_path=last"])
    assert code == 0, err[-3000:]
    resumed = json.loads(file.read_text())
    # Bit-identical training on CPU: the same validations, each once, as the run never stopped.
    ignore = (tags.ELAPSED_S, tags.VAL_TOKENS_PER_S)
    assert [{k: v for k, v in e.items() if k not in ignore} for e in resumed["history"]] == \
        [{k: v for k, v in e.items() if k not in ignore} for e in metrics["history"]]
    assert resumed["test"] == metrics["test"] and resumed["best_checkpoint"] == metrics["best_checkpoint"]
    # Time goes on from where the checkpoint was written.
    elapsed = [e[tags.ELAPSED_S] for e in resumed["history"]]
    assert elapsed[0] == stopped["history"][0][tags.ELAPSED_S] and elapsed[0] < elapsed[1] < elapsed[2]


@pytest.mark.slow
def test_a_run_shorter_than_an_epoch_has_null_validation_fields(data: list[str], tmp_path: Path) -> None:
    at = f"--trainer.default_root_dir={tmp_path}"
    code, err = run_cli(["fit", *data, at, "--trainer.max_steps=3"])
    assert code == 0, err[-3000:]
    run = run_dir(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"] is None and metrics["final"] is None and metrics["history"] == []
    assert metrics[tags.VAL_TOKENS_PER_S] is None and metrics["best_checkpoint"] is None
    # With no best, fit tests the last weights: a test of last.ckpt gives the same figures.
    tested = main(["test", *data, at, "--ckpt_path=last"]).trainer.callback_metrics
    assert metrics["test"] == pytest.approx({tag: float(tested[tag]) for tag in tags.TEST})
    model = Predictor.from_checkpoint(str(run / "checkpoints" / "last.ckpt"), device="cpu").model
    assert metrics[tags.TRAINABLE_PARAMS] == sum(p.numel() for p in model.parameters())
    logged = scalars(run)[tags.TRAIN_TOKENS_PER_S_MEDIAN]
    assert len(logged) == 1 and metrics[tags.TRAIN_TOKENS_PER_S_MEDIAN] == pytest.approx(logged[0])
