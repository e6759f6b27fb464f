"""Per validation and per test, in TensorBoard: the confusion matrix (Images), per-class
precision / recall / F1 with support, and the most confident mistakes as the source wrote them,
beside what the model read: the words it did not know marked ⟨so⟩ and where it stopped reading
(Text). Tags ``f"{split}/..."`` (tags.py), at the step of that epoch's scalars. The per-class
rows also go into the run's record (record.py), for the model card."""

import functools
import html
import re
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from tokenizers import Tokenizer
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelStatScores,
)

from project import tags
from project.compat import logged_step
from project.data.tokenization import UNK
from project.errors import UserError
from project.training.record import RunRecord, record_of

SHOWN_CHARS = 600  # of a mistake's text: a table of whole articles cannot be read at a glance
SPLITS = {"val": "validation", "test": "test"}  # metric prefix -> the DataModule's split


class ValidationReport(Callback):
    def __init__(self, misclassified: int = 10) -> None:
        """
        Args:
            misclassified: Mistakes shown as text per validation and test, the most confident
                first; 0 shows none.
        """
        if isinstance(misclassified, bool) or not isinstance(misclassified, int) or misclassified < 0:
            raise UserError(f"--validation_report.misclassified is {misclassified}; fix: a whole number, 0 or more")
        self.misclassified = misclassified
        self.record = RunRecord()  # the Trainer's, from setup on

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.record = record_of(trainer)
        n = len(pl_module.hparams.label_names)
        self.multi_label = bool(pl_module.hparams.get("multi_label"))
        # Every rank keeps its counts; compute() sums them across ranks. Multi-label: per label
        # at its own threshold, and the label-by-label grid in place of the confusion matrix.
        self.report = MetricCollection(
            {
                "confusion": LabelGrid(n),
                "stats": MultilabelStatScores(n, average=None),
                "precision": MultilabelPrecision(n, average=None),
                "recall": MultilabelRecall(n, average=None),
                "f1": MultilabelF1Score(n, average=None),
            } if self.multi_label else {
                "confusion": MulticlassConfusionMatrix(n),
                "precision": MulticlassPrecision(n, average=None),
                "recall": MulticlassRecall(n, average=None),
                "f1": MulticlassF1Score(n, average=None),
            }
        ).to(pl_module.device)
        self.mistakes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def _update(self, trainer: L.Trainer, logits: torch.Tensor, batch: dict) -> None:
        labels = batch["labels"]
        if self.multi_label:  # each label at its threshold, as the model's own metrics count them
            predicted, labels = trainer.lightning_module.given_labels(logits), labels.long()
            self.report.update(predicted, labels)
        else:
            self.report.update(logits, labels)  # in the sanity check too: its first call is slow
        if self.misclassified == 0 or trainer.sanity_checking or "rows" not in batch:
            return
        wrong = (predicted != labels).any(-1) if self.multi_label else logits.argmax(-1) != labels
        wrong = wrong.nonzero().flatten()
        # One copy to the host per batch, not one per mistake; ranked at the validation's end
        # (on_validation_end), once calibration.py has fitted this validation's temperature (at
        # on_validation_epoch_end): whichever of the two callbacks is registered first.
        self.mistakes.append((batch["rows"][wrong].cpu(), logits[wrong].detach().float().cpu(), labels[wrong].cpu()))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(trainer, outputs, batch)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(trainer, outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            self.report.reset()
            return
        self.record.val_per_class = self._report(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record.test_per_class = self._report(trainer, pl_module, "test")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show_mistakes(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show_mistakes(trainer, pl_module, "test")

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> list[dict[str, Any]]:
        """The split's per-class rows (kept whatever the logger); the confusion matrix and the
        rows' table in TensorBoard."""
        values = self.report.compute()  # on every rank: it is a collective under DDP
        self.report.reset()
        names = pl_module.hparams.label_names
        rows = per_class(values, names)
        if not isinstance(trainer.logger, TensorBoardLogger) or not trainer.is_global_zero:
            return rows
        writer, step = trainer.logger.experiment, logged_step(trainer)
        title = (f"{SPLITS[prefix]}: rows are a true label, columns a predicted one" if self.multi_label else
                 f"{SPLITS[prefix]}: rows are the true class")
        writer.add_figure(f"{prefix}/{tags.CONFUSION_MATRIX}", confusion_figure(values["confusion"], names, title), step)
        writer.add_text(f"{prefix}/{tags.PER_CLASS}", per_class_table(with_figure_ids(rows)), step)
        return rows

    def _show_mistakes(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> None:
        mistakes, self.mistakes = self.mistakes, []
        data, names = trainer.datamodule, pl_module.hparams.label_names
        if not isinstance(trainer.logger, TensorBoardLogger) or not trainer.is_global_zero:
            return
        if mistakes and hasattr(data, "texts") and self.multi_label:
            table = self._label_mistakes(mistakes, pl_module.thresholds.cpu(), names, data, SPLITS[prefix])
            trainer.logger.experiment.add_text(f"{prefix}/{tags.MISCLASSIFIED}", table, logged_step(trainer))
        elif mistakes and hasattr(data, "texts"):
            table = self._mistakes(mistakes, getattr(pl_module, "temperature", 1.0), names, data, SPLITS[prefix])
            trainer.logger.experiment.add_text(f"{prefix}/{tags.MISCLASSIFIED}", table, logged_step(trainer))

    def _mistakes(self, mistakes: list, temperature: Any, names: list[str], data: Any, split: str) -> str:
        rows, logits, labels = (torch.cat(part) for part in zip(*mistakes))
        confidence, predicted = (logits / torch.as_tensor(temperature).cpu()).softmax(-1).max(-1)
        top = confidence.argsort(descending=True)[: self.misclassified].tolist()
        texts = data.texts(split, rows[top].tolist())
        head = " | ".join(cell(name, keep=True) for name in ("p", "true", "predicted"))
        lines = [f"| {head} | text | as the model read it: ⟨unknown words⟩, ✂ where it stopped |", "|---|---|---|---|---|"]
        for i, text in zip(top, texts):
            lines.append(f"| {cell(f'{confidence[i]:.2f}', keep=True)} | {cell(names[labels[i]], keep=True)} | "
                         f"{cell(names[predicted[i]], keep=True)} | {cell(shorten(text))} | "
                         f"{cell(as_read(data.tokenizer, text))} |")
        return "\n".join(lines)


    def _label_mistakes(self, mistakes: list, thresholds: torch.Tensor, names: list[str], data: Any, split: str) -> str:
        """Multi-label: the texts whose label set was wrong, the surest wrong call first (the
        largest gap between a label's probability and its truth), with the labels missed and the
        labels added."""
        rows, logits, labels = (torch.cat(part) for part in zip(*mistakes))
        probabilities = logits.sigmoid()
        worst = (probabilities - labels.float()).abs().max(-1).values
        top = worst.argsort(descending=True)[: self.misclassified].tolist()
        texts = data.texts(split, rows[top].tolist())
        predicted = probabilities >= thresholds

        def listed(mask: torch.Tensor) -> str:
            return ", ".join(names[j] for j in mask.nonzero().flatten().tolist()) or "(none)"

        head = " | ".join(cell(name, keep=True) for name in ("worst p", "true", "predicted", "missing", "extra"))
        lines = [f"| {head} | text | as the model read it: ⟨unknown words⟩, ✂ where it stopped |",
                 "|---|---|---|---|---|---|---|"]
        for i, text in zip(top, texts):
            truth = labels[i].bool()
            lines.append(f"| {cell(f'{worst[i]:.2f}', keep=True)} | {cell(listed(truth), keep=True)} | "
                         f"{cell(listed(predicted[i]), keep=True)} | {cell(listed(truth & ~predicted[i]), keep=True)} | "
                         f"{cell(listed(predicted[i] & ~truth), keep=True)} | {cell(shorten(text))} | "
                         f"{cell(as_read(data.tokenizer, text))} |")
        return "\n".join(lines)


class LabelGrid(Metric):
    """Multi-label: how many texts of true label i were given label j (each text counts in every
    pair of its true and predicted labels; the diagonal is each label's true positives): the
    confusion matrix's place for texts of several labels, which torchmetrics has no metric for.
    Summed over DDP ranks as torchmetrics' confusion matrix is."""

    full_state_update = False

    def __init__(self, labels: int) -> None:
        super().__init__()
        self.add_state("grid", torch.zeros(labels, labels, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, labels: torch.Tensor) -> None:
        self.grid += labels.T.long() @ predicted.long()

    def compute(self) -> torch.Tensor:
        return self.grid


def per_class(values: dict[str, torch.Tensor], names: list[str]) -> list[dict[str, Any]]:
    """One row per class, in label-id order: precision, recall, F1 and support (its true count),
    from the report's computed metrics (``confusion``, ``precision``, ``recall``, ``f1``; a
    multi-label grid counts its row's text once per predicted label: its support is its own)."""
    # Multi-label: a label's true count is its stat scores' support (a grid row counts a text once per predicted label).
    support = values["stats"][:, 4] if "stats" in values else values["confusion"].sum(1)
    columns = zip(names, *(values[k].tolist() for k in ("precision", "recall", "f1")), support.tolist())
    return [{"class": n, "precision": p, "recall": r, "f1": f, "support": int(s)} for n, p, r, f, s in columns]


def per_class_table(rows: list[dict[str, Any]], keep: bool = True) -> str:
    """``rows`` of ``per_class`` as a Markdown table; ``keep``: class names unbroken (TensorBoard, see ``cell``)."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {cell(r['class'], keep)} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
              for r in rows]
    return "\n".join(lines)


def as_read(tokenizer: Tokenizer, text: str) -> str:
    """``text`` with each token the vocabulary lacks marked ⟨so⟩ (the model saw [UNK] there), cut
    where truncation (``--data.max_length``) stopped the model reading, with what was not read."""
    encoding, unknown = tokenizer.encode(text), tokenizer.token_to_id(UNK)
    pieces, at = [], 0
    for token, (start, end) in zip(encoding.ids, encoding.offsets):
        if token == unknown and end > start:
            if pieces and start == at:  # right after the last unknown one: one mark for both
                pieces[-1:] = [text[start:end], "⟩"]
            else:
                pieces += [text[at:start], "⟨", text[start:end], "⟩"]
            at = end
    read_to = encoding.offsets[-1][1] if encoding.overflowing and encoding.offsets else len(text)
    if not pieces and read_to == len(text):
        return "= text (every word known)"  # a second copy would only hide the rows that differ
    marked = shorten("".join(pieces) + text[at:read_to])
    return marked + (f" ✂ read {read_to:,} of {len(text):,} characters" if read_to < len(text) else "")


def shorten(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}… (+{len(text) - SHOWN_CHARS:,} characters)"


def cell(text: str, keep: bool = False) -> str:
    """``text`` as one Markdown table cell that TensorBoard shows verbatim: on one line, HTML and
    Markdown characters escaped. ``keep``: a short cell (a class name, a probability) that must
    not wrap: TensorBoard's tables break words anywhere (``word-break: break-word``), so beside a
    long text a class name came out a letter per line; ``<pre>`` is the one unbreakable element
    its Markdown sanitiser lets through (checked in Chromium: tests/test_browser.py)."""
    text = re.sub(r"[\r\n\t]+", " ", text)
    text = re.sub(r"([\\`*_\[\]#|~])", r"\\\1", html.escape(text, quote=False))
    return f"<pre>{text}</pre>" if keep else text


@functools.cache
def _font() -> Any:
    """The font the figures draw text with (matplotlib's default sans-serif, found once)."""
    from matplotlib import font_manager  # noqa: PLC0415 - with the figures, not at import

    return font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))


def drawable(names: list[str]) -> list[str]:
    """Class names as the figure can draw them: one with a character its font lacks (CJK, emoji
    on most machines) is shown by its label id, "#2", instead of as boxes and one matplotlib
    warning per character (2026-12-05 trial, row 100); the text tables show every name as written,
    the per-class table with that id before it (``with_figure_ids``)."""
    font = _font()
    return [name if all(c.isspace() or font.get_char_index(ord(c)) for c in name) else f"#{i}"
            for i, name in enumerate(names)]


def with_figure_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``per_class`` rows whose class the figure shows by its id named "#2 料理", so that the table
    beside the figure says which id is which."""
    shown = drawable([row["class"] for row in rows])
    return [row if row["class"] == as_drawn else {**row, "class": f"{as_drawn} {row['class']}"}
            for row, as_drawn in zip(rows, shown)]


def confusion_figure(counts: torch.Tensor, names: list[str], title: str) -> Figure:
    """Colours: each row's share (row-normalised, so a rare class reads as clearly as a common
    one), with a colour bar; numbers: the counts, where a cell has room for them. TensorBoard
    shows an image at most ~330 px wide, so the figure is drawn at about that width with 7 pt
    names (class names cut at 16 characters): up to 20 classes stay legible without zooming,
    and the image grows downwards, not wider, with the class count."""
    counts = counts.cpu().numpy()
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n, dpi = len(names), 100
    font = 9 if n <= 6 else 8 if n <= 12 else 7
    short = [name if len(name) <= 16 else name[:15] + "…" for name in drawable(names)]
    label_in = 0.3 + 0.0079 * font * max(len(name) for name in short)  # the widest name
    cell_in = (3.4 - label_in - 0.2) / n  # always 340 px wide: a smaller image is blown up, blurred
    figure = Figure(figsize=(label_in + n * cell_in + 0.2, 0.9 + n * cell_in + label_in), layout="constrained", dpi=dpi)
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    bar = figure.colorbar(image, ax=axes, orientation="horizontal", location="top", fraction=0.04, pad=0.02)
    figure.suptitle(title, fontsize=8)  # over the whole width: the bar is as narrow as the matrix
    bar.set_label("colour: share of the row", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    axes.set_xticks(range(n), short, rotation=90, fontsize=font)
    axes.set_yticks(range(n), short, fontsize=font)
    axes.set_xlabel("predicted", fontsize=font)
    axes.set_ylabel("true", fontsize=font)
    cell_px, digits = cell_in * dpi, len(str(counts.max()))
    number = min(font + 1.0, cell_px / (0.62 * max(digits, 2)) * 72 / dpi)  # the widest count fits its cell
    if number >= 4.5:  # smaller cannot be read at the size TensorBoard shows
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=number,
                              color="white" if share[i, j] > 0.6 else "black")
    return figure
