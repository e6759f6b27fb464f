"""Text in, token batches out: ``datamodule`` (``TextDataModule``), ``sources`` (where the text
comes from: one class per kind), ``frame`` (a DataFrame from Python), ``files`` (local files),
``checks`` (bad data as one line), ``tokenization``, ``cache`` (tokenized splits on disk) and
``batching`` (length buckets, padding)."""

import importlib

__all__ = ["TextDataModule"]


def __getattr__(name: str) -> object:  # on first use: importing a sibling module does not load it
    if name == "TextDataModule":
        return importlib.import_module("project.data.datamodule").TextDataModule
    raise AttributeError(f"module 'project.data' has no attribute '{name}'")
