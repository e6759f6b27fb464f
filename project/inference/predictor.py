"""The Python API: a trained checkpoint labelling lists of texts, for notebooks and services.

    from project import Predictor
    predictor = Predictor.from_checkpoint("lightning_logs/bbc_news-lstm-version_0/checkpoints/last.ckpt", device="cpu")
    predictor.predict(["Shares rose after the merger.", ""])
    # [{"text": ..., "label": "business", "probabilities": {"business": 0.93, ...}, "blank": False,
    #   "tokens": 5, "unknown_tokens": 0, "truncated": False},
    #  {"text": "", "label": None, "probabilities": None, "blank": True, "tokens": 0, ...}]

The checkpoint alone is enough (it carries the tokenizer, the label names and the model's
settings). ``python -m project predict`` wraps this class, so both give the same figures; a
folder written by ``python -m project export`` labels the same way on ONNX Runtime
(``OnnxPredictor.from_folder``, onnx_predictor.py), through the same ``Labeller`` steps.
"""

import logging
import warnings
from functools import partial

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from project.data.batching import pad_batch
from project.data.padding import pad_id
from project.errors import UserError
from project.inference.labeller import MULTI_LABEL_KIND, SINGLE_TEXT, Labeller
from project.model.checkpoint_format import DATAMODULE_KEY, read_checkpoint
from project.model.classifier import TextClassifier


def _trainer(device: str, precision: str) -> L.Trainer:
    """Lightning's Trainer on one device: ``cpu``, ``cuda`` / ``gpu``, ``cuda:1``, ``mps``, ``auto``."""
    accelerator, _, index = device.partition(":")
    if index and not index.isdigit():  # checked here: int()'s message named neither the device nor the fix
        raise UserError(f"device {device!r}: {index!r} is not a device index; fix: e.g. '{accelerator}:0', or "
                        f"'{accelerator}' for the first")
    # Lightning says which devices it found (and advertises a logger) on stderr: noise between a
    # predict command and its output, or in a service's log at every start.
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        devices = [int(index)] if index else 1
        return L.Trainer(accelerator=accelerator, devices=devices, precision=precision, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
    except (MisconfigurationException, ValueError, TypeError, ImportError, RuntimeError) as error:  # none here, or no such name
        raise UserError(f"device {device!r}, precision {precision!r}: {' '.join(str(error).split())}; fix: a device "
                        f"this machine has and a precision it runs (predict --accelerator cpu or auto, --precision "
                        f"32-true; in Python device='cpu', 'cuda:0' or 'auto')") from None
    finally:
        lightning_log.setLevel(level)


def load_checkpoint(path: str, calibrated: bool = True) -> tuple[TextClassifier, Tokenizer, dict]:
    """The model (in eval mode), tokenizer and task (labeller.py's ``SINGLE_TEXT`` keys: what one input
    is, and whether a text gets one label or several) of a ``.ckpt`` written by ``python -m project fit``,
    from one (memory-mapped) read of the file. The model is built from its saved arguments rather
    than by ``load_from_checkpoint``, which reads the file again and rebuilds the model through the
    CLI's jsonargparse instantiator: 0.1 s, a fifteenth of labelling 18k sentences.

    ``calibrated``: keep the temperature fitted on validation (calibration.py); False: T = 1."""
    saved = read_checkpoint(path)
    if DATAMODULE_KEY not in saved:
        raise UserError(f"{path}: a language model's checkpoint (pretrain's), not a classifier's; fix: train a "
                        f"classifier from it (fit --model.init_from {path}) and pass that one")
    model = TextClassifier(**{k: v for k, v in saved["hyper_parameters"].items() if not k.startswith("_")})
    model.load_state_dict(saved["state_dict"])
    model.calibration_note = saved.get("calibration_note")  # why T is 1, where fit kept it so
    if not calibrated:
        model.temperature.fill_(1.0)
    data, multi = saved[DATAMODULE_KEY], bool(model.hparams.get("multi_label"))
    task = {**SINGLE_TEXT, **{k: data[k] for k in ("text_columns", "text_separator") if k in data},
            "multi_label": multi, "thresholds": model.thresholds.tolist() if multi else None}
    return model.eval(), Tokenizer.from_str(data["tokenizer"]), task


class Predictor(Labeller):
    """A model in eval mode, its tokenizer, and a Trainer on one device that runs its batches."""

    def __init__(self, model: TextClassifier, tokenizer: Tokenizer, device: str = "auto",
                 precision: str = "32-true", batch_size: int = 256) -> None:
        """
        Args:
            model: A trained ``TextClassifier``; its probabilities are softmax(logits / its
                ``temperature``): ``model.temperature.fill_(1.0)`` for the raw ones.
            tokenizer: The tokenizer it was trained with.
            device: ``auto``, ``cpu``, ``cuda`` (or ``gpu``), ``cuda:N`` for the N-th GPU, ``mps``.
            precision: Lightning precision: ``32-true``, ``bf16-mixed``, ``16-mixed`` ...
            batch_size: Texts per forward pass (batches hold texts of similar length).
        """
        if batch_size < 1:
            raise UserError(f"batch_size is {batch_size}; fix: 1 or more")
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.label_names: list[str] = list(model.hparams.label_names)
        self.trainer = _trainer(device, precision)

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "auto", precision: str = "32-true",
                        batch_size: int = 256, calibrated: bool = True) -> "Predictor":
        """The model and tokenizer of a ``.ckpt`` written by ``python -m project fit``.

        ``calibrated``: divide the logits by the temperature fitted on validation (stored in the
        checkpoint; calibration.py) before the softmax; False: the model's raw probabilities
        (T = 1). Either way the labels are the same: only the probabilities change."""
        model, tokenizer, task = load_checkpoint(path, calibrated)
        predictor = cls(model, tokenizer, device=device, precision=precision, batch_size=batch_size)
        predictor.take_task(task)
        t = model.temperature.item()
        predictor.probabilities_kind = (
            MULTI_LABEL_KIND if task["multi_label"] else
            "raw probabilities (--calibrated false)" if not calibrated else
            f"the model's own probabilities (T = 1: {model.calibration_note})" if model.calibration_note else
            f"probabilities temperature-scaled with T = {t:.4g}, fitted on validation (--calibrated false: the raw ones)")
        return predictor

    def _run(self, batches: list[pa.Table]) -> np.ndarray:
        loader = DataLoader(batches, batch_size=None, collate_fn=partial(pad_batch, pad_id=pad_id(self.tokenizer)),
                            pin_memory=self.trainer.strategy.root_device.type == "cuda")  # async copies
        with warnings.catch_warnings():  # said by Lightning 2.6 with torch >= 2.10 at every call: not the caller's
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            return torch.cat(self.trainer.predict(self.model, loader)).float().cpu().numpy()  # bf16: float first
