"""Label new text from a checkpoint or an exported ONNX folder: ``labeller`` (the steps both share,
without torch), ``predictor`` (the Python API,
``Predictor``), ``onnx_predictor``, ``predict`` (the command: texts in, JSON lines out) and
``export`` (a checkpoint as an ONNX folder, checked against PyTorch). Reading a checkpoint is
``model``'s job: nothing here imports ``training``."""

import importlib

__all__ = ["Predictor"]


def __getattr__(name: str) -> object:  # on first use: importing a sibling module does not load it
    if name == "Predictor":
        return importlib.import_module("project.inference.predictor").Predictor
    raise AttributeError(f"module 'project.inference' has no attribute '{name}'")
