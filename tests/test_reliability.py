"""Runs die and must lose nothing: a real ``fit`` killed with SIGKILL mid-epoch and resumed with
``--ckpt_path last`` ends bit-identical to an uninterrupted run; one seed gives one result; a
kill while the tokenized cache is written leaves nothing a later run trusts."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from project.data import TextDataModule
from tests.conftest import make_rows, write_rows

ROOT = Path(__file__).resolve().parent.parent


def fit(config: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "project", "fit", f"--config={config}",
                           f"--trainer.default_root_dir={root}", *extra],
                          cwd=ROOT, capture_output=True, text=True, check=False)


def final(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, float], int]:
    """Weights and step of the run's last.ckpt, and the test metrics it printed."""
    saved = torch.load(root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    return saved["state_dict"], saved["callbacks"], saved["global_step"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three fits of one config (3 epochs of 4 steps, last.ckpt every 2 steps, seed 7): two
    uninterrupted, one killed after step 6 (mid-epoch 2) and resumed with --ckpt_path last."""
    tmp = tmp_path_factory.mktemp("reliability")
    files = {split: write_rows(tmp / f"{split}.csv", make_rows(n, seed))
             for split, n, seed in (("train", 60, 1), ("validation", 15, 2), ("test", 15, 3))}
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"data_files": files, "text_column": "sentence", "min_frequency": 1, "batch_size": 16,
                 "cache_dir": str(tmp / "cache")},
        "model": {"embedding_dim": 8, "hidden_size": 8, "word_dropout": 0.2},
        "trainer": {"max_epochs": 3, "enable_progress_bar": False, "enable_model_summary": False},
        "last_checkpoint": {"every_n_train_steps": 2},
        "seed_everything": 7,
    }))
    roots = {name: tmp / name for name in ("first", "second", "killed")}
    outputs = {name: fit(config, roots[name]) for name in ("first", "second")}
    killed = fit(config, roots["killed"], "--trainer.callbacks+=tests.killer.KillAtStep",
                 "--trainer.callbacks.step=6")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    outputs["killed"] = fit(config, roots["killed"], "--ckpt_path=last")
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stderr[-3000:])
        (roots[name] / "stdout.txt").write_text(done.stdout)
    return roots


def test_one_seed_gives_identical_weights_and_metrics(runs: dict[str, Path]) -> None:
    first, second = final(runs["first"]), final(runs["second"])
    assert first[2] == second[2] == 12
    assert all(torch.equal(first[0][k], second[0][k]) for k in first[0])
    assert (runs["first"] / "stdout.txt").read_text().split("Test metric")[-1] == \
        (runs["second"] / "stdout.txt").read_text().split("Test metric")[-1]


def test_a_run_killed_mid_epoch_resumes_to_the_same_end(runs: dict[str, Path]) -> None:
    whole, resumed = final(runs["first"]), final(runs["killed"])
    assert resumed[2] == 12 and set(whole[0]) == set(resumed[0])
    assert all(torch.equal(whole[0][k], resumed[0][k]) for k in whole[0])  # bit-identical on CPU
    # The same best checkpoint was kept and tested, so the test metrics printed are the same.
    assert (runs["first"] / "stdout.txt").read_text().split("Test metric")[-1] == \
        (runs["killed"] / "stdout.txt").read_text().split("Test metric")[-1]
    # It went on in its own run folder: one version, one history of checkpoints.
    assert [p.name for p in (runs["killed"] / "lightning_logs").iterdir()] == ["version_0"]


def test_a_kill_while_the_cache_is_written_leaves_nothing_trusted(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", make_rows(60_000, seed=1))
    cache = tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, "-m", "project", "fit", f"--data.data_files={{train: {train}}}",
         "--data.text_column=sentence", f"--data.cache_dir={cache}", "--trainer.max_steps=1"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    caught = False
    while process.poll() is None:  # kill it the moment it starts writing the entry
        if cache.is_dir() and any(p.name.endswith(".tmp") for p in cache.iterdir()):
            os.kill(process.pid, signal.SIGKILL)
            caught = True
            break
        time.sleep(0.001)
    process.wait()
    if not caught:
        pytest.skip("the cache was written before the poll saw it; nothing was killed")
    assert not [p for p in cache.iterdir() if (p / "meta.json").is_file()]  # no entry claims to be whole
    module = TextDataModule(data_files={"train": train}, text_column="sentence", cache_dir=str(cache))
    assert len(module.dataset["train"]) + len(module.dataset["validation"]) == 60_000
    assert module.cache_hit is False  # rebuilt, not trusted
