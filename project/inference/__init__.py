"""Label new text from a checkpoint or an exported ONNX folder: ``predictor`` (the Python API,
``Predictor``), ``onnx_predictor``, ``predict`` (the command: texts in, JSON lines out) and
``export`` (a checkpoint as an ONNX folder, checked against PyTorch). Reading a checkpoint is
``model``'s job: nothing here imports ``training``."""

from project.inference.predictor import Predictor

__all__ = ["Predictor"]
