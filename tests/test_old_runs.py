"""What a run of an older version wrote still works: the checkpoints, config.yaml and best.yaml
in tests/fixtures/before-29 were written by main before issue 29 (their README says how). The
tests resume, validate, test, predict and export them, and load the configs that name old
import paths."""

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch

from project.commands.cli import main
from project.errors import UserError
from project.model.checkpoint_format import DATAMODULE_KEY, FORMAT, FORMAT_KEY, read_checkpoint
from tests.helpers import assert_contract, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "before-29"
RUN = "lightning_logs/data-lstm-version_0"  # where the run was: a run folder is named so
BEST = "best-epoch=0-val_f1=0.3757.ckpt"


@pytest.fixture
def old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixtures in a folder of their own, the run back in its lightning_logs/ folder, as the
    current folder (the configs name the data relative to it)."""
    shutil.copytree(FIXTURES / "data", tmp_path / "data")
    shutil.copytree(FIXTURES / "run", tmp_path / RUN)
    shutil.copytree(FIXTURES / "tune", tmp_path / "tune")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cache(old: Path) -> str:
    return f"--data.cache_dir={old / 'cache'}"  # the configs name the cache folder of the machine that made them


def test_an_old_checkpoint_reads_in_todays_format() -> None:
    saved = read_checkpoint(str(FIXTURES / "run" / "checkpoints" / "last.ckpt"))
    assert saved[FORMAT_KEY] == FORMAT and saved[DATAMODULE_KEY]["label_names"] == ["neg", "neu", "pos"]
    # The callbacks' states are found under the keys Lightning gives them by class name.
    assert {"MetricsFile", "Throughput", "ModelCard", "HParams"} <= {key.split("{")[0] for key in saved["callbacks"]}


def test_the_keys_a_checkpoint_holds_are_todays_class_names() -> None:
    """Lightning keys a DataModule's and each callback's state by class name: renaming one would
    orphan the state of every older checkpoint (then upgrade() must map the old key)."""
    from project.data import TextDataModule
    from project.training.checkpoints import LastCheckpoint, RunCheckpoint
    from project.training.hparams import HParams
    from project.training.metrics_file import MetricsFile
    from project.training.model_card import ModelCard
    from project.training.stopping import EarlyStop
    from project.training.throughput import Throughput

    assert TextDataModule.__qualname__ == DATAMODULE_KEY
    saved = read_checkpoint(str(FIXTURES / "run" / "checkpoints" / "last.ckpt"))
    keys = {key.split("{")[0] for key in saved["callbacks"]}
    assert keys == {c.__qualname__ for c in (Throughput, HParams, MetricsFile, ModelCard, EarlyStop, LastCheckpoint)} \
        | {"ModelCheckpoint"}  # RunCheckpoint saves under Lightning's name, as before it existed
    assert RunCheckpoint(monitor="val/f1", mode="max").state_key.startswith("ModelCheckpoint{")


def test_a_checkpoint_of_a_newer_format_is_one_line(tmp_path: Path) -> None:
    saved = torch.load(FIXTURES / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    saved[FORMAT_KEY] = FORMAT + 1
    torch.save(saved, tmp_path / "new.ckpt")
    with pytest.raises(UserError, match="newer version of this project"):
        read_checkpoint(str(tmp_path / "new.ckpt"))


@pytest.mark.slow
def test_an_old_run_resumes_and_keeps_its_history(old: Path) -> None:
    run = old / RUN
    before = json.loads((run / "metrics.json").read_text())
    shutil.copy(run / "checkpoints" / BEST, run / "checkpoints" / "last.ckpt")  # stopped after epoch 0
    code, err = run_cli(["fit", f"--config={run / 'config.yaml'}", cache(old), f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    assert assert_contract(code, err, old), err[-2000:]
    after = json.loads((run / "metrics.json").read_text())
    assert len(after["history"]) == 2 and after["history"][0] == before["history"][0]
    assert after["test"] is not None and (run / "model_card.md").is_file()


@pytest.mark.slow
def test_an_old_checkpoint_validates_tests_predicts_and_exports(old: Path, capsys: pytest.CaptureFixture) -> None:
    run, best = old / RUN, old / RUN / "checkpoints" / BEST
    recorded = json.loads((run / "metrics.json").read_text())["best"]
    validated = main(["validate", f"--config={run / 'config.yaml'}", cache(old), f"--ckpt_path={best}",
                      f"--trainer.default_root_dir={old / 'validate'}"])
    # The same weights on the same data (tokenized anew): the figures the run recorded.
    assert validated.trainer.callback_metrics["val/acc"].item() == pytest.approx(recorded["val/acc"], abs=1e-6)
    code, err = run_cli(["test", f"--config={run / 'config.yaml'}", cache(old), f"--ckpt_path={best}",
                         f"--trainer.default_root_dir={old / 'test'}"])
    assert assert_contract(code, err, old), err[-2000:]
    tested = json.loads(next((old / "test").rglob("metrics.json")).read_text())["test"]
    assert tested["test/acc"] is not None
    capsys.readouterr()
    code, err = run_cli(["predict", f"--ckpt_path={best}", "--input=data/test.csv", "--text_column=sentence"])
    assert assert_contract(code, err, old), err[-2000:]
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 15 and {r["label"] for r in rows} <= {"neg", "neu", "pos"}
    code, err = run_cli(["export", f"--ckpt_path={best}", f"--output={old / 'onnx'}"])
    assert assert_contract(code, err, old), err[-2000:]
    onnx.checker.check_model(onnx.load(next((old / "onnx").glob("*.onnx"))))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["tune/best.yaml", "tune/trial_config.yaml"])
def test_old_configs_still_load_and_train(old: Path, config: str) -> None:
    """best.yaml as tune wrote it, and a trial's config.yaml, whose logger is named by its old
    import path (project.training.runs.RunLogger)."""
    code, err = run_cli(["fit", f"--config={config}", cache(old), "--trainer.max_steps=2", "--test_after_fit=false",
                         f"--trainer.default_root_dir={old / 'again'}"])
    assert assert_contract(code, err, old), err[-2000:]
