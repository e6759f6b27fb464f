"""``fit``, ``validate``, ``test`` and ``pretrain``: Lightning's CLI over the model and the
DataModule, with the data's vocabulary size and class count linked into the model, the project's
callbacks as flags, and a given checkpoint checked before anything is built. ``pretrain`` is a
fit of the language model (language_model.py) on the unlabelled data (unlabeled.py), with the
callbacks that mean something for it; ``fit --model.init_from`` takes that run's tokenizer and
sizes. ``run_fit`` is the one way a fit is
started: by ``python -m project fit``, by each trial of ``tune`` (in its process) and by each run
of ``compare`` (in a child process of its own, ``cli.fit_in_child``).

``ProjectCLI`` is one command's parser and objects (LightningCLI with ``run=False``), built
through LightningCLI's public hooks only; ``run()`` calls the command's Trainer method."""

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities import rank_zero_info

from project.atomic import atomic_write, check_writable
from project.data.datamodule import TextDataModule
from project.data.unlabeled import LanguageModelData
from project.errors import UserError
from project.model import pretrained
from project.model.checkpoint_format import LM_DATAMODULE_KEY, read_checkpoint
from project.model.classifier import TextClassifier
from project.model.language_model import LanguageModel
from project.parser import check_config_files
from project.training import arguments
from project.training.calibration import Calibration
from project.training.checkpoints import AtomicCheckpointIO, LastCheckpoint, RunCheckpoint
from project.training.grad_norm import GradNorm
from project.training.hparams import TRAINER_DEFAULTS, HParams
from project.training.metrics_file import MetricsFile
from project.training.model_card import ModelCard
from project.training.progress import LineProgressBar, ModelTable, TerminalProgressBar
from project.training.runs import VERSION, RunLogger, find_checkpoint, run_name
from project.training.samples import TextSamples
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
# Tuner.lr_find's arguments that the command sets itself, not flags.
LR_FIND_SKIP = {"model", "train_dataloaders", "val_dataloaders", "dataloaders", "datamodule", "method", "update_attr",
                "attr_name"}


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
                 description: str = "", add_flags: Callable[[LightningArgumentParser], None] | None = None,
                 find_lr: bool = False) -> None:
        self.command, self.run_dir, self.instantiate, self.add_flags = command, run_dir, instantiate, add_flags
        self.find_lr = find_lr  # lr_find: Lightning's Tuner instead of the Trainer method
        self.checkpoint_cell: str | None = None  # validate / test: the checkpoint's cell type, not the config's
        self.resumes_run = False
        self.method_flags: list[str] = []
        self.pretrain = command == "pretrain"
        super().__init__(
            LanguageModel if self.pretrain else TextClassifier,
            LanguageModelData if self.pretrain else TextDataModule,
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
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(LearningRates, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(GradNorm, "grad_norm")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.set_defaults({
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.enable_version_counter": False,  # last.ckpt is shared with last_checkpoint
            "trainer.max_epochs": TRAINER_DEFAULTS["max_epochs"],
            # The DataModule's length-bucketed sampler splits batches across ranks itself.
            "trainer.use_distributed_sampler": False,
        })
        if self.pretrain:  # a language model: kept by validation perplexity, no labels to report on
            parser.add_lightning_class_args(MetricsFile, "metrics_file")
            parser.add_lightning_class_args(TextSamples, "samples")
            parser.add_lightning_class_args(ModelCard, "model_card")
            parser.set_defaults({"checkpoint.monitor": "val/loss", "checkpoint.mode": "min",
                                 "checkpoint.filename": "best-epoch={epoch}-val_perplexity={val/perplexity:.2f}",
                                 "trainer.max_epochs": 5})
        else:
            parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
            parser.link_arguments("data.sep_id", "model.sep_id", apply_on="instantiate")
            parser.link_arguments("data.multi_label", "model.multi_label", apply_on="instantiate")
            parser.add_lightning_class_args(Calibration, "calibration")
            parser.add_lightning_class_args(ValidationReport, "validation_report")
            parser.add_lightning_class_args(HParams, "hparams")
            parser.add_lightning_class_args(MetricsFile, "metrics_file")
            parser.add_lightning_class_args(ModelCard, "model_card")
            parser.add_lightning_class_args(EarlyStop, "early_stopping")
            parser.add_argument("--test_after_fit", type=bool, default=True,
                                help="After fit, test the best checkpoint on the test split (when there is one).")
            parser.set_defaults({"checkpoint.monitor": "val/f1",
                                 "checkpoint.filename": "best-epoch={epoch}-val_f1={val/f1:.4f}"})
        # The Trainer method's own arguments (--ckpt_path ...), as Lightning's subcommands have them;
        # lr_find's: the Tuner's search range and length.
        if self.find_lr:
            self.method_flags = parser.add_method_arguments(Tuner, "lr_find", skip=LR_FIND_SKIP)
        else:
            self.method_flags = parser.add_method_arguments(Trainer, self.method, skip=self.subcommands()[self.method])
        if self.add_flags:
            self.add_flags(parser)

    @property
    def method(self) -> str:
        """The Trainer method the command calls: pretrain is a fit."""
        return "fit" if self.pretrain else self.command

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Check config files, then resolve and open a given checkpoint now, so that a bad one is
        one line and nothing is written. ``fit`` from a run's ``last.ckpt`` (``--ckpt_path
        last``: the newest run's) continues that run in its own folder, wherever it now lies."""
        check_config_files(args)
        super().parse_arguments(parser, args)
        if not self.instantiate:
            return
        config, command = self.config, self.method
        arguments.check_trainer(config.trainer)
        strategy = config.trainer.get("strategy")
        if (not self.pretrain and config.model.get("gradual_unfreezing") and isinstance(strategy, str)
                and strategy.startswith("ddp") and "find_unused_parameters_true" not in strategy):
            # DDP waits for a gradient of every parameter it wrapped; a frozen layer gives none.
            raise UserError(f"--model.gradual_unfreezing freezes layers, which --trainer.strategy {strategy} then "
                            f"waits for; fix: --trainer.strategy {strategy.split('_find')[0]}_find_unused_parameters_true")
        seed = config.get("seed_everything")
        if type(seed) is int and not 0 <= seed < 2**32:  # numpy's range; Lightning's is wider
            raise UserError(f"--seed_everything is {seed}; fix: a seed from 0 to {2**32 - 1} (true: a random one)")
        ckpt, root = config.get("ckpt_path"), Path(config.trainer.default_root_dir or ".")
        if command in ("fit", "validate", "test") and not self.find_lr:  # each writes a run folder under root
            where = config.trainer.default_root_dir or "the current folder"
            check_writable(root / "lightning_logs" if (root / "lightning_logs").is_dir() else root,
                           f"--trainer.default_root_dir DIR, a folder you can write in ({where} is not)")
        if not self.pretrain and config.model.get("init_from"):
            self._take_pretrained(parser, args)
        if ckpt is None and command in ("validate", "test"):
            raise UserError(f"{command} needs a trained model, not a new random one; fix: --ckpt_path best or "
                            f"--ckpt_path last (the newest run under {root}), or the path of a .ckpt")
        if ckpt is None:
            return
        if ckpt == "best" and command == "fit":
            raise UserError("fit --ckpt_path best: fit goes on from where a run stopped; fix: --ckpt_path last, "
                            "or the path of a checkpoint")
        if ckpt in ("last", "best"):
            ckpt = str(find_checkpoint(ckpt, root, self.pretrain))
        saved = read_checkpoint(ckpt)
        self.checkpoint_cell = saved["hyper_parameters"].get("cell_type")
        run = Path(ckpt).resolve().parent.parent
        if command == "fit" and Path(ckpt).name == "last.ckpt" and VERSION.search(run.name) and self.run_dir is None:
            self.run_dir, self.resumes_run = run, True  # the same folder: one event log, one checkpoint history
        if self.pretrain != (LM_DATAMODULE_KEY in saved):
            raise UserError(f"{ckpt}: a {'classifier' if self.pretrain else 'language model'}'s checkpoint; fix: "
                            f"{'fit' if self.pretrain else 'pretrain'} --ckpt_path {ckpt} goes on with it"
                            + ("" if self.pretrain else f", fit --model.init_from {ckpt} starts a classifier from it"))
        super().parse_arguments(parser, [*args, f"--ckpt_path={ckpt}"])
        if not self.pretrain and self.config.model.get("init_from"):
            self._take_pretrained(parser, [*args, f"--ckpt_path={ckpt}"])
        if command == "fit":
            arguments.refuse_changed_model_flags(self.config.model, saved["hyper_parameters"], args, ckpt,
                                                 self.model_class)

    def _take_pretrained(self, parser: LightningArgumentParser, args: list[str]) -> None:
        """``--model.init_from``: the classifier takes the language model's sizes and the data its
        tokenizer, unless a flag says otherwise (then refused, in one line)."""
        init_from = self.config.model.init_from
        saved = pretrained.read_pretrained(init_from)["hyper_parameters"]
        taken = {f"model.{key}": saved[key] for key in pretrained.SHAPE}
        taken["data.tokenizer"] = str(pretrained.tokenizer_of(init_from))
        defaults = parser.get_defaults()
        changed = [f"--{key} {self.config[key]} (the language model's: {value})" for key, value in taken.items()
                   if self.config[key] != value and (self.config[key] != defaults[key]
                                                     or any(a.split("=")[0] == f"--{key}" for a in args))]
        if changed:
            raise UserError(f"--model.init_from {init_from} fixes {', '.join(changed)}; fix: drop those flags (fit "
                            f"takes the language model's)")
        super().parse_arguments(parser, [*args, *(f"--{key}={value}" for key, value in taken.items())])

    def instantiate_classes(self) -> None:
        if not self.instantiate:
            return
        super().instantiate_classes()
        # Lightning copies a checkpoint over the old one; ours is written beside and renamed (atomic.py).
        self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = self.config_init.trainer
        if self.find_lr:  # a search, not a run: no run folder (it writes its plot under lr_find/)
            kwargs["logger"] = False
        elif self.run_dir is not None:  # a resumed run's folder, a trial's, a compare run's
            kwargs["logger"] = RunLogger(save_dir=str(self.run_dir.parent.parent), name=self.run_dir.parent.name,
                                         version=self.run_dir.name)
        elif trainer.get("logger") in (None, True):  # Lightning's default logger, with a version claimed atomically
            cell = self.checkpoint_cell or self.model.hparams.cell_type
            name = run_name(self.datamodule.hparams, cell) + ("-lm" if self.pretrain else "")
            kwargs["logger"] = RunLogger(save_dir=trainer.get("default_root_dir") or os.getcwd(), run_name=name)
        if self.resumes_run:
            self.save_config_callback = None  # a resumed run keeps the config.yaml it started with
        # Output to a file (a scheduler, nohup, > run.log): Rich / TQDM draw nothing per epoch
        # there, so the Trainer gets plain lines instead; on a terminal, Rich's bar counting
        # epochs as the rest does (progress.py). Unless it was given a bar or none.
        given = trainer.get("callbacks") or []
        given = given if isinstance(given, list) else [given]

        def ours_unless(switch: str, kind: type) -> bool:  # the user turned it off, or gave one of that kind
            return trainer.get(switch) is not False and not any(
                isinstance(c, kind) for c in given + list(self.trainer_defaults.get("callbacks", [])))

        if ours_unless("enable_progress_bar", ProgressBar):
            terminal = sys.stdout and sys.stdout.isatty()
            given = kwargs["callbacks"] = [*given, TerminalProgressBar() if terminal else LineProgressBar()]
        if ours_unless("enable_model_summary", ModelSummary):
            kwargs["callbacks"] = [*given, ModelTable()]  # Lightning's own, without its FLOPs of 0 (progress.py)
        return super().instantiate_trainer(**kwargs)

    def run(self) -> None:
        """The command's Trainer method on the model and the data; fit then tests its best checkpoint."""
        method = {flag: self.config_init[flag] for flag in self.method_flags}
        if self.find_lr:
            return self._find_lr(method)
        if self.trainer.logger is not None and self.trainer.is_global_zero:  # which run this is, before it runs
            print(f"Run folder: {self.trainer.logger.log_dir}", flush=True)
        # Our bars print the test / validate figures, 4 digits (progress.py): not Lightning's table too.
        ours = any(isinstance(c, TerminalProgressBar | LineProgressBar) for c in self.trainer.callbacks)
        if "verbose" in method and ours:
            method["verbose"] = False
        getattr(self.trainer, self.method)(self.model, datamodule=self.datamodule, **method)
        if self.command != "fit" or not self.config_init.test_after_fit:
            return
        if "test" not in self.datamodule.dataset:
            rank_zero_info("This data has no test split: skipping the test after fit.")
            return
        best = next(c for c in self.trainer.checkpoint_callbacks if c.monitor).best_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or "last", verbose=not ours)


    def _find_lr(self, settings: dict[str, Any]) -> None:
        """Lightning's learning-rate range test (Smith 2017): ``num_training`` steps from ``min_lr``
        to ``max_lr``; print the suggestion and save the loss curve. The weights are put back after."""
        finder = Tuner(self.trainer).lr_find(self.model, datamodule=self.datamodule, update_attr=False, **settings)
        if finder is None:  # not rank 0
            return
        suggested = finder.suggestion()
        folder = Path(self.trainer.default_root_dir) / "lr_find"
        folder.mkdir(parents=True, exist_ok=True)
        name = run_name(self.datamodule.hparams, self.model.hparams.cell_type) + ("-lm" if self.pretrain else "")
        plot = folder / f"{name}.png"
        with atomic_write(plot, "xb", fix="point --trainer.default_root_dir at another disk") as f:
            finder.plot(suggest=True).savefig(f, format="png")
        if suggested is None:
            print(f"No learning rate suggested: the loss did not fall steadily between {settings['min_lr']:g} and "
                  f"{settings['max_lr']:g}; see {plot}, or widen --min_lr / --max_lr or raise --num_training")
            return
        command = "pretrain" if self.pretrain else "fit"
        print(f"Suggested learning rate: {suggested:.3g} (now {self.model.hparams.learning_rate:g}); "
              f"python -m project {command} --model.learning_rate {suggested:.3g} ... uses it. Loss curve: {plot}")


# Lines Lightning 2.6 prints at every Trainer that tell the user nothing: an advert for its cloud
# logger ("💡 Tip: ... try installing litlogger"), and that it keeps fit's own ModelTable.
NOT_FOR_USERS = ("💡 Tip:", "Trainer already configured with model summary callbacks")


def _not_for_users(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(NOT_FOR_USERS)


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_for_users)


def run_fit(args: list[str], callbacks: list | None = None, run_dir: Path | None = None,
            description: str = "") -> ProjectCLI:
    """Fit (and test) with these fit flags; ``callbacks`` join the Trainer's (tune's pruning);
    ``run_dir``: the run's folder (``<root>/<name>/<version>``) instead of a new one."""
    cli = ProjectCLI("fit", args, callbacks=callbacks, run_dir=run_dir, description=description)
    cli.run()
    return cli

