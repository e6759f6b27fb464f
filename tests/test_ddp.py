"""Lightning's DDP on CPU processes (gloo): a 2-process ``fit`` logs the validation metrics a
1-process ``validate`` of its checkpoint gives, and two "nodes" of one process each on
127.0.0.1 train together through ``torchrun``, as the README's multi-node commands say."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from project.cli import main
from tests.conftest import make_rows, write_rows

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--data.text_column=sentence", "--data.min_frequency=1", "--data.batch_size=16",
        "--model.embedding_dim=8", "--model.hidden_size=8", "--trainer.max_epochs=2",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--test_after_fit=false"]


def files(tmp: Path) -> str:
    # 64 train rows: 4 batches of 16, 2 per rank; 32 validation rows: one batch of 16 per rank.
    made = {split: write_rows(tmp / f"{split}.csv", make_rows(n, seed))
            for split, n, seed in (("train", 64, 1), ("validation", 32, 2))}
    return f"--data.data_files={made}"


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "HF_DATASETS_CACHE": str(tmp / "hf"), "PYTHONPATH": str(ROOT)}


def logged(run: Path, tag: str) -> float:
    events = EventAccumulator(str(run))
    events.Reload()
    return events.Scalars(tag)[-1].value


def test_two_process_fit_logs_what_one_process_validate_gives(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "project", "fit", "--config=configs/ddp.yaml", files(tmp_path), *TINY,
         f"--trainer.default_root_dir={tmp_path}"],
        cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4  # 2 per epoch
    cli = main(["validate", f"--config={run / 'config.yaml'}", "--trainer.devices=1", "--trainer.strategy=auto",
                f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"--trainer.default_root_dir={tmp_path / 'one'}"])
    one = cli.trainer.callback_metrics
    assert float(one["val/acc"]) == logged(run, "val/acc")  # counts summed over both ranks
    assert float(one["val/f1"]) == logged(run, "val/f1")
    assert float(one["val/loss"]) == pytest.approx(logged(run, "val/loss"), abs=1e-6)  # mean of 2 equal halves


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_through_torchrun(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    port = free_port()
    data = files(tmp_path)
    nodes = [
        subprocess.Popen(
            [str(torchrun), "--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}",
             "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "project", "fit",
             "--config=configs/ddp.yaml", "--trainer.num_nodes=2", "--trainer.devices=1", data, *TINY,
             f"--trainer.default_root_dir={tmp_path}"],
            cwd=ROOT, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    runs = list((tmp_path / "lightning_logs").iterdir())
    assert len(runs) == 1  # one run folder: only global rank 0 logs and checkpoints
    saved = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4  # the batches were split over the two nodes
    assert 0 <= logged(runs[0], "val/acc") <= 1
