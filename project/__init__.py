"""Recurrent (RNN / LSTM / GRU) text classifiers on any Hugging Face dataset, with Lightning.

``python -m project --help`` lists the commands; in Python, ``Predictor`` labels texts with a
trained checkpoint, and ``TextClassifier`` / ``TextDataModule`` are the LightningModule and
LightningDataModule that ``fit`` trains (usable with a ``lightning.Trainer`` of your own).

The code is in packages by job, each importing only those below it: ``commands`` (parse a
command line, run one subcommand), ``serving`` (the HTTP app), ``inference`` (label text with a
checkpoint or an ONNX folder), ``training`` (one fit: its callbacks, run folders, model card),
``data`` (text in, token batches out), ``model`` (the network and what a checkpoint holds), and
the modules here that all share (errors, atomic writes, metric names, the machine, compat)."""

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__all__ = ["Predictor", "TextClassifier", "TextDataModule"]
# Imported on first use, so that a command that needs no torch or Lightning (env, --help,
# predict --model on ONNX Runtime) starts without them: Lightning alone takes seconds.
_API = {"Predictor": "project.inference.predictor", "TextClassifier": "project.model.classifier",
        "TextDataModule": "project.data.datamodule"}


def __getattr__(name: str) -> object:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'project' has no attribute '{name}'")

# Where each module was before the packages (issue 29): saved configs name classes by these
# paths (a trial's config.yaml: ``project.runs.RunLogger``; ``--trainer.callbacks`` of a user's
# own), and they keep loading. The same module object answers to both names.
MOVED = {
    "project.cli": "project.commands.cli", "project.compare": "project.commands.compare",
    "project.report": "project.commands.compare_report", "project.tune": "project.commands.tune",
    "project.study": "project.commands.study", "project.serve": "project.serving.serve",
    "project.web": "project.serving.web", "project.predictor": "project.inference.predictor",
    "project.onnx_predictor": "project.inference.onnx_predictor", "project.predict": "project.inference.predict",
    "project.export": "project.inference.export", "project.arguments": "project.training.arguments",
    "project.checkpoints": "project.training.checkpoints", "project.calibration": "project.training.calibration",
    "project.validation_report": "project.training.validation_report", "project.hparams": "project.training.hparams",
    "project.metrics_file": "project.training.metrics_file", "project.throughput": "project.training.throughput",
    "project.progress": "project.training.progress", "project.stopping": "project.training.stopping",
    "project.grad_norm": "project.training.grad_norm", "project.runs": "project.training.runs",
    "project.model_card": "project.training.model_card", "project.sources": "project.data.sources",
    "project.files": "project.data.files", "project.checks": "project.data.checks", "project.cache": "project.data.cache",
    "project.tokenization": "project.data.tokenization", "project.batching": "project.data.batching",
    "project.encoders": "project.model.encoders", "project.vectors": "project.model.vectors",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module that now holds it (not a second copy of it)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import machinery replaces it with this alias's spec
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = module.__spec__.loader_state  # its own again


sys.meta_path.append(_Moved())
