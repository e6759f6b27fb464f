"""Checkpoints are written atomically and checked when read.

Lightning writes a checkpoint straight to its final path, so a kill mid-write leaves a truncated
``last.ckpt`` that the next ``--ckpt_path last`` would trust. Here every file is written beside
its final name and renamed into place: a reader sees the previous whole file or the new whole
file. A file given to ``fit / validate / test / predict`` is opened first, so a missing,
truncated or foreign one is refused with one line instead of a traceback.
"""

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from project.checks import DataError

FIX = "fix: pass a .ckpt written by `python -m project fit` (lightning_logs/version_N/checkpoints/)"
# What Lightning resolves itself: the newest last.ckpt, the best checkpoint of this fit, ...
SPECIAL = ("last", "best", "hpc", "registry")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, final)


def read_checkpoint(path: str, datamodule_key: str) -> dict[str, Any]:
    """The checkpoint's contents, memory-mapped (checking a file reads its index, not its
    tensors: Lightning loads it again), or a DataError saying what is wrong with the file."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such checkpoint; {FIX}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated or not a checkpoint: torch's message names no file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise DataError(f"{path}: not a readable checkpoint ({first}); {FIX}") from None
    if not isinstance(saved, dict) or not saved.get(datamodule_key) or "state_dict" not in saved \
            or "hyper_parameters" not in saved:
        raise DataError(f"{path}: a checkpoint without this project's tokenizer and model; {FIX}")
    return saved
