"""A folder written by ``python -m project export`` labelling texts on ONNX Runtime:

    from project.inference.onnx_predictor import OnnxPredictor
    OnnxPredictor.from_folder("exports/bbc").predict(["Shares rose after the merger."])

Same steps as the checkpoint's ``Predictor`` (labeller.py's ``Labeller``: the same tokenizer,
batches of similar length, the same output), so ``predict --model DIR`` and ``predict
--ckpt_path X`` write the same lines; only the batches run on ONNX Runtime instead of PyTorch,
and nothing here imports torch or Lightning (``serve --model`` starts in about a second).
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
from tokenizers import Tokenizer

from project.data.padding import pad_id, pad_ids
from project.errors import UserError
from project.inference.labeller import MULTI_LABEL_KIND, SINGLE_TEXT, Labeller

FILES = ("model.onnx", "tokenizer.json", "labels.json")  # what export writes (and a model card)
TASK_FILE = "task.json"  # and this: labeller.py's SINGLE_TEXT keys; absent in exports from before pairs and multi-label
FIX = "fix: pass a folder written by `python -m project export --ckpt_path X --output DIR`"


def session(path: Path, device: str = "cpu") -> ort.InferenceSession:
    """An ONNX Runtime session on ``device``: ``cpu``, ``cuda`` / ``gpu``, ``cuda:N``, or ``auto``
    (CUDA when this onnxruntime build has it, else the CPU)."""
    kind, _, index = device.partition(":")
    available = ort.get_available_providers()
    if kind in ("cuda", "gpu") and "CUDAExecutionProvider" not in available:
        raise UserError(f"device {device!r}: this onnxruntime has no CUDA ({', '.join(available)}); fix: "
                        f"--accelerator cpu, or pip install onnxruntime-gpu")
    if kind not in ("cpu", "cuda", "gpu", "auto"):
        raise UserError(f"device {device!r}: an exported model runs on cpu or cuda; fix: --accelerator cpu, gpu or auto")
    cuda = kind != "cpu" and "CUDAExecutionProvider" in available
    providers = [("CUDAExecutionProvider", {"device_id": int(index or 0)})] if cuda else []
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    try:
        return ort.InferenceSession(str(path), options, providers=[*providers, "CPUExecutionProvider"])
    except Exception as error:  # a truncated or foreign file: onnxruntime's own exception types
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path}: not a readable ONNX model ({first[:200]}); {FIX}") from None


class OnnxPredictor(Labeller):
    """An exported model's ONNX Runtime session, its tokenizer and label names."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, label_names: list[str],
                 batch_size: int = 256, calibrated: bool = True) -> None:
        """
        Args:
            session: An ONNX Runtime session of an exported ``model.onnx``.
            tokenizer: The tokenizer the model was trained with.
            label_names: The class names, in the order of the model's outputs.
            batch_size: Texts per forward pass (batches hold texts of similar length).
            calibrated: The temperature-scaled probabilities (as the checkpoint's default);
                False: the softmax of the raw logits.
        """
        if batch_size < 1:
            raise UserError(f"batch_size is {batch_size}; fix: 1 or more")
        self.session, self.tokenizer, self.label_names = session, tokenizer, list(label_names)
        self.batch_size, self.output = batch_size, "probabilities" if calibrated else "logits"
        self.probabilities_kind = ("probabilities as exported (the run's temperature; --calibrated false: the raw "
                                   "ones)" if calibrated else "raw probabilities (--calibrated false)")
        self.pad_id = pad_id(tokenizer)

    @classmethod
    def from_folder(cls, folder: str, device: str = "cpu", batch_size: int = 256,
                    calibrated: bool = True) -> "OnnxPredictor":
        """The model, tokenizer and labels of an ``export`` folder, each checked as it is read."""
        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"--model {folder}: {'not a folder' if path.exists() else 'no such folder'}; {FIX}")
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise UserError(f"--model {folder} has no {', '.join(missing)}; {FIX}")
        try:
            labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            found = (path / TASK_FILE).is_file()
            task = json.loads((path / TASK_FILE).read_text(encoding="utf-8")) if found else {}
            task = {**SINGLE_TEXT, **task}
        except Exception as error:  # json's, tokenizers' (a bare Exception) or a decoding error
            raise UserError(f"--model {folder}: labels.json, tokenizer.json or {TASK_FILE} unreadable "
                            f"({' '.join(str(error).split())[:200]}); {FIX}") from None
        columns, thresholds = task["text_columns"], task["thresholds"]
        if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)
                and isinstance(task["text_separator"], str) and isinstance(task["multi_label"], bool)
                and (not task["multi_label"] or isinstance(thresholds, list) and len(thresholds) == len(labels)
                     and all(isinstance(t, int | float) for t in thresholds))):
            raise UserError(f"--model {folder}: {TASK_FILE} does not say its text columns, separator and (multi-label) "
                            f"a threshold per label; {FIX}")
        if not (isinstance(labels, list) and labels and all(isinstance(name, str) for name in labels)):
            raise UserError(f"--model {folder}: labels.json is not a list of class names; {FIX}")
        model = session(path / "model.onnx", device)
        outputs = {o.name: o.shape for o in model.get_outputs()}
        if {i.name for i in model.get_inputs()} != {"input_ids", "lengths"} or outputs.get("probabilities", [0, 0])[1:] != [len(labels)]:
            raise UserError(f"--model {folder}: model.onnx does not take input_ids and lengths and give the "
                            f"probabilities of the {len(labels)} classes of labels.json; {FIX}")
        predictor = cls(model, tokenizer, labels, batch_size=batch_size, calibrated=calibrated)
        predictor.take_task(task)
        if predictor.multi_label:
            predictor.probabilities_kind = MULTI_LABEL_KIND
        return predictor

    def _run(self, batches: list[pa.Table]) -> np.ndarray:
        out = []
        for table in batches:
            input_ids, lengths = pad_ids(table.column("input_ids"), self.pad_id)
            out.append(self.session.run([self.output], {"input_ids": input_ids, "lengths": lengths})[0])
        result = np.concatenate(out)
        if self.output == "probabilities":
            return result
        if self.multi_label:  # --calibrated false: the same sigmoids (a multi-label model has no temperature)
            return 1 / (1 + np.exp(-result))
        shifted = np.exp(result - result.max(-1, keepdims=True))  # the softmax of the raw logits
        return shifted / shifted.sum(-1, keepdims=True)
