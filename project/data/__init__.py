"""Text in, token batches out: ``datamodule`` (``TextDataModule``), ``sources`` (where the text
comes from: one class per kind), ``frame`` (a DataFrame from Python), ``files`` (local files),
``checks`` (bad data as one line), ``tokenization``, ``cache`` (tokenized splits on disk),
``batching`` (length buckets), ``padding`` (ids as arrays, without torch) and ``unlabeled`` (``LanguageModelData``: the training text
and unlabelled files as a language model's windows, for ``pretrain``)."""

import importlib

__all__ = ["TextDataModule"]


def __getattr__(name: str) -> object:  # on first use: importing a sibling module does not load it
    if name == "TextDataModule":
        return importlib.import_module("project.data.datamodule").TextDataModule
    raise AttributeError(f"module 'project.data' has no attribute '{name}'")
