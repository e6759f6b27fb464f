"""``python -m project export --ckpt_path X --output DIR``: a trained checkpoint as a folder that
labels text without PyTorch (ONNX Runtime, tokenizers and numpy are enough):

    DIR/model.onnx      inputs input_ids (batch, length) int64, right-padded, and lengths (batch,)
                        int64; outputs probabilities (batch, classes), calibrated with the run's
                        temperature, and logits (batch, classes). Batch and length are dynamic.
    DIR/tokenizer.json  the run's tokenizer (``tokenizers.Tokenizer.from_file``)
    DIR/labels.json     the class names, in the order of the outputs' columns
    DIR/task.json       what one input is (the data's text columns, and what joins them: two
                        columns are a text pair, read as ``first [SEP] second``) and whether a
                        text gets one label or several (multi-label, with each label's threshold);
                        an export from before these has none: one text, one label
    DIR/model_card.md   the run's model card (model_card.py), when the run wrote one

``python -m project predict --model DIR`` and ``serve --model DIR`` run it (onnx_predictor.py).

The graph is the CPU path of the model (encoders.py: each direction one padded RNN call, the
backward one over texts reversed within their lengths), so it is exact for any mix of lengths in
a batch. It is traced by torch's TorchScript-based exporter: the newer torch.export-based one
(torch 2.13) traced the in-length reversal with the example batch's shape fixed, and ONNX
Runtime then refused any other batch ("invalid expand shape"). Before the folder is put in
place, the exported model labels random texts of many lengths next to PyTorch, and export
stops if a probability differs by more than ``TOLERANCE``.
"""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ActionYesNo, ArgumentParser
from torch import nn

from project.atomic import Taken, atomic_write, partial_path, remove_stale
from project.errors import UserError
from project.inference.onnx_predictor import FILES, TASK_FILE, session
from project.inference.predictor import load_checkpoint

CARD = "model_card.md"
TOLERANCE = 1e-4  # largest difference in a probability between the export and PyTorch
OPSET = 17  # ONNX Runtime 1.13 (2022) and later run it
EXPORTED = """
## This export

Written by `python -m project export` from `{ckpt}`: `model.onnx` (inputs `input_ids` and
`lengths`, outputs `probabilities` and `logits`), `tokenizer.json`, `labels.json` and `task.json`
(the text columns one input holds; multi-label: each label's threshold). Label
texts with `python -m project predict --model <this folder> --input FILE`, or serve them with
`python -m project serve --model <this folder>`.
"""


class Probabilities(nn.Module):
    """The model as exported: calibrated probabilities (multi-label: each label's sigmoid), as
    ``predict`` gives them, and raw logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids, lengths)
        if self.model.hparams.get("multi_label"):  # a sigmoid per label, as predict gives them
            return logits.sigmoid(), logits
        return (logits / self.model.temperature).softmax(-1), logits


def random_batch(vocab_size: int, lengths: list[int], seed: int = 0, sep_id: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random token ids of the given lengths (padding id 0); with ``sep_id``, text
    pairs: the separator at a random place of each text (first or last too: a side left empty)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, max(vocab_size, 2), (len(lengths), max(lengths)), generator=generator)
    lengths_t = torch.tensor(lengths)
    if sep_id is not None:
        ids[ids == sep_id] = 1  # one separator per text: the one placed here
        at = (torch.rand(len(lengths), generator=generator) * lengths_t).long()
        ids[torch.arange(len(lengths)), at] = sep_id
    return ids.masked_fill(torch.arange(ids.size(1)) >= lengths_t[:, None], 0), lengths_t


def check_output(output: Path, ckpt_path: str, overwrite: bool) -> None:
    """Refuse a target that is a file, that holds the checkpoint (replacing it would delete the
    checkpoint), or a folder with content that export did not write (it is never replaced)."""
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; fix: name a folder for the exported model, e.g. exports/bbc")
    checkpoint = Path(ckpt_path).resolve()
    if output.resolve() == checkpoint.parent or output.resolve() in checkpoint.parents:
        raise UserError(f"--output {output} holds the checkpoint {ckpt_path}, which export never replaces; "
                        f"fix: name a new folder, e.g. {output / 'export'}")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not all((output / name).is_file() for name in FILES):
        raise UserError(f"--output {output} is a folder with other files in it (not an export: no "
                        f"{', '.join(FILES)}); fix: name a new or empty folder")
    if not overwrite:
        raise UserError(f"--output {output} already holds an exported model; fix: pass --overwrite to replace "
                        f"it, or name another folder")


def export(ckpt_path: str, output: str, overwrite: bool = False) -> None:
    """Export a trained checkpoint to ONNX, with its tokenizer, labels and model card.

    Args:
        ckpt_path: A checkpoint written by ``python -m project fit``.
        output: The folder to write (created; put in place only when complete and checked).
            Never a folder that holds the checkpoint; an existing export only with ``--overwrite``.
        overwrite: Replace an existing export folder.
    """
    target = Path(output)
    check_output(target, ckpt_path, overwrite)
    model, tokenizer, task = load_checkpoint(ckpt_path)
    labels = list(model.hparams.label_names)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)  # partial folders of exports that were killed
    # In eval mode itself: the exporter puts the module back in the mode it found it in, and a new
    # wrapper's training mode would then switch the model's dropout on (seen: 2e-2 differences).
    exported = Probabilities(model).eval()
    example = random_batch(model.hparams.vocab_size, [5, 3], sep_id=model.hparams.get("sep_id"))
    card, old = Path(ckpt_path).resolve().parent.parent / CARD, None
    has_card = card.is_file()  # a run killed before its end has none
    try:
        with atomic_write(target, fix="name a folder on another disk", replace=False) as partial:
            partial.mkdir()
            with warnings.catch_warnings():
                # The TorchScript exporter is deprecated in favour of torch.export, which fails here (above).
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*legacy TorchScript")
                # About initial states fixed at the example's batch size: ours are made from the input's
                # shape, and the parity check below runs other batch sizes.
                warnings.filterwarnings("ignore", message=r".*batch_size other than 1")
                # Size checks inside torch.nn's RNNs, and `last` pooling's index (lengths - 1, never negative).
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=r".*If indices include negative values")
                torch.onnx.export(exported, example, str(partial / "model.onnx"), dynamo=False,
                                  input_names=["input_ids", "lengths"], output_names=["probabilities", "logits"],
                                  dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                                                "probabilities": {0: "batch"}, "logits": {0: "batch"}},
                                  opset_version=OPSET)
            tokenizer.save(str(partial / "tokenizer.json"))
            (partial / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n")
            (partial / TASK_FILE).write_text(json.dumps(task, ensure_ascii=False, indent=1) + "\n")
            if has_card:  # the run's card, and what this folder is (its Files section speaks of the run's)
                (partial / CARD).write_text(card.read_text(encoding="utf-8") + EXPORTED.format(ckpt=ckpt_path),
                                            encoding="utf-8")
            difference = parity(exported, partial)
            if overwrite and target.is_dir() and any(target.iterdir()):  # checked above: an export
                target.rename(old := partial_path(target))  # moved aside, then removed once replaced
    except Taken:
        raise UserError(f"--output {output} was filled by another process meanwhile; fix: name another folder") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    what = "pairs" if model.hparams.get("sep_id") is not None else "texts"
    print(f"Exported {ckpt_path} to {target}/ ({', '.join(FILES)}, {TASK_FILE}{', ' + CARD if has_card else ''}); "
          f"ONNX Runtime vs PyTorch on 64 random {what} of 1-400 tokens: largest probability difference "
          f"{difference:.1e}.")
    if not has_card:
        print(f"No {CARD} beside the checkpoint (its run did not finish): the folder has none.")


def parity(exported: Probabilities, folder: Path) -> float:
    """The largest difference in a probability between the exported model on ONNX Runtime and
    PyTorch, over random texts of many lengths in one batch; refused above ``TOLERANCE``."""
    lengths = np.random.default_rng(0).integers(1, 401, 64).tolist()
    ids, lengths_t = random_batch(exported.model.hparams.vocab_size, lengths, sep_id=exported.model.hparams.get("sep_id"))
    with torch.no_grad():
        expected = exported(ids, lengths_t)[0].numpy()
    got = session(folder / "model.onnx", "cpu").run(["probabilities"], {"input_ids": ids.numpy(),
                                                                          "lengths": lengths_t.numpy()})[0]
    difference = float(np.abs(got - expected).max())
    if not difference <= TOLERANCE:
        raise UserError(f"the exported model's probabilities differ from PyTorch's by {difference:.1e} (more than "
                        f"{TOLERANCE}); fix: none here: please report it with the checkpoint's settings")
    return difference


def add_arguments(parser: ArgumentParser) -> None:
    """``export``'s flags, on its subcommand parser (cli.py)."""
    parser.add_function_arguments(export, fail_untyped=True, skip={"overwrite"})
    parser.add_argument("--overwrite", action=ActionYesNo(), nargs="?", help="Replace an existing export folder.")


def run(config: dict) -> None:
    export(**{k: v for k, v in config.items() if k != "config"})
