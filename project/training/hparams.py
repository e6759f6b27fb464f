"""TensorBoard's HParams tab: one row per run (named for what it is, runs.py), with the settings
that tell runs apart beside the figures to sort them by: ``best_val/acc`` and ``best_val/f1``
(the validation of the epoch the kept checkpoint comes from) and ``test/acc``, ``test/f1``.

Written with TensorBoard's own HParams summaries, not ``SummaryWriter.add_hparams`` (which opens
a new run per call) nor torch's ``hparams()`` (which stores booleans as 1.0 / 0.0). TensorBoard
takes the tab's list of settings from one run's summary, whichever it finds first, and shows the
first five of it: so every run lists every setting (one that another run changed is then always
there to tick), those it *chose* first (set to other than the default, plus the data, the cell
type and the seed, which runs are compared on: marked ``differs``, which TensorBoard sorts first). Whole numbers are written as text: TensorBoard
shows a number as 42.000. Paths, worker counts, column names and separators say nothing about a
model and are left out."""

import inspect
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.plugins.hparams import plugin_data_pb2, summary_v2

from project import tags
from project.compat import logged_step
from project.training.runs import data_name

METRICS = {tags.BEST_VAL_ACC: "best validation accuracy", tags.BEST_VAL_F1: "best validation macro-F1",
           tags.TEST_ACC: "test accuracy", tags.TEST_F1: "test macro-F1"}
DATA_KNOBS = ("tokenizer", "max_vocab_size", "min_frequency", "lowercase", "max_length", "batch_size",
              "bucket_size", "train_fraction", "validation_size")
SKIPPED_MODEL = ("vocab_size", "label_names", "sep_id", "multi_label")  # taken from the data, not chosen
# The Trainer settings a run may choose, at their defaults (cli.py takes max_epochs from here).
TRAINER_DEFAULTS = {"max_epochs": 10, "max_steps": -1, "accumulate_grad_batches": 1, "gradient_clip_val": None,
                    "precision": None}


def _value(value: Any) -> bool | float | str:
    if isinstance(value, bool | float):
        return value
    if isinstance(value, str) and os.sep in value:
        return Path(value).name  # a file: its name
    return str(value)  # a whole number too (see the module's docstring)


def settings(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[dict[str, Any], set[str]]:
    """Every setting worth a column, and the names of those this run chose."""
    data = trainer.datamodule.hparams if trainer.datamodule is not None else {}
    given = {**{k: v for k, v in pl_module.hparams.items() if k not in SKIPPED_MODEL and not k.startswith("_")},
             **{k: data[k] for k in DATA_KNOBS if k in data}}
    defaults = {**_defaults(type(pl_module)), **(_defaults(type(trainer.datamodule)) if data else {})}
    chosen = {k for k, v in given.items() if k in defaults and v != defaults[k]}
    for knob, default in TRAINER_DEFAULTS.items():
        value = trainer.precision if knob == "precision" else getattr(trainer, knob, None)
        if value is not None and value not in (default, "32-true"):
            given[knob] = value
            chosen.add(knob)
    given["data"], given["seed"] = data_name(data) if data else "unknown", int(os.environ.get("PL_GLOBAL_SEED", 0))
    if "seed" in data:  # the DataModule's: splits and batch order
        given["data_seed"] = data["seed"]
        chosen |= {"data_seed"} if data["seed"] != defaults.get("seed") else set()
    chosen |= {"data", "cell_type", "seed"}
    return {k: _value(v) for k, v in given.items() if v is not None}, chosen & set(given)


def _defaults(cls: type) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


class HParams(Callback):
    def __init__(self) -> None:
        self.logged = False  # the test after fit is the same run: its settings are written once
        self.best: tuple[float, float] | None = None  # (val acc, val f1) of the best val/f1 so far

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.logged or not isinstance(trainer.logger, TensorBoardLogger) or not trainer.is_global_zero:
            return
        self.logged = True
        # hparams.yaml keeps every argument; the model and the DataModule save theirs with
        # logger=False, so that Lightning writes no placeholder metric to the tab.
        params = {**pl_module.hparams, **(trainer.datamodule.hparams if trainer.datamodule else {})}
        trainer.logger.log_hyperparams({k: v for k, v in params.items() if not k.startswith("_")})
        values, chosen = settings(trainer, pl_module)
        columns = [summary_v2.HParam(name, summary_v2.Discrete([False, True]) if isinstance(values[name], bool) else None)
                   for name in values]
        config = summary_v2.hparams_config_pb(
            columns, [summary_v2.Metric(tag, display_name=text) for tag, text in METRICS.items()])
        # TensorBoard orders the list by ``differs``, then by name, and shows the first five: the
        # settings this run chose are marked so (HParam has no such argument: set in the proto).
        plugin = config.value[0].metadata.plugin_data
        data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
        for info in data.experiment.hparam_infos:
            info.differs = info.name in chosen
        plugin.content = data.SerializeToString()
        writer = trainer.logger.experiment.file_writer
        writer.add_summary(config)
        # The row's name: the run folder's (what it is: data, cell, version), not a hash.
        name = Path(trainer.logger.log_dir).name
        writer.add_summary(summary_v2.hparams_pb(values, trial_id=name, start_time_secs=int(time.time())))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or trainer.state.fn != "fit" or tags.VAL_F1 not in metrics or trainer.logger is None:
            return
        f1 = float(metrics[tags.VAL_F1])
        if self.best is None or f1 > self.best[1]:  # the checkpoint's choice: strictly better val/f1
            self.best = (float(metrics[tags.VAL_ACC]), f1)
        # At every validation, so that the tab's value (a series' last) is right after any epoch.
        trainer.logger.log_metrics({tags.BEST_VAL_ACC: self.best[0], tags.BEST_VAL_F1: self.best[1]},
                                   step=logged_step(trainer))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}  # a resumed run goes on from its best so far

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
