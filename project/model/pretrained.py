"""A ``pretrain`` run as the start of a classifier (``fit --model.init_from``): where its
checkpoint and tokenizer are, the sizes a classifier must have to take its weights, and the
copy of its embedding and encoder into the classifier, refused in one line where they do not fit."""

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from project.errors import UserError
from project.model.checkpoint_format import DATAMODULE_KEY, LM_DATAMODULE_KEY, upgrade

# The classifier settings a language model fixes: they must be its, or its weights do not fit.
SHAPE = ("cell_type", "embedding_dim", "hidden_size", "num_layers", "bidirectional")
FIX = "fix: pass a pretrain run's folder or one of its .ckpt files (python -m project pretrain writes them)"


def checkpoint_of(init_from: str) -> Path:
    """The checkpoint ``init_from`` names: a ``.ckpt`` file, or a pretrain run's folder (its kept
    checkpoint, the best validation perplexity, as its metrics.json says; else its last)."""
    path = Path(init_from)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"--model.init_from {init_from}: no such file or folder; {FIX}")
    metrics = path / "metrics.json"
    if metrics.is_file():
        kept = json.loads(metrics.read_text()).get("best_checkpoint")
        if kept and (path / kept).is_file():
            return path / kept
    if (last := path / "checkpoints" / "last.ckpt").is_file():
        return last
    raise UserError(f"--model.init_from {init_from}: a folder without checkpoints/; {FIX}")


def read_pretrained(init_from: str) -> dict[str, Any]:
    """The pretrain checkpoint's contents (memory-mapped), or a UserError saying what is wrong."""
    path = checkpoint_of(init_from)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated or not a checkpoint
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise UserError(f"{path}: not a readable checkpoint ({first}); {FIX}") from None
    if not isinstance(saved, dict) or LM_DATAMODULE_KEY not in saved or "state_dict" not in saved:
        what = "a classifier's checkpoint" if isinstance(saved, dict) and DATAMODULE_KEY in saved else "not a pretrain checkpoint"
        raise UserError(f"--model.init_from {path}: {what}, not a language model's; {FIX}")
    return upgrade(saved, str(path))


def tokenizer_of(init_from: str) -> Path:
    """The pretrain run's ``tokenizer.json`` (its folder's), which fit must read text with."""
    path = checkpoint_of(init_from)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if not (found := run / "tokenizer.json").is_file():
        raise UserError(f"{path}: no tokenizer.json in its run folder {run}; fix: keep the pretrain run's folder "
                        f"whole (checkpoints/ and tokenizer.json), and pass the folder")
    return found


def _vocabulary(tokenizer_json: str) -> dict:
    """What maps text to ids, without truncation or padding (fit sets its own max_length)."""
    settings = json.loads(tokenizer_json)
    return {k: v for k, v in settings.items() if k not in ("truncation", "padding")}


def load_pretrained(model: torch.nn.Module, init_from: str, tokenizer: Tokenizer) -> None:
    """Copy the language model's embedding and encoder into ``model`` (a classifier)."""
    saved = read_pretrained(init_from)
    theirs, ours = saved["hyper_parameters"], model.hparams
    if differ := [f"{k} {ours[k]} (the language model's: {theirs[k]})" for k in SHAPE if ours[k] != theirs.get(k)]:
        raise UserError(f"--model.init_from {init_from}: this classifier's {', '.join(differ)} differ; fix: drop those "
                        f"--model flags (fit then takes the language model's)")
    pretrained = Tokenizer.from_str(saved[LM_DATAMODULE_KEY]["tokenizer"])
    sep = None if ours.get("sep_id") is None else tokenizer.id_to_token(ours["sep_id"])
    if sep is not None and pretrained.token_to_id(sep) is None:
        raise UserError(f"--model.init_from {init_from}: the data are text pairs, and the language model never read "
                        f"the {sep} between them; fix: pretrain on the same --data.text_column (both columns)")
    if _vocabulary(saved[LM_DATAMODULE_KEY]["tokenizer"]) != _vocabulary(tokenizer.to_str()):
        raise UserError(f"--model.init_from {init_from}: the data's tokenizer is not the language model's; fix: drop "
                        f"--data.tokenizer (fit then reads text with the pretrain run's tokenizer.json)")
    weights = {k: v for k, v in saved["state_dict"].items() if k.startswith(("embedding.", "encoder."))}
    missing = [k for k in model.state_dict() if k.startswith(("embedding.", "encoder.")) and k not in weights]
    if missing:
        raise UserError(f"--model.init_from {init_from}: the checkpoint lacks {missing[0]}; {FIX}")
    model.load_state_dict(weights, strict=False)
