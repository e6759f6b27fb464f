"""``python -m project fit | validate | test``: Lightning's own CLI over the model and the
DataModule, with the data's vocabulary size and class count linked into the model.
``python -m project predict`` takes raw text and a checkpoint alone (predict.py);
``python -m project compare`` runs ``fit`` per cell type and seed and reports (compare.py).

Every refusal (a bad flag, YAML key, value, data file or checkpoint) is one ``error: ... fix:
...`` line on stderr and exit code 2, with no usage dump and no traceback."""

import difflib
import errno
import inspect
import os
import re
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import yaml

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from project.checkpoints import AtomicCheckpointIO, LastCheckpoint, RunCheckpoint, Stopped, no_space, read_checkpoint
from project.checks import DataError
from project.dashboard import Dashboard
from project.data import TextDataModule
from project.model import TextClassifier
from project.runs import RunLogger, find_checkpoint

SUBCOMMANDS = "fit, validate, test, predict, compare"


class OneLineParser(LightningArgumentParser):
    """jsonargparse's parser, with its usage dump replaced by one line and a close match."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        text = " ".join(str(message).split())
        fix = "check it against `python -m project fit --help`"
        quoted = re.search(r"unrecognized arguments: (--[\w.]+)[ =](\S.*)", text)
        if quoted and quoted.group(1) in _flags(self):  # "--flag value" reached us as one argument
            text = f"'{quoted.group(1)} {quoted.group(2)}' came as one argument (the flag and its value quoted together)"
            fix = f"quote the value alone, or join them with =: {quoted.group(1)}='{quoted.group(2)}'"
        elif match := re.search(r"unrecognized arguments: (--[\w.]+)|does not accept option '([\w.]+)'", text):
            close = difflib.get_close_matches(match.group(1) or f"--{match.group(2)}", _flags(self), n=1)
            fix = f"did you mean {close[0]}?" if close else fix
        elif "invalid choice" in text or "subcommand" in text:
            fix = f"the first argument is one of {SUBCOMMANDS}"
        print(f"error: {text}; fix: {fix}", file=sys.stderr)
        sys.exit(2)


def _flags(parser: Any) -> list[str]:
    """Every ``--a.b`` flag of a parser and of its subcommand parsers."""
    flags = [o for action in parser._actions for o in action.option_strings]
    for action in parser._actions:
        for sub in getattr(action, "choices", None) or {}:
            if hasattr(action.choices[sub], "_actions"):
                flags += _flags(action.choices[sub])
    return flags


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


def _check_config_files(given: list[str]) -> None:
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
            raise DataError(f"{path}: not valid YAML{line} ({getattr(error, 'problem', error)}); fix: "
                            + ("keep one of them" if twice else
                               "correct the file (python -m project fit --print_config shows a valid one)")) from None
        for flag in given[:i]:
            name = flag.split("=", 1)[0]
            if name.startswith("--") and name != "--config" and _sets(loaded, name[2:]):
                raise DataError(f"{name} comes before --config {path}, which sets it again and wins (later "
                                f"arguments override earlier ones); fix: put {name} after --config")


def _check_trainer(trainer: Any) -> None:
    """Limits Lightning accepts but that train nothing (then a test would score a model that
    never learned) or fail deep inside it (a division by zero)."""
    for knob, least in (("max_epochs", -1), ("max_steps", -1), ("accumulate_grad_batches", 1),
                        ("log_every_n_steps", 1), ("check_val_every_n_epoch", 1), ("num_sanity_val_steps", -1)):
        value = trainer.get(knob)
        if isinstance(value, int) and (value < least or value == 0):
            meaning = " (-1: no limit)" if least == -1 else ""
            raise DataError(f"--trainer.{knob} is {value}; fix: 1 or more{meaning}")
    interval = trainer.get("val_check_interval")
    if isinstance(interval, dict) and not set(interval) <= {"weeks", "days", "hours", "minutes", "seconds"}:
        raise DataError(f"--trainer.val_check_interval {interval} is not a time span; fix: a share of an epoch "
                        f"(0.25), a number of batches, or a time such as {{minutes: 30}}")
    if trainer.get("limit_train_batches") in (0, 0.0):
        raise DataError("--trainer.limit_train_batches is 0: no training step; fix: a share above 0, or a count of 1 or more")


def _refuse_changed_model_flags(model: Any, saved: dict[str, Any], given: list[str], ckpt: str) -> None:
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
        raise DataError(f"{ckpt} was trained with other model settings: {', '.join(changed)}; fix: drop those flags "
                        f"to go on with the checkpoint's, or start a new run without --ckpt_path")


class ProjectCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Lightning's predict needs the training data config; ours needs the checkpoint only.
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Known only once the data is loaded and the tokenizer trained, so linked on instantiate.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(Dashboard, "dashboard")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the best checkpoint on the test split (when there is one).",
        )
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/f1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch={epoch}-val_f1={val/f1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,  # last.ckpt is shared with last_checkpoint
                "trainer.max_epochs": 10,
                # The DataModule's length-bucketed sampler splits batches across ranks itself.
                "trainer.use_distributed_sampler": False,
            }
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Check config files, then resolve and open a given checkpoint now, so that a bad one is
        one line and nothing is written. ``fit`` from a run's ``last.ckpt`` (``--ckpt_path
        last``: the newest run's) continues that run in its own folder, wherever it now lies."""
        given = list(sys.argv[1:] if args is None else args)
        _check_config_files(given)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        _check_trainer(config.trainer)
        seed = config.get("seed_everything")
        if type(seed) is int and not 0 <= seed < 2**32:  # numpy's range; Lightning's is wider
            raise DataError(f"--seed_everything is {seed}; fix: a seed from 0 to {2**32 - 1} (true: a random one)")
        ckpt, root = config.get("ckpt_path"), Path(config.trainer.default_root_dir or ".")
        if ckpt is None and subcommand in ("validate", "test"):
            raise DataError(f"{subcommand} needs a trained model, not a new random one; fix: --ckpt_path best or "
                            f"--ckpt_path last (the newest run under {root}), or the path of a .ckpt")
        if ckpt is None:
            return
        if ckpt == "best" and subcommand == "fit":
            raise DataError("fit --ckpt_path best: fit goes on from where a run stopped; fix: --ckpt_path last, "
                            "or the path of a checkpoint")
        if ckpt in ("last", "best"):
            ckpt = str(find_checkpoint(ckpt, root))
        saved = read_checkpoint(ckpt, TextDataModule.__qualname__)
        extra = [f"--ckpt_path={ckpt}"]
        run = Path(ckpt).resolve().parent.parent
        self.resumes_run = subcommand == "fit" and Path(ckpt).name == "last.ckpt" and run.name.startswith("version_")
        if self.resumes_run:  # the same folder: one event log, one checkpoint history
            extra += ["--trainer.logger=project.runs.RunLogger", f"--trainer.logger.save_dir={run.parent.parent}",
                      f"--trainer.logger.name={run.parent.name}", f"--trainer.logger.version={run.name}"]
        super().parse_arguments(parser, [*given, *extra])
        if subcommand == "fit":
            _refuse_changed_model_flags(self.config.fit.model, saved["hyper_parameters"], given, ckpt)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Trainer:
        if config.get("logger") in (None, True):  # Lightning's default logger, with a version claimed atomically
            config["logger"] = RunLogger(save_dir=config.get("default_root_dir") or os.getcwd())
        if getattr(self, "resumes_run", False):
            self.save_config_callback = None  # a resumed run keeps the config.yaml it started with
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # Lightning writes checkpoints in place; ours are written beside and renamed.
        self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit:
            return
        if "test" not in self.datamodule.dataset:
            rank_zero_info("This data has no test split: skipping the test after fit.")
            return
        best = next(c for c in self.trainer.checkpoint_callbacks if c.monitor).best_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or "last")


def main(args: list[str] | None = None) -> ProjectCLI | None:
    """Run the CLI. Bad input ends with one line on stderr and exit code 2."""
    # Raised inside Lightning 2.6 on every step with torch >= 2.10; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Said on every resume mid-epoch; wrong here: the DataModule's state says where the epoch was.
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable")
    given = sys.argv[1:] if args is None else args
    if given[:1] == ["predict"]:
        from project.predict import main as predict

        return predict(given[1:])
    if given[:1] == ["compare"]:
        from project.compare import main as compare

        return compare(given[1:])
    try:
        return ProjectCLI(
            TextClassifier,
            TextDataModule,
            seed_everything_default=42,
            auto_configure_optimizers=False,  # one way to set the optimizer: the model's own knobs
            parser_class=OneLineParser,
            save_config_kwargs={"overwrite": True},  # fit --ckpt_path last continues in its own folder
            args=args,
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
    except (MisconfigurationException, ValueError) as error:  # Lightning refusing a --trainer setting
        frames = traceback.extract_tb(error.__traceback__)
        if not isinstance(error, MisconfigurationException) and "lightning/pytorch/" not in frames[-1].filename:
            raise
        text = " ".join(str(error).split())
        print(f"error: {text}; fix: change the --trainer setting it names", file=sys.stderr)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {no_space(error.filename or 'a file', error)}", file=sys.stderr)
    except RuntimeError as error:  # torch.OutOfMemoryError too: a size far too large for this machine
        if "can't allocate memory" not in str(error) and "out of memory" not in str(error):
            raise
        tried = re.search(r"tried to allocate ([\d.]+ \w+|\d+ bytes)", str(error))
        print(f"error: not enough memory for this model and batch{f' (it asked for {tried.group(1)})' if tried else ''}; "
              f"fix: lower --model.hidden_size, --model.embedding_dim, --data.max_vocab_size or --data.batch_size",
              file=sys.stderr)
    except Stopped as stop:  # Ctrl-C or SIGTERM mid-fit: last.ckpt holds every finished step
        print(f"{stop}; to go on: python -m project fit <the same arguments> --ckpt_path last", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except (KeyboardInterrupt, SIGTERMException) as stop:  # outside training steps (data, test): nothing to save
        name, signum = ("SIGINT", signal.SIGINT) if isinstance(stop, KeyboardInterrupt) else ("SIGTERM", signal.SIGTERM)
        print(f"stopped by {name} outside the training steps; fit --ckpt_path last goes on from the last "
              f"checkpoint, if one was written", file=sys.stderr)
        sys.exit(128 + signum)
    sys.exit(2)
