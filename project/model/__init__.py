"""The network and what a checkpoint holds: ``classifier`` (``TextClassifier``, the
LightningModule), ``language_model`` (``LanguageModel``, what ``pretrain`` trains), ``base`` (what
both share: the trust contract, the optimizer and schedule), ``encoders`` (RNN / LSTM / GRU, exact
on padded batches; AWD-LSTM's dropouts), ``pretrained`` (a pretrain run as a classifier's start),
``vectors`` (pretrained word vectors) and ``checkpoint_format`` (the format version, reading any
version)."""

import importlib

__all__ = ["TextClassifier"]


def __getattr__(name: str) -> object:  # on first use: importing a sibling module does not load it
    if name == "TextClassifier":
        return importlib.import_module("project.model.classifier").TextClassifier
    raise AttributeError(f"module 'project.model' has no attribute '{name}'")
