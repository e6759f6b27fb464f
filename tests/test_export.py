"""``export`` to ONNX and ``predict --model DIR`` on ONNX Runtime, against the checkpoint path.

Parity for every cell type x direction x pooling: a checkpoint of the tiny run's tokenizer and
labels with a model of those settings (seeded weights: the same on every machine) is exported by
the CLI, then both predictors label the tiny run's test texts."""

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from project.commands.cli import main
from project.inference.onnx_predictor import OnnxPredictor
from project.inference.predictor import Predictor
from project.model.classifier import TextClassifier
from tests.helpers import ROOT, WITHOUT_TORCH, best_checkpoint, refused

pytestmark = pytest.mark.slow  # exports and ONNX Runtime sessions: seconds each

GRID = list(itertools.product(["rnn", "lstm", "gru"], [True, False], ["last", "mean", "max", "attention"]))


def texts_of(cli) -> list[str]:  # noqa: ANN001 - a finished LightningCLI
    return cli.datamodule.texts("test", list(range(len(cli.datamodule.dataset["test"]))))


def export(ckpt: str, output: Path, *extra: str) -> None:
    main(["export", f"--ckpt_path={ckpt}", f"--output={output}", *extra])


@pytest.fixture(scope="module")
def grid_checkpoints(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, str]:
    """One checkpoint per grid point: the tiny run's, with a model of that cell, direction and
    pooling (2 layers, so the exported graph chains layers too) and seeded weights; half of them
    with the batch-normalized head, its running statistics not the identity's."""
    saved = torch.load(best_checkpoint(tiny_run), map_location="cpu", weights_only=False)
    folder = tmp_path_factory.mktemp("grid")
    paths = {}
    for i, (cell, bidirectional, pooling) in enumerate(GRID):
        torch.manual_seed(i)
        hparams = {**saved["hyper_parameters"], "cell_type": cell, "bidirectional": bidirectional,
                   "pooling": pooling, "num_layers": 2, "hidden_size": 12, "head_norm": pooling in ("mean", "attention")}
        model = TextClassifier(**{k: v for k, v in hparams.items() if not k.startswith("_")})
        if hparams["head_norm"]:
            model.head_norm.running_mean.normal_()
            model.head_norm.running_var.uniform_(0.5, 2)
            model.head_norm.weight.data.uniform_(0.5, 2)
        model.temperature.fill_(1.7)  # a calibrated model: the export must apply it
        paths[cell, bidirectional, pooling] = str(folder / f"{cell}-{bidirectional}-{pooling}.ckpt")
        torch.save({**saved, "hyper_parameters": hparams, "state_dict": model.state_dict()}, paths[cell, bidirectional, pooling])
    return paths


@pytest.mark.parametrize(("cell", "bidirectional", "pooling"), GRID)
def test_export_parity(grid_checkpoints, tiny_run, tmp_path: Path, cell: str, bidirectional: bool, pooling: str) -> None:
    ckpt = grid_checkpoints[cell, bidirectional, pooling]
    export(ckpt, tmp_path / "export")
    texts = texts_of(tiny_run)
    for calibrated in (True, False):
        expected = Predictor.from_checkpoint(ckpt, device="cpu", batch_size=4, calibrated=calibrated).probabilities(texts)[1]
        got = OnnxPredictor.from_folder(str(tmp_path / "export"), batch_size=4, calibrated=calibrated).probabilities(texts)[1]
        assert np.abs(got - expected).max() < 1e-4
        assert got.argmax(-1).tolist() == expected.argmax(-1).tolist()
    # The probabilities differ between calibrated and raw: the temperature is in the graph.
    assert not np.allclose(got, OnnxPredictor.from_folder(str(tmp_path / "export")).probabilities(texts)[1], atol=1e-3)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "tiny"
    export(best_checkpoint(tiny_run), folder)
    return folder


def test_export_folder_holds_everything_to_predict(exported: Path, tiny_run) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["labels.json", "model.onnx", "model_card.md", "task.json",
                                                          "tokenizer.json"]
    assert json.loads((exported / "labels.json").read_text()) == ["neg", "neu", "pos"]
    assert json.loads((exported / "task.json").read_text()) == {"text_columns": ["sentence"], "text_separator": " ",
                                                                "multi_label": False, "thresholds": None}
    card = Path(tiny_run.trainer.log_dir) / "model_card.md"
    assert (exported / "model_card.md").read_text().startswith(card.read_text())
    assert "## This export" in (exported / "model_card.md").read_text()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no partial folder left


def test_predict_model_writes_the_lines_of_the_checkpoint_path(exported: Path, tiny_run, tmp_path: Path, capsys) -> None:
    texts = texts_of(tiny_run)
    (tmp_path / "in.txt").write_text("\n".join(texts[:7] + ["", "  "] + texts[7:]) + "\n")
    lines = {}
    for name, flag in (("onnx", f"--model={exported}"), ("torch", f"--ckpt_path={best_checkpoint(tiny_run)}")):
        main(["predict", flag, f"--input={tmp_path / 'in.txt'}", "--batch_size=5"])
        lines[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines["onnx"]) == len(texts) + 2
    for onnx, torch_ in zip(lines["onnx"], lines["torch"]):
        assert (onnx["text"], onnx["label"], onnx["blank"]) == (torch_["text"], torch_["label"], torch_["blank"])
        if not onnx["blank"]:
            assert onnx["probabilities"] == pytest.approx(torch_["probabilities"], abs=1e-4)


def test_the_folder_predicts_without_pytorch(exported: Path, tiny_run, tmp_path: Path) -> None:
    """docs/export.md's snippet, run where importing torch fails: onnxruntime, tokenizers and
    numpy are enough, and it gives the Python API's probabilities."""
    snippet = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "export.md").read_text(), re.S).group(1)
    text = texts_of(tiny_run)[0]
    script = tmp_path / "no_torch.py"
    script.write_text("import sys\nsys.modules['torch'] = None  # any import of torch fails\n"
                      + snippet.replace('"exports/bbc"', repr(str(exported))).replace('"Shares rose after the merger."', repr(text))
                      + "print(json.dumps(probabilities.tolist()))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    expected = Predictor.from_checkpoint(best_checkpoint(tiny_run), device="cpu").probabilities([text])[1][0]
    assert json.loads(out.stdout.splitlines()[-1]) == pytest.approx(expected.tolist(), abs=1e-5)
    # And so does `predict --model` (test_serve's server runs this way too).
    out = subprocess.run([*WITHOUT_TORCH, "predict", f"--model={exported}"], input=text + "\n", capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout)
    assert list(line["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_export_refuses_what_it_must_not_replace(exported: Path, tiny_run, tmp_path: Path) -> None:
    ckpt = best_checkpoint(tiny_run)
    run = Path(tiny_run.trainer.log_dir)
    refused(["export", f"--ckpt_path={ckpt}", f"--output={exported}"], tmp_path, "already holds an exported model")
    for holder in (run, run / "checkpoints", run.parent):  # even with --overwrite: it holds the checkpoint
        refused(["export", f"--ckpt_path={ckpt}", f"--output={holder}", "--overwrite"], tmp_path, "holds the checkpoint")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    refused(["export", f"--ckpt_path={ckpt}", f"--output={other}", "--overwrite"], tmp_path, "not an export")
    assert (other / "mine.txt").read_text() == "keep me"
    refused(["export", f"--ckpt_path={ckpt}", f"--output={other / 'mine.txt'}"], tmp_path, "is a file")
    refused(["export", f"--ckpt_path={tmp_path / 'none.ckpt'}", f"--output={tmp_path / 'new'}"], tmp_path, "no such checkpoint")
    assert not (tmp_path / "new").exists()


def test_export_overwrite_replaces_an_export(exported: Path, tiny_run, tmp_path: Path) -> None:
    target = tmp_path / "again"
    export(best_checkpoint(tiny_run), target)
    (target / "labels.json").write_text('["stale"]')
    export(best_checkpoint(tiny_run), target, "--overwrite")
    assert json.loads((target / "labels.json").read_text()) == ["neg", "neu", "pos"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # the old one is gone, no partial left


def test_predict_model_refuses_bad_folders(exported: Path, tiny_run, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("good film\n")
    given = [f"--input={tmp_path / 'in.txt'}"]
    refused(["predict", f"--model={tmp_path / 'none'}", *given], tmp_path, "no such folder")
    refused(["predict", *given], tmp_path, "no model given")
    refused(["predict", f"--model={exported}", f"--ckpt_path={best_checkpoint(tiny_run)}", *given], tmp_path, "one model, not two")
    refused(["predict", f"--model={exported}", "--precision=bf16-mixed", *given], tmp_path, "runs in 32-true")
    refused(["predict", f"--model={exported}", *given, f"--output={exported / 'model.onnx'}", "--overwrite"], tmp_path,
            "never replaces")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("tokenizer.json", "labels.json"):
        (broken / name).write_bytes((exported / name).read_bytes())
    refused(["predict", f"--model={broken}", *given], tmp_path, "has no model.onnx")
    (broken / "model.onnx").write_bytes((exported / "model.onnx").read_bytes()[:500])  # cut short
    refused(["predict", f"--model={broken}", *given], tmp_path, "not a readable ONNX model")
    (broken / "model.onnx").write_bytes((exported / "model.onnx").read_bytes())
    (broken / "labels.json").write_text('["a", "b"]')  # the model gives three
    refused(["predict", f"--model={broken}", *given], tmp_path, "probabilities of the 2 classes")
    (broken / "labels.json").write_text("not json")
    refused(["predict", f"--model={broken}", *given], tmp_path, "unreadable")
