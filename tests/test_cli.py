"""End to end through LightningCLI: a tiny fit per cell type leaves a complete run directory,
`validate` of its last.ckpt reproduces the last validation metrics it logged, and `test --config
<its config.yaml> --ckpt_path <best>` reproduces the test metrics."""

import inspect
import json
import re
from pathlib import Path

import pytest
import torch

from project.commands.cli import main
from project.data.datamodule import TextDataModule
from project.model.classifier import TextClassifier
from tests.helpers import TINY, best_checkpoint, run_dir, scalars


def tiny_fit_args(files: dict[str, str], root: Path, cell_type: str) -> list[str]:
    # 60 train rows in batches of 16: 4 steps per epoch.
    return ["fit", f"--data.data_files={files}", "--data.text_column=sentence", "--data.batch_size=16", *TINY,
            f"--model.cell_type={cell_type}", "--trainer.max_steps=8", "--trainer.log_every_n_steps=1",
            f"--trainer.default_root_dir={root}"]


@pytest.mark.slow
@pytest.mark.parametrize("cell_type", ["rnn", "lstm", "gru"])
def test_fit_leaves_a_complete_run_and_test_reproduces_it(
    tiny_csv: dict[str, str], tmp_path: Path, cell_type: str
) -> None:
    cli = main(tiny_fit_args(tiny_csv, tmp_path, cell_type))
    assert cli.trainer.global_step == 8
    run = run_dir(tmp_path)
    assert list(run.glob("events.out.tfevents.*"))
    assert (run / "config.yaml").is_file() and (run / "tokenizer.json").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    best = Path(best_checkpoint(cli))
    assert best.parent == run / "checkpoints" and best.name.startswith("best-epoch=")
    saved = torch.load(best, weights_only=False)  # label names travel with the checkpoint
    assert saved["hyper_parameters"]["label_names"] == ["neg", "neu", "pos"]
    assert saved["TextDataModule"]["label_names"] == ["neg", "neu", "pos"]
    assert json.loads(saved["TextDataModule"]["tokenizer"]) == json.loads((run / "tokenizer.json").read_text())

    logged = scalars(run)
    for tag in ("train/loss_step", "train/acc", "val/loss", "val/acc", "val/f1", "test/acc"):
        assert tag in logged, f"{tag} not in {sorted(logged)}"
    assert len(logged["val/f1"]) == 2  # one value per epoch

    # The last validation ran on the final weights, which last.ckpt holds.
    validated = main(["validate", f"--config={run / 'config.yaml'}", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    for tag in ("val/acc", "val/f1", "val/loss"):
        assert validated.trainer.callback_metrics[tag].item() == pytest.approx(logged[tag][-1], abs=1e-6), tag
    again = main(["test", f"--config={run / 'config.yaml'}", f"--ckpt_path={best}"])
    reproduced = again.trainer.callback_metrics
    assert reproduced["test/acc"].item() == pytest.approx(logged["test/acc"][-1], abs=1e-6)
    assert reproduced["test/f1"].item() == pytest.approx(logged["test/f1"][-1], abs=1e-6)


def documented_args(cls: type) -> dict[str, str]:
    """The ``Args:`` entries of a class's ``__init__`` docstring: name -> description."""
    doc = inspect.getdoc(cls.__init__)
    section = doc.split("Args:\n", 1)[1]
    entries = re.findall(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", section, re.S | re.M)
    return {name: " ".join(text.split()) for name, text in entries}


@pytest.mark.slow
def test_fit_help_lists_every_model_and_data_knob_with_its_description(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    taken_from_data = {"vocab_size", "label_names", "sep_id", "multi_label"}  # linked from the datamodule, not flags
    for group, cls in {"model": TextClassifier, "data": TextDataModule}.items():
        args = documented_args(cls)
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert params == set(args), f"{group}: undocumented {params - set(args)}"
        for name, description in args.items():
            flag_shown = f"--{group}.{name} " in flat
            assert flag_shown == (name not in taken_from_data), f"--{group}.{name}"
            if flag_shown:
                assert description in flat, f"--{group}.{name}: description missing in --help"


@pytest.mark.slow
def test_fit_without_a_test_split_says_so_and_skips_testing(
    tiny_csv: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"train": tiny_csv["train"], "validation": tiny_csv["validation"]}
    with caplog.at_level("INFO"):
        main(tiny_fit_args(files, tmp_path, "gru"))
    assert "no test split" in caplog.text
    assert "test/acc" not in scalars(run_dir(tmp_path))
