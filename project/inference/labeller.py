"""What every predictor does the same way (``Labeller``: tokenize, batch texts of similar length,
put the probabilities back in input order, word the result), and ``load``, the predictor that
``predict`` and ``serve`` use for ``--ckpt_path`` or ``--model``.

numpy, Arrow and tokenizers only: an exported model (``OnnxPredictor``) runs without importing
PyTorch or Lightning, so ``serve --model`` answers within a second or two of its start instead of
the ~5 s those two take to import. A checkpoint's ``Predictor`` imports them when it is chosen."""

import functools
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from project.data.padding import SEP, length_sorted_batches, unk_id
from project.errors import UserError

# What a model's task is (take_task), as a checkpoint or an export's task.json gives it: these,
# for one made before pairs and multi-label data (one text, one label).
SINGLE_TEXT = {"text_columns": ["text"], "text_separator": " ", "multi_label": False, "thresholds": None}
# How predict and serve name a multi-label model's probabilities.
MULTI_LABEL_KIND = ("each label's own probability (sigmoid, not temperature-scaled); a text gets every label whose "
                    "probability reaches its threshold, tuned on validation")

# Texts per tokenizer call: the Encoding objects it returns weigh ~2 KB each (130 MB for 65k
# texts); ids are taken from each call's before the next, so they are freed as it goes.
ENCODE = 8_192


class Labeller:
    """Texts in, class probabilities and labelled dicts out. A subclass runs the batches
    (``Predictor``: PyTorch through Lightning; ``OnnxPredictor``: an exported model on ONNX Runtime)."""

    # Which probabilities it gives, in words (predict and serve say it): set where it is loaded.
    probabilities_kind = "probabilities"

    label_names: list[str]
    tokenizer: Tokenizer
    batch_size: int
    # The task, set where the model is loaded (take_task) from what fit saved: the data's text
    # columns, joined by the separator into what the model reads (two are a pair: each input is
    # then (first, second)); multi-label: a text gets each label whose probability reaches its threshold.
    text_columns: tuple[str, ...] = ("text",)
    text_separator: str = " "
    multi_label: bool = False
    thresholds: np.ndarray | None = None

    def take_task(self, task: dict) -> None:
        """Set the task from its ``SINGLE_TEXT`` keys (a checkpoint's, or an export's task.json)."""
        self.text_columns, self.text_separator = tuple(task["text_columns"]), task["text_separator"]
        self.multi_label = bool(task.get("multi_label"))
        self.thresholds = np.asarray(task["thresholds"], dtype=np.float32) if self.multi_label else None

    @property
    def reads_pairs(self) -> bool:
        """Each input is several texts (a pair: question and answer ...), not one."""
        return len(self.text_columns) > 1

    @functools.cached_property
    def unk_id(self) -> int:
        """The tokenizer's unknown-word id (-1, which no token has, when it has none)."""
        found = unk_id(self.tokenizer)
        return -1 if found is None else found

    def _run(self, batches: list[pa.Table]) -> np.ndarray:
        """The class probabilities (float32) of every row of ``batches``, in order."""
        raise NotImplementedError

    def inputs(self, items: list, where: str = "texts") -> list:
        """What the tokenizer reads of each item: the text itself; a pair ``(first, second)``,
        read as ``first [SEP] second`` (every text blank: a blank item); three or more texts
        joined by the separator, as in training. Anything else, a pair with one side blank and
        a pair's text holding ``[SEP]`` are refused in one line naming the item (``where``: how
        the caller calls the list)."""
        if not self.reads_pairs:
            if bad := next(((i, t) for i, t in enumerate(items) if not isinstance(t, str)), None):
                i, item = bad
                fix = "decode it first, e.g. text.decode('utf-8')" if isinstance(item, bytes | bytearray) else \
                    "pass strings only (str(x) where a number is meant as text)"
                raise UserError(f"{where}[{i}] is {'None' if item is None else type(item).__name__}, not a string; "
                                f"fix: {fix}")
            return items
        n, names = len(self.text_columns), ", ".join(self.text_columns)
        fix = f"fix: give {n} texts per item ({names}), e.g. [[\"<{self.text_columns[0]}>\", \"<{self.text_columns[1]}>\"]]"
        out = []
        for i, item in enumerate(items):
            if isinstance(item, str | bytes) or not isinstance(item, list | tuple | np.ndarray):
                raise UserError(f"{where}[{i}] is {'None' if item is None else type(item).__name__}, not a pair: this "
                                f"model reads {n} texts at a time ({names}); {fix}")
            if len(item) != n:
                raise UserError(f"{where}[{i}] holds {len(item)} texts, not {n} ({names}); {fix}")
            for j, part in enumerate(item):
                if not isinstance(part, str):
                    what = "missing (None)" if part is None else f"{type(part).__name__}, not a string"
                    raise UserError(f"{where}[{i}][{j}] ({self.text_columns[j]}) is {what}; {fix}")
            if (blank := one_sided(item)) is not None:
                raise UserError(f"{where}[{i}] has an empty {self.text_columns[blank]}, and the model reads "
                                f"{n} texts at a time; {fix} (all of them empty: a blank item)")
            if n == 2 and (j := next((j for j, part in enumerate(item) if SEP in part), None)) is not None:
                raise UserError(f"{where}[{i}][{j}] ({self.text_columns[j]}) holds {SEP}, the token that separates "
                                f"the pair's texts; fix: remove it from the text")
            out.append(tuple(item) if n == 2 else self.text_separator.join(item))
        return out

    def probabilities(self, texts: list) -> "Read":
        """What the model read of each input (a text, or a pair as ``inputs`` gives it) and the
        class probabilities it gave, in input order."""
        limit = (self.tokenizer.truncation or {}).get("max_length", 0)
        # Rust calls of ENCODE texts straight into Arrow; blank texts become empty rows.
        # (A Dataset.map here added 10% to the whole predict time.)
        ids, truncated = [], []
        for start in range(0, len(texts), ENCODE):
            part = texts[start : start + ENCODE]
            for text, encoding in zip(part, self.tokenizer.encode_batch_fast(part)):
                blank = not text.strip() if isinstance(text, str) else not any(t.strip() for t in text)
                row = [] if blank else encoding.ids
                ids.append(row)
                truncated.append(len(row) == limit and bool(encoding.overflowing))
        column = pa.array(ids, pa.list_(pa.int32()))
        order, batches = length_sorted_batches(column, self.batch_size)
        probabilities = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        labelled = np.zeros(len(texts), dtype=bool)
        if len(order):
            probabilities[order] = self._run(batches)
            labelled[order] = True
        # [UNK] per text: a running count over all ids, differenced at each text's offsets.
        offsets = column.offsets.to_numpy()
        unknown = np.concatenate([[0], np.cumsum(column.values.to_numpy() == self.unk_id)])
        return Read(labelled.tolist(), probabilities, np.diff(offsets).tolist(),
                    (unknown[offsets[1:]] - unknown[offsets[:-1]]).tolist(), truncated)

    def given(self, probabilities: np.ndarray) -> list[list[int]]:
        """Multi-label: each text's labels, those whose probability reaches their threshold, most
        probable first; a model of one label per text: none (its label is the argmax)."""
        if not self.multi_label:
            return [[] for _ in probabilities]
        order = np.argsort(-probabilities, axis=-1, kind="stable")
        reached = np.take_along_axis(probabilities >= self.thresholds, order, axis=-1)
        return [row[hit].tolist() for row, hit in zip(order, reached)]

    def check_top_k(self, top_k: int | None) -> None:
        """Refuse a ``top_k`` of fewer than 1 or more than the model's classes, in one line."""
        if top_k is not None and not (isinstance(top_k, int) and not isinstance(top_k, bool)
                                      and 1 <= top_k <= len(self.label_names)):
            raise UserError(f"top_k is {top_k!r}, for a model of {len(self.label_names)} classes; fix: a whole "
                            f"number from 1 to {len(self.label_names)}")

    def predict(self, texts: Iterable[str], top_k: int | None = None) -> list[dict]:
        """One dict per text, in order, as in each line ``python -m project predict`` writes:
        ``text``, ``label`` (a multi-label model: ``labels``, the list of those whose probability
        reaches their threshold, most probable first), ``probabilities`` (class name ->
        probability; multi-label: each label's own), ``blank`` (a blank
        text, or one of no tokens: label and probabilities None), ``tokens`` (how many the model
        read), ``unknown_tokens`` (how many of those it does not know: a text of unknown words
        gets a label all the same, a guess) and ``truncated`` (cut at the tokenizer's max_length).
        ``texts``: any iterable of strings (a list, tuple, generator, numpy array, pandas Series:
        its values in order); for a model of text pairs, of pairs ``(first, second)``, and
        ``text`` is then the pair as a list. ``top_k``: also ``top_k``, the K most probable
        labels, best first, as ``[{"label", "probability"}, ...]`` (None for a blank text)."""
        self.check_top_k(top_k)
        if isinstance(texts, str | bytes):  # a lone string would be read as a list of characters
            raise UserError("predict takes a list of texts; fix: predict([text])")
        try:
            texts = list(texts)  # once: a generator can be read once only
        except TypeError:
            raise UserError(f"predict takes a list of texts (got {type(texts).__name__}); fix: predict([text, ...])") from None
        read, names = self.probabilities(self.inputs(texts)), self.label_names
        best = top_labels(read.probabilities, top_k or 1).tolist()
        given = self.given(read.probabilities)
        lines = []
        for text, keep, row, first, tokens, unknown, cut, chosen in zip(
                texts, read.labelled, read.probabilities, best, read.tokens, read.unknown_tokens, read.truncated, given):
            line = {"text": list(text) if self.reads_pairs else text}
            if self.multi_label:
                line["labels"] = [names[j] for j in chosen] if keep else None
            else:
                line["label"] = names[first[0]] if keep else None
            line.update(probabilities=dict(zip(names, row.tolist())) if keep else None, blank=not keep)
            if top_k:
                line["top_k"] = [{"label": names[i], "probability": float(row[i])} for i in first] if keep else None
            lines.append({**line, "tokens": tokens, "unknown_tokens": unknown, "truncated": cut})
        return lines


def one_sided(texts: "list[str] | tuple[str, ...]") -> int | None:
    """The first blank text of a pair whose other texts are not all blank (a pair with a side
    missing: the model never read one in training), else None."""
    blank = [not text.strip() for text in texts]
    return blank.index(True) if any(blank) and not all(blank) else None


def top_labels(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` most probable classes, best first (a tie: the class listed first)."""
    if k == 1:  # the label alone: argmax, not a sort of every class (500 classes x 1M texts)
        return probabilities.argmax(-1)[:, None]
    return np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]


class Read(NamedTuple):
    """What a predictor read of each text and gave for it, one entry per text in input order."""

    labelled: list[bool]  # not blank, and at least one token: the others have no label
    probabilities: np.ndarray  # (texts, classes) float32; a row of zeros where not labelled
    tokens: list[int]  # tokens the model read (after truncation)
    unknown_tokens: list[int]  # of those, words it does not know ([UNK]): its label is a guess
    truncated: list[bool]  # cut at the tokenizer's max_length: the rest was not read


def load(ckpt_path: str | None, model: str | None, accelerator: str = "auto", devices: int | list[int] = 1,
         precision: str = "32-true", batch_size: int = 256, calibrated: bool = True) -> Labeller:
    """The predictor of ``--ckpt_path`` (PyTorch) or ``--model`` (ONNX Runtime): predict's and serve's.
    Each kind's module is imported only when it is chosen (see the module's docstring)."""
    if (ckpt_path is None) == (model is None):
        raise UserError(f"{'one model, not two' if model else 'no model given'}; fix: --ckpt_path X.ckpt (PyTorch) "
                        f"or --model DIR (a folder written by export, on ONNX Runtime)")
    if devices != 1 and not (isinstance(devices, list) and len(devices) == 1):
        # Several devices would need the ranks' lines gathered back into input order; one GPU
        # labels SST-2's 67k sentences in seconds, so predict keeps to one.
        raise UserError(f"--devices {devices}: one device only; fix: --devices 1, or one index: --devices [1]")
    device = accelerator if devices == 1 else f"{accelerator}:{devices[0]}"
    if model is not None:
        if precision not in ("32-true", "32", 32):
            raise UserError(f"--precision {precision}: an exported --model runs in 32-true; fix: drop --precision, "
                            f"or use --ckpt_path for {precision}")
        from project.inference.onnx_predictor import OnnxPredictor  # noqa: PLC0415 - see the module's docstring

        return OnnxPredictor.from_folder(model, device=device, batch_size=batch_size, calibrated=calibrated)
    from project.inference.predictor import Predictor  # noqa: PLC0415 - torch and Lightning: only for a checkpoint

    return Predictor.from_checkpoint(ckpt_path, device=device, precision=precision, batch_size=batch_size,
                                     calibrated=calibrated)
