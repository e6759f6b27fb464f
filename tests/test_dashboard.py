"""TensorBoard as a user sees it: a real ``tensorboard`` server on 127.0.0.1 over a finished
tiny run, read through the same HTTP endpoints its tabs use. What it shows comes from the model
and the callbacks: Lightning's LearningRateMonitor, GradNorm, Throughput, ValidationReport and
HParams."""

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, RichModelSummary, RichProgressBar

from project import tags
from project.metrics_file import FILENAME
from project.progress import LineProgressBar
from project.tags import HP_METRICS
from tests.helpers import best_checkpoint


def get(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@pytest.fixture
def server(tiny_run, tmp_path: Path):
    """``tensorboard --logdir <tmp> --host 127.0.0.1 --port 0`` on a copy of the run: the server
    binds a port the system picks and prints its address, so no port is chosen here and then
    raced for."""
    logdir = tmp_path / "logs"
    shutil.copytree(Path(tiny_run.trainer.log_dir), logdir / "run")
    tensorboard = Path(sys.executable).parent / "tensorboard"
    log = tmp_path / "tensorboard.log"
    with log.open("w") as output:  # a file, not a pipe that would fill up with nobody reading it
        process = subprocess.Popen(
            [str(tensorboard), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0"],
            stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        base, deadline = None, time.monotonic() + 90
        while True:  # up (its address printed), and done reading the run (it loads in the background)
            if base is None and (found := re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/", log.read_text())):
                base = found.group(1)
            try:
                if base is not None and "run" in json.loads(get(f"{base}/data/plugin/images/tags")):
                    break
            except OSError:
                pass
            assert process.poll() is None, f"tensorboard exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not served within 90 s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_every_tab_is_served(server: str, tiny_run) -> None:
    record = json.loads((Path(tiny_run.trainer.log_dir) / FILENAME).read_text())
    assert json.loads(get(f"{server}/data/runs")) == ["run"]
    scalars = set(json.loads(get(f"{server}/data/plugin/scalars/tags"))["run"])
    expected = {f"{split}/{m}" for split in ("val", "test") for m in ("loss", "acc", "f1")}
    expected |= {"train/loss_epoch", "train/acc", "train/f1", "train/grad_norm", "lr-AdamW", *HP_METRICS,
                 "perf/train_tokens_per_s", "perf/train_samples_per_s", "perf/epoch_s", "perf/peak_memory_mb",
                 "perf/memory_growth_mb", "perf/val_tokens_per_s", "perf/elapsed_s",
                 "perf/train_tokens_per_s_median", "model/trainable_params"}
    assert expected <= scalars, expected - scalars
    # The names come from one module: every tag it lists for a scalar is one TensorBoard shows.
    listed = {v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str)}
    images_and_texts = {tags.CONFUSION_MATRIX, tags.PER_CLASS, tags.MISCLASSIFIED}
    assert listed - images_and_texts <= scalars, listed - images_and_texts - scalars
    # val/acc: one point per epoch, the figures the run recorded (its metrics.json history).
    points = json.loads(get(f"{server}/data/plugin/scalars/scalars?run=run&tag=val/acc"))
    history = [entry[tags.VAL_ACC] for entry in record["history"]]
    assert len(history) == 2 and [value for _, _, value in points] == pytest.approx(history)
    # The learning rate each step (Lightning's LearningRateMonitor, logging_interval step).
    steps = json.loads(get(f"{server}/data/plugin/scalars/scalars?run=run&tag=lr-AdamW"))
    assert len(steps) == 8 and len({value for _, _, value in steps}) > 1  # 4 steps an epoch, one-cycle

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
    # The real figures, not the placeholders: the test's and the kept checkpoint's validation.
    assert values == pytest.approx({
        tags.HP_VAL_ACC: record["best"][tags.VAL_ACC], tags.HP_VAL_F1: record["best"][tags.VAL_F1],
        tags.HP_TEST_ACC: record["test"][tags.TEST_ACC], tags.HP_TEST_F1: record["test"][tags.TEST_F1],
    })


def test_the_learning_rate_is_lightnings_own_monitor(tiny_run) -> None:
    monitor = next(c for c in tiny_run.trainer.callbacks if isinstance(c, LearningRateMonitor))
    assert type(monitor) is LearningRateMonitor and monitor.logging_interval == "step"


def test_a_progress_bar_and_the_rich_model_summary_are_on_by_default(tiny_run) -> None:
    callbacks = tiny_run.trainer.callbacks
    # Rich on a terminal, plain lines when output goes to a file (as under pytest without -s):
    # test_progress.py runs both.
    expected = RichProgressBar if sys.stdout.isatty() else LineProgressBar
    assert type(tiny_run.trainer.progress_bar_callback) is expected
    assert any(isinstance(c, RichModelSummary) for c in callbacks)


def test_the_run_keeps_what_predict_needs(tiny_run) -> None:
    import torch

    best = torch.load(best_checkpoint(tiny_run), weights_only=True)
    assert best["hyper_parameters"]["label_names"] == ["neg", "neu", "pos"]
    assert best["hyper_parameters"]["cell_type"] == "lstm"
    assert json.loads(best["TextDataModule"]["tokenizer"])["model"]["vocab"]["great"] > 1
