"""What a checkpoint of this project holds, and how an older one is read.

A ``.ckpt`` is Lightning's dictionary plus, under stable string keys: the DataModule's state
(``"TextDataModule"``: the tokenizer, the label names and where a stopped epoch was), each
callback's state (keyed by its class name, as Lightning does), the random state
(``rng_state``), the schedule's length (``schedule_steps``) and the format version
(``project_format``). When what a checkpoint holds changes, ``FORMAT`` goes up and ``upgrade``
learns to turn the previous format into the new one, so that every command reads checkpoints of
every earlier version (tests/test_compat.py loads one written before issue 29)."""

from pathlib import Path
from typing import Any

import torch

from project.errors import UserError

FORMAT_KEY = "project_format"
FORMAT = 1  # 0: no key (before issue 29), the same contents as 1
DATAMODULE_KEY = "TextDataModule"  # Lightning keys a DataModule's state by its class's __qualname__
LM_DATAMODULE_KEY = "LanguageModelData"  # a pretrain run's (a language model's) checkpoint
FIX = "fix: pass a .ckpt written by `python -m project fit` (lightning_logs/<run>-version_N/checkpoints/)"


def upgrade(checkpoint: dict[str, Any], path: str = "the checkpoint") -> dict[str, Any]:
    """``checkpoint`` in today's format, changed in place (Lightning's loading calls this through
    the model's ``on_load_checkpoint``, before it restores anything)."""
    version = checkpoint.get(FORMAT_KEY, 0)
    if not isinstance(version, int) or version > FORMAT:
        raise UserError(f"{path}: written by a newer version of this project (checkpoint format {version}, this one "
                        f"reads up to {FORMAT}); fix: upgrade the project (pip install -U), or retrain")
    if DATAMODULE_KEY in checkpoint:  # a classifier (not a language model), saved before calibration: T = 1
        checkpoint["state_dict"].setdefault("temperature", torch.ones(()))
    checkpoint[FORMAT_KEY] = FORMAT
    return checkpoint


def _is_text(file: Path) -> bool:
    with file.open("rb") as f:
        head = f.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start > len(head) - 4  # a character cut at the end of the probe
    return b"\0" not in head


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint's contents in today's format, memory-mapped (checking a file reads its
    index, not its tensors: Lightning loads it again), or a UserError saying what is wrong."""
    file = Path(path)
    if file.is_dir():  # a run folder, most often: name the checkpoint inside it
        inside = next((c for c in (file / "checkpoints" / "last.ckpt", file / "last.ckpt") if c.is_file()), None)
        raise UserError(f"{path} is a folder, not a checkpoint; fix: pass the .ckpt file inside it"
                        + (f", e.g. {inside}" if inside else " (a run's checkpoints/last.ckpt)"))
    if not file.is_file():
        raise UserError(f"{path}: no such checkpoint; {FIX}")
    with file.open("rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK\x03\x04"):  # torch.save writes a zip file: say what it is instead
        kind = "an exported ONNX model: predict --model and serve --model take its folder" if file.suffix == ".onnx" \
            else "a text file" if _is_text(file) else "not a zip file as torch.save writes"
        raise UserError(f"{path}: not a checkpoint ({kind}); {FIX}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated or not a checkpoint: torch's message names no file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise UserError(f"{path}: not a readable checkpoint ({first}); {FIX}") from None
    if not isinstance(saved, dict) or not (saved.get(DATAMODULE_KEY) or saved.get(LM_DATAMODULE_KEY)) \
            or "state_dict" not in saved \
            or "hyper_parameters" not in saved:
        raise UserError(f"{path}: a checkpoint without this project's tokenizer and model; {FIX}")
    return upgrade(saved, path)
