"""The shipped configs parse, and configs/default.yaml is exactly what `fit` does with no arguments."""

from pathlib import Path

import pytest
import yaml

from project.commands.cli import main

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


@pytest.mark.parametrize(
    "name, source",
    [("sst2_local", None), ("trec_local", None), ("sst2", "nyu-mll/glue"), ("imdb", "stanfordnlp/imdb"), ("ag_news", "fancyzhx/ag_news")],
)
def test_dataset_configs_parse(capsys: pytest.CaptureFixture, name: str, source: str | None) -> None:
    config = printed_config(capsys, f"--config={CONFIGS / f'{name}.yaml'}")
    assert config["data"]["path"] == source
    assert config["trainer"]["use_distributed_sampler"] is False


SST2 = CONFIGS.parent.parent / "shared" / "data" / "sst2"


@pytest.mark.slow
@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_sst2_local_reads_all_three_splits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from project.data.datamodule import TextDataModule

    monkeypatch.chdir(CONFIGS.parent)  # the config's paths are relative to the repository root
    settings = yaml.safe_load((CONFIGS / "sst2_local.yaml").read_text())["data"]
    dm = TextDataModule(**settings, cache_dir=str(tmp_path))
    assert {k: len(v) for k, v in dm.dataset.items()} == {"train": 67349, "validation": 872, "test": 1821}
    assert dm.label_names == ["0", "1"]


@pytest.mark.parametrize("sub", ["predict", "serve"])
def test_sub_yaml_holds_every_setting(capsys: pytest.CaptureFixture, sub: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([sub, f"--config={CONFIGS / f'{sub}.yaml'}", "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == yaml.safe_load((CONFIGS / f"{sub}.yaml").read_text())


def test_pretrain_yaml_is_pretrains_no_argument_default(capsys: pytest.CaptureFixture) -> None:
    def printed(*args: str) -> dict:
        with pytest.raises(SystemExit) as exit_:
            main(["pretrain", *args, "--print_config"])
        assert exit_.value.code in (0, None)
        return yaml.safe_load(capsys.readouterr().out)

    assert printed(f"--config={CONFIGS / 'pretrain.yaml'}") == printed()


def test_yaml_merge_keys_and_anchors_are_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Row 107 of the 2026-12-05 trial: ``<<: *anchor`` was called "not valid YAML"; it is, and it merges."""
    (tmp_path / "merge.yaml").write_text("model:\n  <<: &sizes {hidden_size: 8, embedding_dim: 8}\n  num_layers: 2\n"
                                         "data:\n  batch_size: 16\n")
    with pytest.raises(SystemExit):  # --print_config prints, then exits 0
        main(["fit", f"--config={tmp_path / 'merge.yaml'}", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["hidden_size"] == printed["model"]["embedding_dim"] == 8
    assert printed["model"]["num_layers"] == 2
