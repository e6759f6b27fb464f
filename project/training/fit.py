"""``fit``, ``validate`` and ``test``: Lightning's CLI over the model and the DataModule, with the
data's vocabulary size and class count linked into the model, the project's callbacks as flags,
and a given checkpoint checked before anything is built. ``run_fit`` is the one way a fit is
started: by ``python -m project fit``, by each trial of ``tune`` (in its process) and by each run
of ``compare`` (in a child process of its own, ``cli.fit_in_child``).

``ProjectCLI`` is one command's parser and objects (LightningCLI with ``run=False``), built
through LightningCLI's public hooks only; ``run()`` calls the command's Trainer method."""

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from project.data.datamodule import TextDataModule
from project.errors import UserError
from project.model.checkpoint_format import read_checkpoint
from project.model.classifier import TextClassifier
from project.parser import check_config_files
from project.training import arguments
from project.training.calibration import Calibration
from project.training.checkpoints import AtomicCheckpointIO, LastCheckpoint, RunCheckpoint
from project.training.grad_norm import GradNorm
from project.training.hparams import TRAINER_DEFAULTS, HParams
from project.training.metrics_file import MetricsFile
from project.training.model_card import ModelCard
from project.training.progress import LineProgressBar
from project.training.runs import VERSION, RunLogger, find_checkpoint, run_name
from project.training.stopping import EarlyStop
from project.training.throughput import Throughput
from project.training.validation_report import ValidationReport

# Said by dependencies on every run, with nothing a user can act on; filtered while a command runs.
QUIET = (
    r".*isinstance\(treespec, LeafSpec\)",  # inside Lightning 2.6, every step, with torch >= 2.10
    r".*your dataloader is not resumable",  # the DataModule's state says where a resumed epoch was
    r".*overridden `transfer_batch_to_device`",  # the model's own (it keeps the lengths on the host)
    r"LightningCLI's args parameter is intended",  # the dispatcher hands on the arguments after the subcommand
)
@contextmanager
def quiet_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        yield


class LearningRates(LearningRateMonitor):
    """Lightning's learning-rate curves, which do nothing in a run without a logger (Lightning's
    own refuses such a Trainer, and ``--trainer.logger false`` is a setting, not an error)."""

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class ProjectCLI(LightningCLI):
    """One command's flags, checks and objects. ``instantiate=False`` parses and checks the fit
    flags only (compare and tune take them all, plus ``add_flags``' own, and pass them on)."""

    def __init__(self, command: str = "fit", args: list[str] | None = None, *, callbacks: list | None = None,
                 run_dir: Path | None = None, instantiate: bool = True, prog: str | None = None,
                 description: str = "", add_flags: Callable[[LightningArgumentParser], None] | None = None
                 ) -> None:
        self.command, self.run_dir, self.instantiate, self.add_flags = command, run_dir, instantiate, add_flags
        self.checkpoint_cell: str | None = None  # validate / test: the checkpoint's cell type, not the config's
        self.resumes_run = False
        self.method_flags: list[str] = []
        super().__init__(
            TextClassifier,
            TextDataModule,
            seed_everything_default=42,
            auto_configure_optimizers=False,  # one way to set the optimizer: the model's own knobs
            parser_class=arguments.FitParser,
            parser_kwargs={"prog": f"python -m project {prog or command}", "description": description},
            save_config_kwargs={"overwrite": True},  # fit --ckpt_path last continues in its own folder
            trainer_defaults={"callbacks": callbacks} if callbacks else None,
            args=list(sys.argv[1:] if args is None else args),
            run=False,  # run() calls the Trainer method: no subcommand parser of Lightning's
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Known only once the data is loaded and the tokenizer trained, so linked on instantiate.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(LearningRates, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(GradNorm, "grad_norm")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(Calibration, "calibration")
        parser.add_lightning_class_args(ValidationReport, "validation_report")
        parser.add_lightning_class_args(HParams, "hparams")
        parser.add_lightning_class_args(MetricsFile, "metrics_file")
        parser.add_lightning_class_args(ModelCard, "model_card")
        parser.add_lightning_class_args(EarlyStop, "early_stopping")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, test the best checkpoint on the test split (when there is one).")
        parser.set_defaults({
            "checkpoint.monitor": "val/f1",
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-epoch={epoch}-val_f1={val/f1:.4f}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.enable_version_counter": False,  # last.ckpt is shared with last_checkpoint
            "trainer.max_epochs": TRAINER_DEFAULTS["max_epochs"],
            # The DataModule's length-bucketed sampler splits batches across ranks itself.
            "trainer.use_distributed_sampler": False,
        })
        # The Trainer method's own arguments (--ckpt_path ...), as Lightning's subcommands have them.
        self.method_flags = parser.add_method_arguments(Trainer, self.command, skip=self.subcommands()[self.command])
        if self.add_flags:
            self.add_flags(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Check config files, then resolve and open a given checkpoint now, so that a bad one is
        one line and nothing is written. ``fit`` from a run's ``last.ckpt`` (``--ckpt_path
        last``: the newest run's) continues that run in its own folder, wherever it now lies."""
        check_config_files(args)
        super().parse_arguments(parser, args)
        if not self.instantiate:
            return
        config, command = self.config, self.command
        arguments.check_trainer(config.trainer)
        seed = config.get("seed_everything")
        if type(seed) is int and not 0 <= seed < 2**32:  # numpy's range; Lightning's is wider
            raise UserError(f"--seed_everything is {seed}; fix: a seed from 0 to {2**32 - 1} (true: a random one)")
        ckpt, root = config.get("ckpt_path"), Path(config.trainer.default_root_dir or ".")
        if ckpt is None and command in ("validate", "test"):
            raise UserError(f"{command} needs a trained model, not a new random one; fix: --ckpt_path best or "
                            f"--ckpt_path last (the newest run under {root}), or the path of a .ckpt")
        if ckpt is None:
            return
        if ckpt == "best" and command == "fit":
            raise UserError("fit --ckpt_path best: fit goes on from where a run stopped; fix: --ckpt_path last, "
                            "or the path of a checkpoint")
        if ckpt in ("last", "best"):
            ckpt = str(find_checkpoint(ckpt, root))
        saved = read_checkpoint(ckpt)
        self.checkpoint_cell = saved["hyper_parameters"].get("cell_type")
        run = Path(ckpt).resolve().parent.parent
        if command == "fit" and Path(ckpt).name == "last.ckpt" and VERSION.search(run.name) and self.run_dir is None:
            self.run_dir, self.resumes_run = run, True  # the same folder: one event log, one checkpoint history
        super().parse_arguments(parser, [*args, f"--ckpt_path={ckpt}"])
        if command == "fit":
            arguments.refuse_changed_model_flags(self.config.model, saved["hyper_parameters"], args, ckpt)

    def instantiate_classes(self) -> None:
        if not self.instantiate:
            return
        super().instantiate_classes()
        # Lightning copies a checkpoint over the old one; ours is written beside and renamed (atomic.py).
        self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = self.config_init.trainer
        if self.run_dir is not None:  # a resumed run's folder, a trial's, a compare run's
            kwargs["logger"] = RunLogger(save_dir=str(self.run_dir.parent.parent), name=self.run_dir.parent.name,
                                         version=self.run_dir.name)
        elif trainer.get("logger") in (None, True):  # Lightning's default logger, with a version claimed atomically
            cell = self.checkpoint_cell or self.model.hparams.cell_type
            kwargs["logger"] = RunLogger(save_dir=trainer.get("default_root_dir") or os.getcwd(),
                                         run_name=run_name(self.datamodule.hparams, cell))
        if self.resumes_run:
            self.save_config_callback = None  # a resumed run keeps the config.yaml it started with
        # Output to a file (a scheduler, nohup, > run.log): Rich / TQDM draw nothing per epoch
        # there, so the Trainer gets plain lines instead, unless it was given a bar or none.
        given = trainer.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        if (not (sys.stdout and sys.stdout.isatty()) and trainer.get("enable_progress_bar") is not False
                and not any(isinstance(c, ProgressBar) for c in given + list(self.trainer_defaults.get("callbacks", [])))):
            kwargs["callbacks"] = [*given, LineProgressBar()]
        return super().instantiate_trainer(**kwargs)

    def run(self) -> None:
        """The command's Trainer method on the model and the data; fit then tests its best checkpoint."""
        method = {flag: self.config_init[flag] for flag in self.method_flags}
        getattr(self.trainer, self.command)(self.model, datamodule=self.datamodule, **method)
        if self.command != "fit" or not self.config_init.test_after_fit:
            return
        if "test" not in self.datamodule.dataset:
            rank_zero_info("This data has no test split: skipping the test after fit.")
            return
        best = next(c for c in self.trainer.checkpoint_callbacks if c.monitor).best_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or "last")


def run_fit(args: list[str], callbacks: list | None = None, run_dir: Path | None = None,
            description: str = "") -> ProjectCLI:
    """Fit (and test) with these fit flags; ``callbacks`` join the Trainer's (tune's pruning);
    ``run_dir``: the run's folder (``<root>/<name>/<version>``) instead of a new one."""
    cli = ProjectCLI("fit", args, callbacks=callbacks, run_dir=run_dir, description=description)
    cli.run()
    return cli

