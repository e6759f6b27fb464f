"""The shipped configs parse, and configs/default.yaml is exactly what `fit` does with no arguments."""

from pathlib import Path

import pytest
import yaml

from project.cli import main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def printed_config(capsys: pytest.CaptureFixture, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *args, "--print_config"])
    assert exit_.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_default_yaml_is_the_no_argument_default(capsys: pytest.CaptureFixture) -> None:
    assert printed_config(capsys, f"--config={CONFIGS / 'default.yaml'}") == printed_config(capsys)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_cell_configs_pick_their_cell(capsys: pytest.CaptureFixture, cell_type: str) -> None:
    config = printed_config(capsys, f"--config={CONFIGS / f'{cell_type}.yaml'}")
    assert config["model"]["cell_type"] == cell_type
