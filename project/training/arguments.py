"""The fit flags' parser and its checks, made before anything is built or written: what
jsonargparse and Lightning accept but would ignore in silence, or fail on deep inside a run.
Each failure is one ``UserError`` line."""

import inspect
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from project.errors import UserError
from project.model.classifier import TextClassifier
from project.parser import OneLine


class FitParser(OneLine, LightningArgumentParser):
    """Lightning's parser of fit / validate / test (and of compare's and tune's fit flags), each
    error one line."""


def check_trainer(trainer: Any) -> None:
    """Limits Lightning accepts but that train nothing (then a test would score a model that
    never learned) or fail deep inside it (a division by zero)."""
    for knob, least in (("max_epochs", -1), ("max_steps", -1), ("accumulate_grad_batches", 1),
                        ("log_every_n_steps", 1), ("check_val_every_n_epoch", 1), ("num_sanity_val_steps", -1)):
        value = trainer.get(knob)
        # num_sanity_val_steps 0 is a setting (no sanity check); below -1 it would mean nothing.
        if isinstance(value, int) and (value < least or (value == 0 and knob != "num_sanity_val_steps")):
            meaning = " (-1: no limit)" if least == -1 else ""
            lowest = "0" if knob == "num_sanity_val_steps" else "1"
            raise UserError(f"--trainer.{knob} is {value}; fix: {lowest} or more{meaning}")
    interval = trainer.get("val_check_interval")
    if isinstance(interval, dict) and not set(interval) <= {"weeks", "days", "hours", "minutes", "seconds"}:
        raise UserError(f"--trainer.val_check_interval {interval} is not a time span; fix: a share of an epoch "
                        f"(0.25), a number of batches, or a time such as {{minutes: 30}}")
    if trainer.get("limit_train_batches") in (0, 0.0):
        raise UserError("--trainer.limit_train_batches is 0: no training step; fix: a share above 0, or a count of 1 or more")


def refuse_changed_model_flags(model: Any, saved: dict[str, Any], given: list[str], ckpt: str,
                               model_class: type = TextClassifier) -> None:
    """Resuming takes the model's settings from the checkpoint (LightningCLI re-reads them), so
    a model flag that says otherwise would be ignored in silence: refuse it instead."""
    defaults = {k: p.default for k, p in inspect.signature(model_class).parameters.items()}
    changed = []
    for key, value in vars(model).items():
        if key in ("vocab_size", "label_names", "sep_id", "multi_label") or key not in saved or value == saved[key]:
            continue
        if value != defaults.get(key) or any(a.split("=")[0] == f"--model.{key}" for a in given):
            changed.append(f"--model.{key} {value} (the checkpoint has {saved[key]})")
    if changed:
        raise UserError(f"{ckpt} was trained with other model settings: {', '.join(changed)}; fix: drop those flags "
                        f"to go on with the checkpoint's, or start a new run without --ckpt_path")
