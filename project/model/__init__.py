"""The network and what a checkpoint holds: ``classifier`` (``TextClassifier``, the
LightningModule), ``encoders`` (RNN / LSTM / GRU, exact on padded batches), ``vectors``
(pretrained word vectors) and ``checkpoint_format`` (the format version, reading any version)."""

import importlib

__all__ = ["TextClassifier"]


def __getattr__(name: str) -> object:  # on first use: importing a sibling module does not load it
    if name == "TextClassifier":
        return importlib.import_module("project.model.classifier").TextClassifier
    raise AttributeError(f"module 'project.model' has no attribute '{name}'")
