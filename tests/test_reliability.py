"""Runs die and must lose nothing. Real ``python -m project fit`` processes: a run sent
SIGTERM from outside at a moment the test does not choose (as a scheduler pre-empting it)
saves the step it was in, exits 143, and ``--ckpt_path last`` ends bit-identical to a run
never stopped (so one seed also gives one result across processes); a kill while the
tokenized cache is written leaves nothing a later run trusts. (test_generated_resume.py stops runs at generated points.)"""

import os
import random
import re
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


def fit(config: Path, root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "project", "fit", f"--config={config}",
                             f"--trainer.default_root_dir={root}", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def final(root: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Weights and step of the run's last.ckpt."""
    saved = torch.load(root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    return saved["state_dict"], saved["global_step"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, str]]:
    """Two fits of one config (20 epochs of 4 steps, validated every 5, seed 7): one
    uninterrupted, one sent SIGTERM at a random moment after its first last.ckpt, then resumed
    with --ckpt_path last.
    Each: (root, stdout, stderr); the stopped one's stderr is its stop message."""
    tmp = tmp_path_factory.mktemp("reliability")
    files = {split: write_rows(tmp / f"{split}.csv", make_rows(n, seed))
             for split, n, seed in (("train", 60, 1), ("validation", 15, 2), ("test", 15, 3))}
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"data_files": files, "text_column": "sentence", "min_frequency": 1, "batch_size": 16,
                 "cache_dir": str(tmp / "cache")},
        "model": {"embedding_dim": 8, "hidden_size": 8, "word_dropout": 0.2},
        "trainer": {"max_epochs": 20, "check_val_every_n_epoch": 5, "enable_progress_bar": False,
                    "enable_model_summary": False},
        "last_checkpoint": {"every_n_train_steps": 5},
        "seed_everything": 7,
    }))
    roots = {name: tmp / name for name in ("first", "stopped")}
    done = {"first": fit(config, roots["first"]).communicate(timeout=300)}
    process = fit(config, roots["stopped"])
    last = roots["stopped"] / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    while not last.exists() and process.poll() is None:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.5))  # somewhere in the remaining 75 steps and 4 validations
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    done["stop"] = (out, err)
    done["stopped"] = fit(config, roots["stopped"], "--ckpt_path=last").communicate(timeout=300)
    return {name: (roots.get(name, roots["stopped"]), *output) for name, output in done.items()}


def printed_test_metrics(stdout: str) -> str:
    return stdout.split("Test metric")[-1]


@pytest.mark.slow
def test_sigterm_saves_its_step_and_the_resumed_run_ends_the_same(runs) -> None:
    # Also: one seed gives one result, across processes (the resumed run started afresh).
    stop_message = runs["stop"][2].strip().splitlines()[-1]
    step = int(re.search(r"stopped by SIGTERM after step (\d+); saved .*last\.ckpt", stop_message).group(1))
    assert "Traceback" not in runs["stop"][2]
    # The last.ckpt the stop wrote is the step it named (a later one if the resume passed it).
    assert 5 <= step < 80
    whole, resumed = final(runs["first"][0]), final(runs["stopped"][0])
    assert resumed[1] == 80 and set(whole[0]) == set(resumed[0])
    assert all(torch.equal(whole[0][k], resumed[0][k]) for k in whole[0])  # bit-identical on CPU
    # The same best checkpoint was kept and tested, so the test metrics printed are the same.
    assert printed_test_metrics(runs["first"][1]) == printed_test_metrics(runs["stopped"][1])
    # It went on in its own run folder: one version, one history of checkpoints.
    assert [p.name for p in (runs["stopped"][0] / "lightning_logs").iterdir()] == ["version_0"]


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
