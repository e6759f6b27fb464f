"""The command line's parser and its checks, made before anything is built or written: a bad
flag as one line with the close match, and what jsonargparse and Lightning accept but would
ignore in silence, or fail on deep inside a run. Each failure is one ``UserError`` line."""

import difflib
import inspect
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from lightning.pytorch.cli import LightningArgumentParser

from project.errors import UserError
from project.model.classifier import TextClassifier


class OneLineParser(LightningArgumentParser):
    """jsonargparse's parser, with its usage dump replaced by one ``UserError`` line (the fix: a
    close flag, or the command's ``--help``)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying a type on an inner parser: its own error
            super().error(message, ex)
        text = " ".join(str(message).split())
        fix = f"check it against `{self.prog} --help`"
        flags = [f"--{key}" for key in self.get_defaults().keys()]  # every --a.b flag of this command
        quoted = re.search(r"unrecognized arguments: (--[\w.]+)[ =](\S.*)", text)
        if quoted and quoted.group(1) in flags:  # "--flag value" reached us as one argument
            text = f"'{quoted.group(1)} {quoted.group(2)}' came as one argument (the flag and its value quoted together)"
            fix = f"quote the value alone, or join them with =: {quoted.group(1)}='{quoted.group(2)}'"
        elif match := re.search(r"unrecognized arguments: (--[\w.]+)|does not accept option '([\w.]+)'", text):
            close = difflib.get_close_matches(match.group(1) or f"--{match.group(2)}", flags, n=1)
            fix = f"did you mean {close[0]}?" if close else fix
        # A type of ours (compare's --seeds ...) words its own fix.
        raise UserError(text if "; fix: " in text else f"{text}; fix: {fix}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _sets(config: Any, dotted: str) -> bool:
    """Whether a loaded YAML config sets ``model.hidden_size`` (also under ``init_args``)."""
    for key in dotted.split("."):
        if isinstance(config, dict) and key not in config and isinstance(config.get("init_args"), dict):
            config = config["init_args"]
        if not isinstance(config, dict) or key not in config:
            return False
        config = config[key]
    return True


def check_config_files(given: list[str]) -> None:
    """YAML errors from jsonargparse name no file and it keeps a repeated key's last value; and
    a flag placed before ``--config`` is silently overridden by it (later arguments win)."""
    for i, arg in enumerate(given):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
            given[i + 1] if arg in ("--config", "-c") and i + 1 < len(given) else None)
        if not path or not Path(path).is_file():
            continue
        try:
            loaded = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" at line {where.line + 1}" if where else ""
            twice = "appears twice" in str(getattr(error, "problem", ""))
            raise UserError(f"{path}: not valid YAML{line} ({getattr(error, 'problem', error)}); fix: "
                            + ("keep one of them" if twice else
                               "correct the file (python -m project fit --print_config shows a valid one)")) from None
        for flag in given[:i]:
            name = flag.split("=", 1)[0]
            if name.startswith("--") and name != "--config" and _sets(loaded, name[2:]):
                raise UserError(f"{name} comes before --config {path}, which sets it again and wins (later "
                                f"arguments override earlier ones); fix: put {name} after --config")


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


def refuse_changed_model_flags(model: Any, saved: dict[str, Any], given: list[str], ckpt: str) -> None:
    """Resuming takes the model's settings from the checkpoint (LightningCLI re-reads them), so
    a model flag that says otherwise would be ignored in silence: refuse it instead."""
    defaults = {k: p.default for k, p in inspect.signature(TextClassifier).parameters.items()}
    changed = []
    for key, value in vars(model).items():
        if key in ("vocab_size", "label_names") or key not in saved or value == saved[key]:
            continue
        if value != defaults.get(key) or any(a.split("=")[0] == f"--model.{key}" for a in given):
            changed.append(f"--model.{key} {value} (the checkpoint has {saved[key]})")
    if changed:
        raise UserError(f"{ckpt} was trained with other model settings: {', '.join(changed)}; fix: drop those flags "
                        f"to go on with the checkpoint's, or start a new run without --ckpt_path")
