"""Lightning's DDP on CPU processes (gloo): a 2-process ``fit`` logs the validation metrics a
1-process ``validate`` of its checkpoint gives, and two "nodes" of one process each on
127.0.0.1 train together through ``torchrun`` (as docs/ddp.md's multi-node commands, with a
rendezvous that needs no port chosen beforehand) and log what ``validate`` gives too; both fit
one temperature on every rank's validation logits."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from project import TextClassifier, tags
from project.commands.cli import main
from project.training.calibration import choose_temperature
from project.training.metrics_file import FILENAME
from tests.helpers import ROOT, TINY, child_env, finish, run_dir, scalars, start, write_splits

# 64 train rows: 4 batches of 16, 2 per rank; 32 validation rows: one batch of 16 per rank.
FIT = ["--config=configs/ddp.yaml", "--data.text_column=sentence", "--data.batch_size=16", *TINY,
       "--trainer.max_epochs=2", "--trainer.accelerator=cpu", "--test_after_fit=false"]


def data_files(tmp: Path) -> str:
    return f"--data.data_files={write_splits(tmp, train=64, validation=32, test=0)}"


def assert_one_process_validate_gives_what_was_logged(run: Path, tmp: Path) -> None:
    """The validation figures a multi-process fit logged (counts summed over the ranks) are the
    ones a 1-process ``validate`` of its last.ckpt computes."""
    cli = main(["validate", f"--config={run / 'config.yaml'}", "--trainer.devices=1", "--trainer.num_nodes=1",
                "--trainer.strategy=auto", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                f"--trainer.default_root_dir={tmp / 'one'}"])
    one, logged = cli.trainer.callback_metrics, scalars(run)
    assert float(one["val/acc"]) == logged["val/acc"][-1]
    # Calibration over every rank's logits (torchmetrics' CatMetric gathers them): the ECEs and
    # temperature one process finds, and the temperature of all 32 texts' logits.
    final = json.loads((run / FILENAME).read_text())["final"]
    for tag in (tags.VAL_ECE, tags.VAL_ECE_CALIBRATED, tags.TEMPERATURE):
        assert float(one[tag]) == pytest.approx(final[tag], abs=1e-6), tag
    model = TextClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    with torch.no_grad():
        batches = list(cli.datamodule.val_dataloader())
        logits = torch.cat([model(batch["input_ids"], batch["lengths"]) for batch in batches])
    labels = torch.cat([batch["labels"] for batch in batches])
    assert len(labels) == 32
    assert choose_temperature(logits, labels)[0] == pytest.approx(final[tags.TEMPERATURE], rel=1e-3)
    assert float(one["val/f1"]) == logged["val/f1"][-1]
    assert float(one["val/loss"]) == pytest.approx(logged["val/loss"][-1], abs=1e-6)  # mean of 2 equal halves


@pytest.mark.slow
def test_two_process_fit_logs_what_one_process_validate_gives(tmp_path: Path) -> None:
    # Lightning's launcher, a child process, picks the rendezvous port itself. With gradual
    # unfreezing, which plain ddp refuses (tests/test_bad_input.py): DDP waited for the frozen
    # layers' gradients and crashed; with unused parameters found it trains.
    process = start(["fit", data_files(tmp_path), *FIT, f"--trainer.default_root_dir={tmp_path}",
                     "--model.gradual_unfreezing=true", "--trainer.strategy=ddp_find_unused_parameters_true"], tmp_path)
    _, err = finish(process)
    assert process.returncode == 0, err[-3000:]
    run = run_dir(tmp_path)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4  # 2 per epoch
    assert_one_process_validate_gives_what_was_logged(run, tmp_path)


@pytest.mark.slow
def test_two_nodes_on_localhost_through_torchrun(tmp_path: Path) -> None:
    # No port is chosen here: the nodes meet through a file (c10d rendezvous on a FileStore, the
    # form for nodes that share a file system) and the node that becomes rank 0 binds port 0 for
    # the process group, publishing the port it got through that file.
    torchrun = Path(sys.executable).parent / "torchrun"
    rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint={tmp_path / 'rendezvous'}", "--rdzv-conf=store_type=file",
                  "--rdzv-id=two-nodes", "--local-addr=127.0.0.1"]
    command = [str(torchrun), "--nnodes=2", "--nproc_per_node=1", *rendezvous, "-m", "project", "fit",
               data_files(tmp_path), *FIT, "--trainer.num_nodes=2", "--trainer.devices=1",
               f"--trainer.default_root_dir={tmp_path}"]
    nodes = [subprocess.Popen(command, cwd=ROOT, env=child_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) for _ in range(2)]
    try:
        outputs = [finish(node)[0] for node in nodes]
    finally:  # a first node that failed or hung leaves no second one waiting for it
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    runs = list((tmp_path / "lightning_logs").iterdir())
    assert len(runs) == 1  # one run folder: only global rank 0 logs and checkpoints
    saved = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4  # the batches were split over the two nodes
    assert_one_process_validate_gives_what_was_logged(runs[0], tmp_path)

