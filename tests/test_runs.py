"""Run folders and checkpoints on the paths a user takes without reading the docs: no score
without a trained model, resumes that change settings, a moved run folder, two fits at once
into one root, a full disk, runs that fail before their first step, and config-file slips.
Each refusal keeps the contract (one ``error: ... fix:`` line, exit code 2, nothing left)."""

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from project.inference.predictor import Predictor
from project.training.runs import VERSION
from tests.helpers import finish, refused, run_cli, run_dir, start, tiny_data


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs_data")


@pytest.fixture(scope="module")
def data(folder: Path) -> list[str]:
    return tiny_data(folder, 24, 8, 8, batch_size=8)


def versions(root: Path) -> list[str]:
    """The ``version_N`` part of each run folder's name (``<data>-<cell>-version_N``)."""
    found = (root / "lightning_logs").glob("*") if (root / "lightning_logs").exists() else []
    return sorted(VERSION.search(p.name).group(0).lstrip("-") for p in found)


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_no_score_without_a_trained_model(subcommand: str, data: list[str], tmp_path: Path) -> None:
    at = f"--trainer.default_root_dir={tmp_path}"
    refused([subcommand, *data, at], tmp_path, "--ckpt_path best")  # a random model is not scored
    refused([subcommand, *data, at, "--ckpt_path=last"], tmp_path, "no lightning_logs/*version_*/checkpoints/last.ckpt")
    refused([subcommand, *data, at, "--ckpt_path=best"], tmp_path, "best-*.ckpt")
    assert versions(tmp_path) == []


@pytest.mark.slow
def test_best_and_last_name_the_newest_runs_checkpoints(data: list[str], folder: Path, tmp_path: Path) -> None:
    from project.commands.cli import main

    with (folder / "test.csv").open() as f:
        rows = list(csv.DictReader(f))

    at = f"--trainer.default_root_dir={tmp_path}"
    refused(["fit", *data, at, "--ckpt_path=best"], tmp_path, "--ckpt_path last")
    main(["fit", *data, at, "--trainer.max_epochs=2", "--test_after_fit=false"])
    folder = run_dir(tmp_path) / "checkpoints"
    for which, expected in (("best", next(folder.glob("best-*.ckpt"))), ("last", folder / "last.ckpt")):
        cli = main(["test", *data, at, f"--ckpt_path={which}"])
        assert Path(cli.trainer.ckpt_path) == expected
        # The test scored that checkpoint: its accuracy is the one the checkpoint's own labels give.
        labels = [p["label"] for p in Predictor.from_checkpoint(str(expected), device="cpu").predict(
            [row["sentence"] for row in rows])]
        accuracy = sum(label == row["label"] for label, row in zip(labels, rows)) / len(rows)
        assert float(cli.trainer.callback_metrics["test/acc"]) == pytest.approx(accuracy)


@pytest.mark.slow
def test_resume_refuses_changed_settings_and_keeps_the_config(data: list[str], tmp_path: Path) -> None:
    at = f"--trainer.default_root_dir={tmp_path}"
    assert run_cli(["fit", *data, at, "--trainer.max_epochs=2"])[0] == 0
    config = run_dir(tmp_path) / "config.yaml"
    before = config.read_text()
    refused(["fit", *data, at, "--trainer.max_epochs=3", "--ckpt_path=last"], tmp_path,
            "spans 6 steps", "would take 9")  # one-cycle over 2 epochs cannot run a third
    refused(["fit", *data, at, "--trainer.max_epochs=2", "--ckpt_path=last", "--model.hidden_size=16",
             "--model.cell_type=gru"], tmp_path, "--model.hidden_size 16 (the checkpoint has 8)",
            "--model.cell_type gru (the checkpoint has lstm)")
    assert config.read_text() == before and versions(tmp_path) == ["version_0"]


@pytest.mark.slow
def test_a_constant_schedule_run_extends(data: list[str], tmp_path: Path) -> None:
    at = f"--trainer.default_root_dir={tmp_path}"
    assert run_cli(["fit", *data, at, "--trainer.max_epochs=1", "--model.lr_schedule=constant"])[0] == 0
    code, err = run_cli(["fit", *data, at, "--trainer.max_epochs=2", "--model.lr_schedule=constant", "--ckpt_path=last"])
    assert code == 0, err[-3000:]
    saved = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 6 and versions(tmp_path) == ["version_0"]


@pytest.mark.slow
def test_a_moved_run_folder_resumes(data: list[str], tmp_path: Path) -> None:
    first, moved = tmp_path / "first", tmp_path / "moved"
    code, err = run_cli(["fit", *data, f"--trainer.default_root_dir={first}", "--trainer.max_epochs=3",
                         "--trainer.callbacks+=tests.killer.KillAtStep", "--trainer.callbacks.step=5",
                         "--trainer.callbacks.send=SIGTERM"])
    assert code == 143, err[-3000:]
    shutil.move(first, moved)  # the old paths no longer exist
    code, err = run_cli(["fit", *data, f"--trainer.default_root_dir={moved}", "--trainer.max_epochs=3",
                         "--ckpt_path=last"])
    assert code == 0 and "Traceback" not in err, err[-3000:]
    saved = torch.load(run_dir(moved) / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 9
    kept = next(v for k, v in saved["callbacks"].items()
                if k.startswith("ModelCheckpoint") and "'monitor': 'val/f1'" in k)["best_model_path"]
    assert kept.startswith(str(moved)) and Path(kept).is_file()


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(data: list[str], tmp_path: Path) -> None:
    vectors = tmp_path / "vec5.txt"
    vectors.write_text("good 0.1 0.2 0.3 0.4 0.5\n")
    at = f"--trainer.default_root_dir={tmp_path}"
    refused(["fit", *data, at, "--trainer.max_epochs=-1"], tmp_path, "--trainer.max_epochs -1")
    refused(["fit", *data, at, f"--model.pretrained_vectors={vectors}"], tmp_path, "embedding_dim")
    assert versions(tmp_path) == []


@pytest.mark.slow
def test_two_fits_started_together_get_their_own_folders(data: list[str], tmp_path: Path) -> None:
    command = ["fit", *data, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2", "--test_after_fit=false"]
    processes = [start(command, tmp_path) for _ in range(2)]
    for process in processes:
        _, err = finish(process)
        assert process.returncode == 0, err[-3000:]
    assert versions(tmp_path) == ["version_0", "version_1"]
    for run in (tmp_path / "lightning_logs").iterdir():
        writers = {event.name.split(".")[-2] for event in run.glob("events.out.tfevents.*")}
        assert len(writers) == 1  # one process's event file in each folder
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 400 KB file system (tmpfs), for a disk that fills up; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=False)  # mapped cache files may still be open


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(data: list[str], small_disk: Path, tmp_path: Path) -> None:
    # 64 hidden units: a checkpoint (weights and Adam's two moments) of ~600 KB cannot fit.
    refused(["fit", *data, f"--trainer.default_root_dir={small_disk}", "--model.hidden_size=64",
             "--trainer.max_epochs=1"], small_disk, "no space left")
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]
    shutil.rmtree(small_disk / "lightning_logs")
    (small_disk / "filler").write_bytes(b"x" * (os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
                                                - 8192))  # 8 KB left: too little for the tokenized data
    refused(["fit", *data, f"--trainer.default_root_dir={tmp_path}", f"--data.cache_dir={small_disk / 'cache'}"],
            small_disk, "no space left")
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]


def test_config_file_slips(data: list[str], tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("model:\n  hidden_size: 8\n  hidden_size: 16\n")
    refused(["fit", f"--config={twice}"], tmp_path, "twice.yaml", "line 3", "'hidden_size' appears twice")
    override = tmp_path / "over.yaml"
    override.write_text("model:\n  hidden_size: 16\n")
    refused(["fit", "--model.hidden_size=8", f"--config={override}"], tmp_path, "--model.hidden_size comes before --config")
    refused(["fit", "--data.batch_size 4"], tmp_path, "one argument", "--data.batch_size='4'")
