"""``python -m project``: one parser for every subcommand. ``fit``, ``validate`` and ``test`` are
Lightning's own CLI over the model and the DataModule, with the data's vocabulary size and
class count linked into the model; ``predict`` labels raw text with a checkpoint alone
(predict.py), ``compare`` runs ``fit`` per cell type and seed and reports (compare.py),
``tune`` searches hyperparameters with Optuna (tune.py, study.py), ``export`` writes a checkpoint as an ONNX folder (export.py) and ``serve`` answers HTTP requests
with one (serve.py); ``env`` prints the versions and machine for a bug report (environment.py).
``python -m project --help`` lists them; ``python -m project SUB --help`` documents each flag.

Every refusal (a bad flag, YAML key, value, data file or checkpoint) is one ``error: ... fix:
...`` line on stderr and exit code 2, with no usage dump and no traceback."""

import difflib
import errno
import os
import re
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from project import arguments, compare, environment, export, predict, serve, tune
from project.atomic import no_space
from project.calibration import Calibration
from project.checkpoints import AtomicCheckpointIO, LastCheckpoint, RunCheckpoint, Stopped, read_checkpoint
from project.data import TextDataModule
from project.errors import UserError
from project.grad_norm import GradNorm
from project.hparams import TRAINER_DEFAULTS, HParams
from project.metrics_file import MetricsFile
from project.model import TextClassifier
from project.model_card import ModelCard
from project.progress import LineProgressBar
from project.runs import VERSION, RunLogger, find_checkpoint, run_name
from project.stopping import EarlyStop
from project.throughput import Throughput
from project.validation_report import ValidationReport

# One line each in ``python -m project --help``; all but the first three are ours, not Trainer methods.
SUBCOMMANDS = {
    "fit": "Train a classifier (then test its best checkpoint); --ckpt_path last goes on with a stopped run.",
    "validate": "Score a checkpoint on the validation split.",
    "test": "Score a checkpoint on the test split.",
    "predict": "Label new text with a checkpoint (or an exported model) alone: one JSON line per text.",
    "compare": "LSTM or GRU? fit each cell type over seeds on your data, and report.",
    "tune": "Search hyperparameters with Optuna: each trial a fit, in a study that resumes and can be shared.",
    "export": "Write a checkpoint as an ONNX model with its tokenizer and labels: predicts without PyTorch.",
    "serve": "Answer POST /predict over HTTP (and a page to try it) with a checkpoint or an exported model.",
    "env": "Print the versions and the machine this project runs on, for a bug report.",
}
# Ours, not Trainer methods: each module's add_arguments (its flags) and run (the whole command).
OWN = {"predict": predict, "export": export, "serve": serve, "env": environment}
# Ours too, and they take every fit flag as well: run(config, the arguments as given).
WITH_FIT_FLAGS = {"compare": compare, "tune": tune}


# What is kept when Ctrl-C or SIGTERM stops a command outside fit's training steps.
AFTER_A_STOP = {
    "fit": "outside the training steps: fit --ckpt_path last goes on from the last checkpoint, if one was written",
    "predict": "an --output file is not written (it is put in place only when complete)",
    "compare": "run the same compare again: finished runs are kept and skipped",
    "tune": "run the same tune again: finished trials are kept, the one cut short runs again",
    "export": "the --output folder is not written (it is put in place only when complete and checked)",
    "serve": "the server stopped",
    "env": "nothing was written",
    "validate": "run it again (it changes no checkpoint)",
    "test": "run it again (it changes no checkpoint)",
}


class OneLineParser(LightningArgumentParser):
    """jsonargparse's parser, with its usage dump replaced by one line and a close match."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        text = " ".join(str(message).split())
        # Raised by a subcommand's parser, or by the top one about a subcommand's config file.
        sub = next((s for s in SUBCOMMANDS if f" {s} " in f" {self.prog} " or f"Subcommand '{s}'" in text), None)
        fix = f"check it against `python -m project {sub + ' ' if sub else ''}--help`"
        parser = getattr(self, "subcommand_parsers", {}).get(sub, self)
        quoted = re.search(r"unrecognized arguments: (--[\w.]+)[ =](\S.*)", text)
        if quoted and quoted.group(1) in _flags(parser):  # "--flag value" reached us as one argument
            text = f"'{quoted.group(1)} {quoted.group(2)}' came as one argument (the flag and its value quoted together)"
            fix = f"quote the value alone, or join them with =: {quoted.group(1)}='{quoted.group(2)}'"
        elif match := re.search(r"unrecognized arguments: (--[\w.]+)|does not accept option '([\w.]+)'", text):
            close = difflib.get_close_matches(match.group(1) or f"--{match.group(2)}", _flags(parser), n=1)
            fix = f"did you mean {close[0]}?" if close else fix
        elif "invalid choice" in text or "subcommand" in text:
            given = re.search(r"invalid choice: '([^']*)'|subcommand \S* ?'?([^' ]+)", text)
            close = difflib.get_close_matches((given.group(1) or given.group(2) or "") if given else "", SUBCOMMANDS, n=1)
            fix = (f"did you mean {close[0]}? " if close else "") + f"the first argument is one of {', '.join(SUBCOMMANDS)}"
        # A type of ours (compare's --seeds ...) words its own fix.
        print(f"error: {text}" if "; fix: " in text else f"error: {text}; fix: {fix}", file=sys.stderr)
        sys.exit(2)


def _flags(parser: Any) -> list[str]:
    """Every ``--a.b`` flag of a (sub)command's parser: jsonargparse raises a flag's error on the
    parser of the subcommand it belongs to, whose defaults name every key."""
    return [f"--{key}" for key in parser.get_defaults().keys()]


class Finished(Exception):
    """predict, compare, tune, export or serve ran to its end inside parsing: nothing left to do."""


class ProjectCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Lightning's predict needs the training data config; ours needs the model only.
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's subcommands (Trainer methods) and ours, on one parser, in SUBCOMMANDS'
        order and words. Lightning has no public hook for a subcommand that is not a Trainer
        method: this override of its private method is the one place that needs one."""
        self._subcommand_parsers = {}
        parser.subcommand_parsers = {}  # for OneLineParser.error: the flags of the subcommand named
        subcommands = parser.add_subcommands()
        for name, text in SUBCOMMANDS.items():
            if name in OWN:
                sub = self.init_parser(description=text)
                OWN[name].add_arguments(sub)
            elif name in WITH_FIT_FLAGS:  # every fit flag (checked before its first run), and its own
                sub = self._prepare_subcommand_parser(Trainer, "fit", description=text)
                WITH_FIT_FLAGS[name].add_arguments(sub)
            else:
                sub = self._subcommand_parsers[name] = self._prepare_subcommand_parser(Trainer, name, description=text)
            subcommands.add_subcommand(name, sub, help=text)
            parser.subcommand_parsers[name] = sub

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Known only once the data is loaded and the tokenizer trained, so linked on instantiate.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(GradNorm, "grad_norm")
        parser.add_lightning_class_args(Throughput, "throughput")
        # Callbacks run in this order: the temperature is fitted before the report shows probabilities.
        parser.add_lightning_class_args(Calibration, "calibration")
        parser.add_lightning_class_args(ValidationReport, "validation_report")
        parser.add_lightning_class_args(HParams, "hparams")
        parser.add_lightning_class_args(MetricsFile, "metrics_file")
        parser.add_lightning_class_args(ModelCard, "model_card")  # after MetricsFile: it reads its record
        parser.add_lightning_class_args(EarlyStop, "early_stopping")
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
                "trainer.max_epochs": TRAINER_DEFAULTS["max_epochs"],
                # The DataModule's length-bucketed sampler splits batches across ranks itself.
                "trainer.use_distributed_sampler": False,
            }
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Check config files, then resolve and open a given checkpoint now, so that a bad one is
        one line and nothing is written. ``fit`` from a run's ``last.ckpt`` (``--ckpt_path
        last``: the newest run's) continues that run in its own folder, wherever it now lies."""
        given = list(sys.argv[1:] if args is None else args)
        arguments.check_config_files(given)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand in OWN or subcommand in WITH_FIT_FLAGS:  # no model, data or Trainer of Lightning's
            config = self.config[subcommand].as_dict()
            if subcommand in OWN:
                OWN[subcommand].run(config)
            else:
                WITH_FIT_FLAGS[subcommand].run(config, given[given.index(subcommand) + 1:])
            raise Finished
        if subcommand is None:
            return
        config = self.config[subcommand]
        arguments.check_trainer(config.trainer)
        seed = config.get("seed_everything")
        if type(seed) is int and not 0 <= seed < 2**32:  # numpy's range; Lightning's is wider
            raise UserError(f"--seed_everything is {seed}; fix: a seed from 0 to {2**32 - 1} (true: a random one)")
        ckpt, root = config.get("ckpt_path"), Path(config.trainer.default_root_dir or ".")
        if ckpt is None and subcommand in ("validate", "test"):
            raise UserError(f"{subcommand} needs a trained model, not a new random one; fix: --ckpt_path best or "
                            f"--ckpt_path last (the newest run under {root}), or the path of a .ckpt")
        if ckpt is None:
            return
        if ckpt == "best" and subcommand == "fit":
            raise UserError("fit --ckpt_path best: fit goes on from where a run stopped; fix: --ckpt_path last, "
                            "or the path of a checkpoint")
        if ckpt in ("last", "best"):
            ckpt = str(find_checkpoint(ckpt, root))
        saved = read_checkpoint(ckpt, TextDataModule.__qualname__)
        self.checkpoint_cell = saved["hyper_parameters"].get("cell_type")
        extra = [f"--ckpt_path={ckpt}"]
        run = Path(ckpt).resolve().parent.parent
        self.resumes_run = subcommand == "fit" and Path(ckpt).name == "last.ckpt" and VERSION.search(run.name) is not None
        if self.resumes_run:  # the same folder: one event log, one checkpoint history
            extra += ["--trainer.logger=project.runs.RunLogger", f"--trainer.logger.save_dir={run.parent.parent}",
                      f"--trainer.logger.name={run.parent.name}", f"--trainer.logger.version={run.name}"]
        super().parse_arguments(parser, [*given, *extra])
        if subcommand == "fit":
            arguments.refuse_changed_model_flags(self.config.fit.model, saved["hyper_parameters"], given, ckpt)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Trainer:
        if config.get("logger") in (None, True):  # Lightning's default logger, with a version claimed atomically
            # A checkpoint's own cell type, not the config's: validate / test use the checkpoint's.
            cell = getattr(self, "checkpoint_cell", None) or self.model.hparams.cell_type
            config["logger"] = RunLogger(save_dir=config.get("default_root_dir") or os.getcwd(),
                                         run_name=run_name(self.datamodule.hparams, cell))
        if getattr(self, "resumes_run", False):
            self.save_config_callback = None  # a resumed run keeps the config.yaml it started with
        if config.get("logger") is False:  # LearningRateMonitor refuses a Trainer without logger
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        # Output to a file (a scheduler, nohup, > run.log): Rich / TQDM draw nothing per epoch
        # there, so the Trainer gets plain lines instead, unless it was given a bar or none.
        given = config.get("callbacks") or []
        given = [*(given if isinstance(given, list) else [given]), *callbacks]
        if (not (sys.stdout and sys.stdout.isatty()) and config.get("enable_progress_bar") is not False
                and not any(isinstance(c, ProgressBar) for c in given)):
            callbacks = [*callbacks, LineProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # Lightning copies a checkpoint over the old one; ours is written beside and renamed (atomic.py).
        self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit:
            return
        if "test" not in self.datamodule.dataset:
            rank_zero_info("This data has no test split: skipping the test after fit.")
            return
        best = next(c for c in self.trainer.checkpoint_callbacks if c.monitor).best_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or "last")


def main(args: list[str] | None = None, callbacks: list | None = None) -> ProjectCLI | None:
    """Run the CLI. Bad input ends with one line on stderr and exit code 2. ``callbacks``: added
    to the Trainer's (tune's pruning callback: a trial is this very fit, with it)."""
    # Raised inside Lightning 2.6 on every step with torch >= 2.10; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Said on every resume mid-epoch; wrong here: the DataModule's state says where the epoch was.
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable")
    # The model's own transfer hook (it keeps the lengths on the host) is the one meant, as said.
    warnings.filterwarnings("ignore", message=r".*overridden `transfer_batch_to_device`")
    try:
        return ProjectCLI(
            TextClassifier,
            TextDataModule,
            seed_everything_default=42,
            auto_configure_optimizers=False,  # one way to set the optimizer: the model's own knobs
            parser_class=OneLineParser,
            parser_kwargs={"prog": "python -m project", "description": __doc__.split("\n\n")[0].replace("``", "")},
            save_config_kwargs={"overwrite": True},  # fit --ckpt_path last continues in its own folder
            trainer_defaults={"callbacks": callbacks} if callbacks else None,
            args=args,
        )
    except Finished:
        return None
    except UserError as error:
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
        given = sys.argv[1:] if args is None else args
        sub = next((a for a in given if a in SUBCOMMANDS), "fit")
        print(f"stopped by {name}; " + AFTER_A_STOP.get(sub, AFTER_A_STOP["fit"]), file=sys.stderr)
        sys.exit(128 + signum)
    sys.exit(2)
