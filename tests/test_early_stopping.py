"""``--early_stopping.patience``: real tiny fits on a model that cannot improve (a learning rate
of 1e-9 leaves the weights, so validation macro-F1, as they were) stop where the logged
``val/f1`` history says, a resumed run stops where the uninterrupted one did, and a patience
below 1, or one with no validation to watch, is refused in one line."""

import math
from pathlib import Path

import pytest

from project import tags
from project.commands.cli import main
from tests.helpers import refused, run_dir, scalars, tiny_data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """24 train rows in batches of 8: 3 steps per epoch, at a rate that changes nothing."""
    folder = tmp_path_factory.mktemp("early_stopping_data")
    return [*tiny_data(folder, train=24, validation=8, test=8, batch_size=8), "--model.learning_rate=1e-9",
            "--model.lr_schedule=constant", "--test_after_fit=false"]


def val_f1(root: Path) -> list[float]:
    return scalars(run_dir(root))[tags.VAL_F1]


def predicted_last_epoch(history: list[float], patience: int | None) -> int:
    """Lightning's documented rule: stop after ``patience`` validations in a row without a
    strictly higher value than the best so far."""
    best, wait = -math.inf, 0
    for epoch, value in enumerate(history):
        best, wait = (value, 0) if value > best else (best, wait + 1)
        if patience is not None and wait >= patience:
            return epoch
    return len(history) - 1


@pytest.mark.slow
@pytest.mark.parametrize("patience", [1, None])
def test_patience_stops_where_the_val_f1_history_says(data: list[str], tmp_path: Path, patience: int | None) -> None:
    flag = "null" if patience is None else patience
    cli = main(["fit", *data, "--trainer.max_epochs=4", f"--early_stopping.patience={flag}",
                f"--trainer.default_root_dir={tmp_path}"])
    history = val_f1(tmp_path)
    assert len(history) == cli.trainer.current_epoch  # one validation per epoch run
    assert len(history) - 1 == predicted_last_epoch(history, patience)
    assert len(history) == (2 if patience == 1 else 4)  # patience 1 stops after the first flat epoch; null never


@pytest.mark.slow  # four tiny fits
def test_a_resumed_run_stops_at_the_same_epoch(data: list[str], tmp_path: Path) -> None:
    patience = ["--early_stopping.patience=3"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    main(["fit", *data, *patience, "--trainer.max_epochs=10", f"--trainer.default_root_dir={whole}"])
    main(["fit", *data, *patience, "--trainer.max_epochs=2", f"--trainer.default_root_dir={split}"])
    resumed = main(["fit", *data, *patience, "--trainer.max_epochs=10", f"--trainer.default_root_dir={split}",
                    "--ckpt_path=last"])
    # Without the callback's state restored, the resumed half would wait 3 epochs afresh (6 in all).
    assert len(val_f1(split)) == len(val_f1(whole)) == predicted_last_epoch(val_f1(whole), 3) + 1 == 4
    steps = resumed.trainer.global_step
    again = main(["fit", *data, *patience, "--trainer.max_epochs=10", f"--trainer.default_root_dir={split}",
                  "--ckpt_path=last"])
    assert again.trainer.global_step == steps  # a run that stopped early stays stopped


@pytest.mark.parametrize("flags, says", [
    (["--early_stopping.patience=0"], "--early_stopping.patience is 0; fix: 1 or more"),
    (["--early_stopping.patience=2", "--trainer.limit_val_batches=0"], "needs validation"),
])
def test_patience_below_one_or_without_validation_is_refused_in_one_line(
    data: list[str], tmp_path: Path, flags: list[str], says: str
) -> None:
    refused(["fit", *data, *flags, f"--trainer.default_root_dir={tmp_path}"], tmp_path, says)
    assert not list(tmp_path.glob("lightning_logs/*version_*"))  # no run folder left
