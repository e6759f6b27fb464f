"""``python -m project fit | validate | test``: Lightning's own CLI over the model and the
DataModule, with the data's vocabulary size and class count linked into the model.
``python -m project predict`` takes raw text and a checkpoint alone (predict.py);
``python -m project compare`` runs ``fit`` per cell type and seed and reports (compare.py).

Every refusal (a bad flag, YAML key, value, data file or checkpoint) is one ``error: ... fix:
...`` line on stderr and exit code 2, with no usage dump and no traceback."""

import difflib
import re
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

import yaml

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from project.checkpoints import SPECIAL, AtomicCheckpointIO, read_checkpoint
from project.checks import DataError
from project.dashboard import Dashboard
from project.data import TextDataModule
from project.model import TextClassifier

SUBCOMMANDS = "fit, validate, test, predict, compare"


class OneLineParser(LightningArgumentParser):
    """jsonargparse's parser, with its usage dump replaced by one line and a close match."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        text = " ".join(str(message).split())
        fix = "check it against `python -m project fit --help`"
        if match := re.search(r"unrecognized arguments: (--[\w.]+)|does not accept option '([\w.]+)'", text):
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


def _last_checkpoint(root: Path) -> Path:
    """The newest ``last.ckpt`` under ``root/lightning_logs/version_*/checkpoints``."""
    found = sorted(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"--ckpt_path last: no lightning_logs/version_*/checkpoints/last.ckpt under {root}; "
                        f"fix: pass the path of a checkpoint, or run fit without --ckpt_path first")
    return found[-1]


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N training steps as well (the main checkpoint writes it per epoch),
    so a run killed mid-epoch loses at most N steps."""

    def __init__(self, every_n_train_steps: int = 500) -> None:
        """
        Args:
            every_n_train_steps: Write ``last.ckpt`` after every this many training steps; 0: never.
        """
        # No version counter: this and the main checkpoint both write the one last.ckpt.
        super().__init__(every_n_train_steps=every_n_train_steps or None, save_last=True, save_top_k=0,
                         enable_version_counter=False)


class ProjectCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Lightning's predict needs the training data config; ours needs the checkpoint only.
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Known only once the data is loaded and the tokenizer trained, so linked on instantiate.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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
        """Open a given checkpoint now, so a bad one is one line. ``fit --ckpt_path last``
        resumes the newest run in its own folder (same log, same checkpoint history)."""
        given = list(sys.argv[1:] if args is None else args)
        for i, arg in enumerate(given):  # YAML errors from jsonargparse name no file
            path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
                given[i + 1] if arg in ("--config", "-c") and i + 1 < len(given) else None)
            if path and Path(path).is_file():
                try:
                    yaml.safe_load(Path(path).read_text())
                except yaml.YAMLError as error:
                    where = getattr(error, "problem_mark", None)
                    line = f" at line {where.line + 1}" if where else ""
                    raise DataError(f"{path}: not valid YAML{line} ({getattr(error, 'problem', error)}); "
                                    f"fix: correct the file (python -m project fit --print_config shows a valid one)") from None
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt == "last" and subcommand == "fit":
            root = Path(self.config.fit.trainer.default_root_dir or ".")
            last = _last_checkpoint(root)
            super().parse_arguments(parser, [
                *given, f"--ckpt_path={last}", "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
                f"--trainer.logger.save_dir={root}", f"--trainer.logger.version={last.parent.parent.name}",
            ])
            ckpt = str(last)
        if ckpt and ckpt not in SPECIAL:
            read_checkpoint(ckpt, TextDataModule.__qualname__)

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
    except MisconfigurationException as error:  # Lightning refusing a --trainer setting
        text = " ".join(str(error).split())
        print(f"error: {text}; fix: change the --trainer setting it names", file=sys.stderr)
    sys.exit(2)
