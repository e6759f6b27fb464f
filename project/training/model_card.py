"""``model_card.md`` per run, beside ``metrics.json`` and ``checkpoints/``: what the model is, what
it was trained on and how, how well it did (per class too), on what machine, and what it cannot
do, laid out as a Hugging Face model card (YAML metadata, then sections and tables).

Every figure is taken from the part that measured it, never measured again: the run's record
(record.py: the kept checkpoint's validation and its per-class rows from validation_report.py,
the test's, the wall time, as ``metrics.json`` has them), the DataModule (splits, labels,
tokenizer), the model's hparams and temperature (calibration.py) and the Trainer. Written by
rank 0 at the end of training and again after the test that ``fit`` runs, whole each time and
renamed into place (atomic.py): a run killed mid-fit has no card, or the one of its last
completed write; ``fit --ckpt_path last`` writes it anew. A separate ``test`` run writes none:
its folder holds a test of a model whose card is in the run that trained it."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback

from project import tags
from project.atomic import atomic_write
from project.data import sources
from project.data.tokenization import KINDS
from project.environment import hardware
from project.training.record import RunRecord, record_of
from project.training.runs import data_name
from project.training.validation_report import cell, per_class_table

FILENAME = "model_card.md"
SOURCE_KNOBS = ("path", "name", "revision", "data_files", "frame", "text_column", "text_separator", "label_column",
                "label_separator", "label_columns", "train_split", "validation_split", "test_split", "validation_size",
                "train_fraction", "max_chars", "seed")
TOKENIZER_KNOBS = ("tokenizer", "max_vocab_size", "min_frequency", "lowercase", "max_length")
TRAINER_KNOBS = ("max_epochs", "max_steps", "precision", "accumulate_grad_batches", "gradient_clip_val",
                 "gradient_clip_algorithm", "val_check_interval", "check_val_every_n_epoch", "num_nodes")
# The Results table's columns: accuracy, macro-F1, loss, ECE, ECE after temperature scaling.
RESULTS = {"validation": (tags.VAL_ACC, tags.VAL_F1, tags.VAL_LOSS, tags.VAL_ECE, tags.VAL_ECE_CALIBRATED),
           "test": (tags.TEST_ACC, tags.TEST_F1, tags.TEST_LOSS, tags.TEST_ECE, tags.TEST_ECE_CALIBRATED)}
# A multi-label run's: subset accuracy, macro-F1, micro-F1, loss, ECE (no temperature).
MULTI_LABEL_RESULTS = {"validation": (tags.VAL_ACC, tags.VAL_F1, tags.VAL_MICRO_F1, tags.VAL_LOSS, tags.VAL_ECE),
                       "test": (tags.TEST_ACC, tags.TEST_F1, tags.TEST_MICRO_F1, tags.TEST_LOSS, tags.TEST_ECE)}


def value_cell(value: Any) -> str:
    """A setting or figure as one table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):  # data_files: split -> file(s)
        return "; ".join(f"{cell(str(k))}: {value_cell(v)}" for k, v in value.items())
    if isinstance(value, str) and not value.strip():  # a separator: seen, not blank
        return f"`{value!r}`"
    return cell(", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value))


def _table(rows: dict[str, Any]) -> str:
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {k} | {value_cell(v)} |" for k, v in rows.items())])


class ModelCard(Callback):
    """Write ``model_card.md`` in the run's folder at the end of fit, and again after its test."""

    def __init__(self) -> None:
        self.record = RunRecord()  # the Trainer's, from setup on
        self._saved: list | None = None  # a checkpoint's rows, taken if fit resumes
        self._facts: dict[str, Any] | None = None  # what fit knew at its end; the test adds to it

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.record = record_of(trainer)

    def state_dict(self) -> dict[str, Any]:
        # The kept validation's per-class rows (MetricsFile keeps them in the record): a resumed
        # run's card keeps its best epoch's table.
        return {"val_per_class": self.record.kept_per_class}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = state_dict.get("val_per_class")  # the test after fit loads states too: fit only takes them

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved:
            self.record.kept_per_class = self._saved
        self._saved = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_train_end: Lightning skips it when a resumed run has nothing left to train.
        if self._folder(trainer) is None or (data := trainer.datamodule) is None:
            return
        if "label_names" not in pl_module.hparams:  # pretrain's language model: its own card, no test
            if self.record.wall_s is None:  # resumed with nothing left to train: the card it has stays
                return
            self._facts = {"name": Path(trainer.logger.log_dir).name, "data": dict(data.hparams),
                           "windows": {s: len(data.dataset[s]) for s in data.dataset}, "tokens": data.num_tokens,
                           "vocab": data.vocab_size, "training": self._training(trainer, data),
                           "model": {k: v for k, v in pl_module.hparams.items() if not k.startswith("_")},
                           "hardware": hardware(trainer)}
            self._write(trainer, render_language_model)
            return
        classes, multi = len(pl_module.hparams.label_names), bool(pl_module.hparams.get("multi_label"))

        def count(split: str) -> list[int]:  # texts per label (multi-label: a text counts for each of its labels)
            column = data.dataset[split].data.column("label").combine_chunks()
            return np.bincount((column.flatten() if multi else column).to_numpy(), minlength=classes).tolist()

        counts = {s: count(s) for s in ("train", "validation", "test") if s in data.dataset}  # the splits as trained on
        self._facts = {"name": Path(trainer.logger.log_dir).name, "data": dict(data.hparams), "counts": counts,
                       "sizes": {s: len(data.dataset[s]) for s in counts}, "multi_label": multi,
                       "thresholds": pl_module.thresholds.tolist() if multi else None,
                       "labels": list(pl_module.hparams.label_names), "vocab": data.vocab_size,
                       "training": self._training(trainer, data),
                       "model": {k: v for k, v in pl_module.hparams.items() if not k.startswith("_")},
                       "hardware": hardware(trainer), "test_per_class": None, "temperature": None,
                       "calibration_note": pl_module.calibration_note}
        self._write(trainer)

    def _training(self, trainer: L.Trainer, data: L.LightningDataModule) -> dict[str, Any]:
        kept = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
        return {
            **{knob: getattr(trainer, knob, None) for knob in TRAINER_KNOBS},
            "seed (seed_everything)": os.environ.get("PL_GLOBAL_SEED"),
            # The DataModule's other knobs (batch size, bucket size, workers...): every one is somewhere.
            **{k: v for k, v in data.hparams.items() if k not in SOURCE_KNOBS + TOKENIZER_KNOBS and k[0] != "_"},
            "early stopping": self.record.early_stopping,
            "checkpoint kept": f"{kept.mode} {kept.monitor}" if kept else None,
            "epochs completed": trainer.current_epoch, "steps trained": trainer.global_step,
        }

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._facts is None or self._folder(trainer) is None:  # a test run of its own: no card
            return
        self.record.take_test(trainer.callback_metrics)  # MetricsFile takes them here too: the same figures
        # The test after fit loaded the kept checkpoint: its temperature is this model's.
        self._facts.update(test_per_class=self.record.test_per_class, temperature=pl_module.temperature.item(),
                           calibration_note=pl_module.calibration_note,
                           thresholds=pl_module.thresholds.tolist() if self._facts.get("multi_label") else None)
        self._write(trainer)

    @staticmethod
    def _folder(trainer: L.Trainer) -> str | None:
        # The logger's own log_dir: trainer.log_dir is a collective under DDP, and only rank 0 writes.
        return trainer.logger.log_dir if trainer.logger is not None and trainer.is_global_zero else None

    def _write(self, trainer: L.Trainer, how: Callable[[dict, RunRecord], str] | None = None) -> None:
        text = (how or render)(self._facts, self.record)
        fix = "point --trainer.default_root_dir at another disk"
        with atomic_write(Path(self._folder(trainer)) / FILENAME, "x", fix=fix) as f:
            f.write(text)


def scaling_effect(best: dict[str, Any], test: dict[str, Any]) -> str:
    """What T did to the ECE of each split, and a word where it made the test split worse: T is
    judged on validation only, and a validation split unlike the test one (harder, or small) can
    call for a T that the test split does not want (the default BBC run: 0.0177 -> 0.0383)."""
    # Each split's loss, ECE and ECE after scaling (RESULTS: accuracy, macro-F1, loss, ECE, ECE scaled).
    shown = {split: [row.get(tag) for tag in RESULTS[split][2:]] for split, row in (("validation", best), ("test", test))
             if all(row.get(tag) is not None for tag in RESULTS[split][3:])}
    if not shown:
        return ""
    said = " It took the ECE " + ", ".join(f"of {split} from {value_cell(raw)} to {value_cell(scaled)}"
                                          for split, (_, raw, scaled) in shown.items()) + "."
    if len(shown) == 2 and shown["test"][2] > shown["test"][1] and None not in (shown["test"][0], shown["validation"][0]):
        said += (f" On the test split the raw probabilities were the better calibrated (its loss "
                 f"{value_cell(shown['test'][0])} against validation's {value_cell(shown['validation'][0])}: the two "
                 f"splits differ): weigh `--calibrated false`.")
    return said


def render(facts: dict[str, Any], record: RunRecord) -> str:
    """The card's Markdown from what fit knew (``facts``) and the run's ``record``."""
    data, labels, counts, model = facts["data"], facts["labels"], facts["counts"], facts["model"]
    best, test, kept = record.kept or {}, record.test or {}, record.best_checkpoint
    temperature = facts["temperature"] or best.get(tags.TEMPERATURE)  # before the test: the kept validation's T
    name, k, sizes = data_name(data), len(labels), facts["sizes"]
    multi = facts.get("multi_label")
    gives = (f"it gives each text any of {k} labels ({', '.join(labels)}): none, one or several, each with its own "
             f"probability and a threshold tuned on validation" if multi else
             f"it gives each text one of {k} labels ({', '.join(labels)}) and a probability per label")
    picked = sources.pick(data)  # the card's phrase for the source, and its Hub id (None: local data)
    source, hub = picked.description, picked.hub_id
    out = ["---", "library_name: pytorch", "pipeline_tag: text-classification",
           f"tags: [text-classification, {model.get('cell_type')}, pytorch-lightning]", "metrics: [accuracy, f1]",
           *([f"datasets: [{hub}]"] if hub else []), "---",
           "", f"# {facts['name']}", "",
           f"A {'bidirectional ' if model.get('bidirectional') else ''}{str(model.get('cell_type')).upper()} text "
           f"classifier trained with `python -m project fit` on {name} ({source}): {gives}.", "",
           "## Data", "", _table({knob: data.get(knob) for knob in SOURCE_KNOBS}), "",
           "| split | texts | " + " | ".join(cell(n) for n in labels) + " |", "|---" * (k + 2) + "|",
           *(f"| {s} | {sizes[s]:,} | " + " | ".join(f"{c:,}" for c in counts[s]) + " |" for s in counts), "",
           "## Tokenizer", "",
           _table({**{knob: data.get(knob) for knob in TOKENIZER_KNOBS}, "vocabulary size": facts["vocab"]}),
           "", "## Model", "", _table(model), "",
           "## Training", "", _table({**facts["training"], "trainable parameters": record.trainable_params}),
           "",
           "## Results", "", *(["| split | subset accuracy | macro-F1 | micro-F1 | loss | ECE |", "|---|---|---|---|---|---|"]
                               if multi else
                               ["| split | accuracy | macro-F1 | loss | ECE | ECE, scaled |", "|---|---|---|---|---|---|"])]
    for split, row in (("validation", best), ("test", test)):
        if row:
            at = f" (epoch {row['epoch']}, step {row['step']})" if "epoch" in row else ""
            shown = (MULTI_LABEL_RESULTS if multi else RESULTS)[split]
            out.append(f"| {split}{at} | " + " | ".join(value_cell(row.get(t)) for t in shown) + " |")
    out += ["", f"Validation: the epoch of the checkpoint kept (the {facts['training'].get('checkpoint kept')} of the "
            "run); test: that checkpoint, on the test split."]
    if multi:
        out[-1] += (" Subset accuracy: the share of texts whose every label is right. The F1s are at each label's "
                    "threshold, tuned on validation" + (f"; at 0.5 for every label, the test's macro-F1 is "
                    f"{value_cell(test.get(tags.TEST_F1_AT_HALF))} and its micro-F1 "
                    f"{value_cell(test.get(tags.TEST_MICRO_F1_AT_HALF))}" if test else "") + ".")
    for split, rows in (("validation", record.kept_per_class), ("test", facts["test_per_class"])):
        if rows:
            out += ["", f"### Per class, {split}", "", per_class_table(rows, keep=False)]
    note, thresholds = facts.get("calibration_note"), facts.get("thresholds")
    out += ["", "## Calibration", "",
            ("Each label's probability is its own sigmoid, as trained (no temperature); a text gets every label "
             "whose probability reaches its threshold, tuned on validation for the best F1 of that label (0.5 "
             "where the tuned one did no better on held-out halves of validation): "
             + ", ".join(f"{cell(n)} {t:.2f}" for n, t in zip(labels, thresholds)) + "." if multi and thresholds else
             f"Probabilities are the model's own (T = 1, not fitted): {note}." if note else
             f"Probabilities are softmax(logits / T) with T = {value_cell(temperature)}, fitted on validation "
             f"(calibration.py); `predict --calibrated false` gives the raw ones." + scaling_effect(best, test)), "",
            "## Time and hardware", "", _table({"fit wall seconds": record.wall_s, **facts["hardware"]}), "",
            "## Intended use and limits", "", *limits(facts, source, temperature), "",
            "## Files", "", f"Beside this card: `{kept or 'checkpoints/'}` (the kept checkpoint), `tokenizer.json`, "
            "`config.yaml` (every flag of this run), `metrics.json`. Label texts with `python -m project predict "
            f"--ckpt_path {kept or 'checkpoints/last.ckpt'} --input FILE` (from this folder).", ""]
    return "\n".join(out)


def render_language_model(facts: dict[str, Any], record: RunRecord) -> str:
    """A ``pretrain`` run's card: what the language model read, how it was trained, its
    validation perplexity, and what it is for (a classifier's start, not a classifier)."""
    data, model, best, kept = facts["data"], facts["model"], record.kept or {}, record.best_checkpoint
    name, source = data_name(data), sources.pick(data).description
    directions = "a forward and a backward" if model.get("bidirectional") else "a forward"
    unit = "word" if data.get("tokenizer") == "word" else "token"
    out = ["---", "library_name: pytorch", "pipeline_tag: text-generation",
           f"tags: [language-model, {model.get('cell_type')}, pytorch-lightning]", "metrics: [perplexity]", "---",
           "", f"# {facts['name']}", "",
           f"{directions.capitalize()} {str(model.get('cell_type')).upper()} language model trained with "
           f"`python -m project pretrain` on the text of {name} ({source}, its labels unused)"
           + (" and the unlabelled files below" if data.get("unlabeled_files") else "") + f": it predicts each {unit} "
           + ("from those before it, and from those after it." if model.get("bidirectional") else
              "from those before it.") + " It is a classifier's start: "
           f"`python -m project fit --model.init_from {facts['name']}` (from this folder's parent) copies its "
           "embedding and encoder and takes its tokenizer.", "",
           "## Data", "", _table({**{knob: data.get(knob) for knob in SOURCE_KNOBS if knob in data},
                                  "unlabeled_files": data.get("unlabeled_files"), "bptt": data.get("bptt"),
                                  "training tokens": facts["tokens"],
                                  **{f"{split} windows": n for split, n in facts["windows"].items()}}), "",
           "## Tokenizer", "",
           # max_length is the classifier's: the language model reads bptt windows.
           _table({**{knob: data.get(knob) for knob in TOKENIZER_KNOBS if knob != "max_length"},
                   "vocabulary size": facts["vocab"]}),
           "", "## Model", "", _table(model), "",
           "## Training", "", _table({**facts["training"], "trainable parameters": record.trainable_params}), "",
           "## Results", "", "| split | loss | perplexity |", "|---|---|---|"]
    if best:
        out.append(f"| validation (epoch {best['epoch']}, step {best['step']}) | {value_cell(best.get('val/loss'))} | "
                   f"{value_cell(best.get('val/perplexity'))} |")
    out += ["", "Validation: the epoch of the checkpoint kept (the lowest validation loss of the run). Perplexity "
            f"is per {unit} of the validation split's text; TensorBoard's `samples/generated` shows generated text.",
            "", "## Time and hardware", "", _table({"pretrain wall seconds": record.wall_s, **facts["hardware"]}), "",
            "## Intended use and limits", "",
            "- A start for `fit --model.init_from`, on text like the text it read: it has learnt nothing of any "
            "labels, and its own generated text is a sample of what it learnt, not a product.",
            f"- Its {facts['vocab']:,}-{unit} vocabulary is the classifier's: words outside it are read as unknown.",
            "", "## Files", "", f"Beside this card: `{kept or 'checkpoints/'}` (the kept checkpoint), "
            "`tokenizer.json`, `config.yaml` (every flag of this run), `metrics.json`.", ""]
    return "\n".join(out)


def limits(facts: dict[str, Any], source: str, temperature: float | None) -> list[str]:
    """The section's sentences, each from a fact of the run."""
    data, labels, sizes = facts["data"], facts["labels"], facts["sizes"]
    train = dict(zip(labels, facts["counts"]["train"]))
    trained, unit = data.get("tokenizer") in KINDS, "word" if data.get("tokenizer") == "word" else "token"
    measured = " and ".join(f"{sizes[s]:,} {s}" for s in ("validation", "test") if s in sizes)
    lines = [f"- For texts like those it learnt from: {data_name(data)}, {source} ({sizes['train']:,} texts, "
             f"{len(labels)} classes: "
             + ", ".join(f"{n} ({c:,})" for n, c in train.items()) + f"), and measured on {measured} texts of the "
             "same source: on text of another source, domain, period or language expect other figures.",
             f"- Texts are cut at {data.get('max_length')} tokens (`--data.max_length`): what follows is not read.",
             f"- {unit.capitalize()}s outside the {facts['vocab']:,}-{unit} vocabulary (" + ("learnt from the "
             "training split" if trained else f"of {Path(str(data.get('tokenizer'))).name}") + ") are read as unknown"
             + ("; text is lower-cased first." if trained and data.get("lowercase") else "."),
             (f"- It answers only these {len(labels)} labels ({', '.join(labels)}): a text about something else "
              "gets none of them, or wrongly some." if facts.get("multi_label") else
              f"- It can only answer one of these {len(labels)} labels ({', '.join(labels)}): a text of no such "
              "class still gets one of them.")]
    if facts.get("multi_label"):
        lines.append("- Each label's probability is its own (they need not add up to 1), not temperature-scaled.")
    elif facts.get("calibration_note"):
        lines.append(f"- Probabilities are not temperature-scaled: {facts['calibration_note']}.")
    elif temperature is not None:  # None: the run never validated
        lines.append(f"- Probabilities are temperature-scaled with T={temperature:.4g} (fitted on validation); see "
                     "`predict --calibrated false` for the raw ones.")
    return lines
