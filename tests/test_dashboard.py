"""TensorBoard as a user sees it: a real ``tensorboard`` server on 127.0.0.1 over a finished
tiny run, read through the same HTTP endpoints its tabs use."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar

from project.dashboard import HP_METRICS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@pytest.fixture
def server(tiny_run, tmp_path: Path):
    """``tensorboard --logdir <tmp> --host 127.0.0.1 --port <free>`` on a copy of the run."""
    logdir = tmp_path / "logs"
    shutil.copytree(Path(tiny_run.trainer.log_dir), logdir / "run")
    tensorboard = Path(sys.executable).parent / "tensorboard"
    port = free_port()
    process = subprocess.Popen(
        [str(tensorboard), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:  # up, and done reading the run (it loads in the background)
        try:
            if "run" in json.loads(get(f"{base}/data/plugin/images/tags")):
                break
        except OSError:
            pass
        assert process.poll() is None, "tensorboard exited"
        assert time.monotonic() < deadline, "tensorboard did not serve the run within 90 s"
        time.sleep(0.5)
    yield base
    process.terminate()
    process.wait(timeout=30)


def test_every_tab_is_served(server: str) -> None:
    assert json.loads(get(f"{server}/data/runs")) == ["run"]
    scalars = set(json.loads(get(f"{server}/data/plugin/scalars/tags"))["run"])
    expected = {f"{split}/{m}" for split in ("val", "test") for m in ("loss", "acc", "f1")}
    expected |= {"train/loss_epoch", "train/acc", "train/f1", "train/grad_norm", "lr-AdamW",
                 "perf/train_tokens_per_s", "perf/train_samples_per_s", "perf/peak_memory_mb", *HP_METRICS}
    assert expected <= scalars, expected - scalars
    # val/acc: one point per epoch, a share.
    points = json.loads(get(f"{server}/data/plugin/scalars/scalars?run=run&tag=val/acc"))
    assert len(points) == 2 and all(0 <= value <= 1 for _, _, value in points)

    images = json.loads(get(f"{server}/data/plugin/images/images?run=run&tag=val/confusion_matrix"))
    assert len(images) == 2  # one per validation epoch, sanity check excluded
    png = get(f"{server}/data/plugin/images/individualImage?{images[-1]['query']}")
    assert png.startswith(b"\x89PNG")

    texts = json.loads(get(f"{server}/data/plugin/text/tags"))["run"]
    assert {"val/per_class/text_summary", "val/misclassified/text_summary"} <= set(texts)
    table = json.loads(get(f"{server}/data/plugin/text/text?run=run&tag=val/per_class/text_summary"))
    assert all(name in table[-1]["text"] for name in ("neg", "neu", "pos", "precision", "recall"))

    layout = json.loads(get(f"{server}/data/plugin/custom_scalars/layout"))
    charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert charts["accuracy"] == ["^train/acc$", "^val/acc$"]

    experiment = json.loads(get(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""}))
    hparams = {h["name"] for h in experiment["hparamInfos"]}
    assert {"cell_type", "hidden_size", "learning_rate", "batch_size", "max_epochs", "seed"} <= hparams
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert set(HP_METRICS) <= metrics
    groups = json.loads(get(f"{server}/data/plugin/hparams/session_groups",
                            {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                             "colParams": [], "startIndex": 0, "sliceSize": 10}))
    values = {m["name"]["tag"]: m["value"] for m in groups["sessionGroups"][0]["metricValues"]}
    assert 0 < values["hp/test_acc"] <= 1 and 0 < values["hp/val_f1"] <= 1  # the real figures, not the placeholders


def test_rich_progress_bar_and_model_summary_are_on_by_default(tiny_run) -> None:
    callbacks = tiny_run.trainer.callbacks
    assert isinstance(tiny_run.trainer.progress_bar_callback, RichProgressBar)
    assert any(isinstance(c, RichModelSummary) for c in callbacks)


def test_the_run_keeps_what_predict_needs(tiny_run) -> None:
    import torch

    best = torch.load(tiny_run.trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert best["hyper_parameters"]["label_names"] == ["neg", "neu", "pos"]
    assert best["hyper_parameters"]["cell_type"] == "lstm"
    assert json.loads(best["TextDataModule"]["tokenizer"])["model"]["vocab"]["great"] > 1
