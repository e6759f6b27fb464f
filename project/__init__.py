"""Recurrent (RNN / LSTM / GRU) text classifiers on any Hugging Face dataset, with Lightning.

``python -m project --help`` lists the commands; in Python, ``Predictor`` labels texts with a
trained checkpoint, and ``TextClassifier`` / ``TextDataModule`` are the LightningModule and
LightningDataModule that ``fit`` trains (usable with a ``lightning.Trainer`` of your own)."""

from project.data import TextDataModule
from project.model import TextClassifier
from project.predictor import Predictor

__all__ = ["Predictor", "TextClassifier", "TextDataModule"]
