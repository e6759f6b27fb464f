"""Run folders (``<root>/lightning_logs/<data>-<cell>-version_N``, e.g. ``ag_news-lstm-version_0``,
the name TensorBoard shows): how a run gets one, how a failed run gives it back, how its
epoch-level curves are laid out, and how ``--ckpt_path last`` / ``best`` find a run's checkpoint.

Lightning's TensorBoard logger picks ``max(existing versions) + 1`` by listing the folder, so two
fits started together in one root both pick ``version_0`` and write over each other. Here the
number is claimed with ``mkdir``, which exactly one process wins. A run that fails before its
first training step (a bad setting found in setup, a refused checkpoint) removes the folder it
claimed, so what is left under ``lightning_logs/`` is runs that trained. N counts over every run
in the root, whatever its data and cell, so ``version_N`` alone still names one run.

TensorBoard draws one chart per tag and one line per run folder. To put train and validation of
each metric on one chart (as Keras does), the epoch-level figures go to the run's ``train/`` and
``validation/`` sub-folders under one tag each (``tags.CURVES``); everything else stays in the run
folder. Lightning's extra ``epoch`` series is not written: the step axis is the training step.
"""

import os
import re
import shutil
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.tensorboard import SummaryWriter

from project import tags
from project.data import sources
from project.errors import UserError

VERSION = re.compile(r"(?:^|-)version_(\d+)$")  # a run folder's name ends so
LM_RUN = re.compile(r"-lm-version_\d+$")  # a pretrain run's (fit.py names it so)


def run_name(data: dict, cell_type: str) -> str:
    """What a run is, for its folder name: its data and its cell type."""
    return f"{data_name(data)}-{cell_type}"


def data_name(data: dict) -> str:
    """The data part of a run's name, from the DataModule's arguments: its source's name (a Hub
    dataset and its configuration, a folder's name, the training file's folder's name, a frame's
    name, or bbc_news, the default; sources.py)."""
    return sources.pick(data).name


FIX = "fix: pass the path of a checkpoint, or run fit without --ckpt_path first"


class RunLogger(TensorBoardLogger):
    """TensorBoard's logger, with a run folder claimed atomically (``<run_name>-version_N``) and
    train / validation curves on shared charts."""

    claimed = False  # this process made the folder: it may remove it

    def __init__(self, save_dir: str, name: str = "lightning_logs", version: int | str | None = None,
                 run_name: str = "", **kwargs) -> None:  # noqa: ANN003 - TensorBoardLogger's
        kwargs.setdefault("default_hp_metric", False)  # hparams.py declares the HParams tab's metrics
        super().__init__(save_dir, name=name, version=version, **kwargs)
        self.run_name = run_name
        self._run_version = version  # given (a resumed run's folder), or claimed on first use
        self._curves: dict[str, SummaryWriter] = {}

    @property
    def version(self) -> int | str:
        """This run's folder name under ``root_dir``: the one given, or one claimed with ``mkdir``."""
        if self._run_version is None:
            self._run_version = self._claim()
        return self._run_version

    def _claim(self) -> str:
        taken = [int(m.group(1)) for p in Path(self.root_dir).glob("*version_*") if (m := VERSION.search(p.name))]
        version = max(taken, default=-1) + 1
        name = lambda n: f"{self.run_name}-version_{n}" if self.run_name else f"version_{n}"  # noqa: E731
        if rank_zero_only.rank != 0:  # other DDP ranks are given rank 0's folder (a broadcast)
            return name(version)
        os.makedirs(self.root_dir, exist_ok=True)
        while True:
            try:
                os.mkdir(os.path.join(self.root_dir, name(version)))
            except FileExistsError:  # another fit took it between the listing and now
                version += 1
                continue
            self.claimed = True
            return name(version)

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        for key in [k for k in metrics if k in tags.CURVES]:
            sub, tag = tags.CURVES[key]
            if sub not in self._curves:
                self._curves[sub] = SummaryWriter(os.path.join(self.log_dir, sub))
            self._curves[sub].add_scalar(tag, float(metrics.pop(key)), step)
        if metrics:
            super().log_metrics(metrics, step)

    @rank_zero_only
    def save(self) -> None:
        super().save()
        for writer in self._curves.values():
            writer.flush()

    def _close_curves(self) -> None:
        for writer in self._curves.values():
            writer.close()
        self._curves = {}

    def discard(self) -> None:
        """Remove the folder this run claimed (a run that never trained)."""
        if not self.claimed or rank_zero_only.rank != 0:
            return
        self.experiment.close()  # opened now if it was not: the folder goes anyway
        self._close_curves()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.claimed = False
        self._discarded = True

    def finalize(self, status: str) -> None:
        if not getattr(self, "_discarded", False):  # nothing to flush into a removed folder
            super().finalize(status)
            self._close_curves()


def _newest(root: Path, pattern: str, language_model: bool) -> Path | None:
    found = sorted((p for p in root.glob(f"lightning_logs/*version_*/checkpoints/{pattern}")
                    if (LM_RUN.search(p.parent.parent.name) is not None) == language_model),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def find_checkpoint(which: str, root: Path, language_model: bool = False) -> Path:
    """``last``: the newest run's ``last.ckpt``; ``best``: the newest run's best checkpoint; of
    the classifier runs, or of the language model runs (``pretrain``'s, named ``...-lm-version_N``)."""
    if which == "last":
        if (last := _newest(root, "last.ckpt", language_model)) is None:
            raise UserError(f"--ckpt_path last: no lightning_logs/*version_*/checkpoints/last.ckpt under {root}; {FIX}")
        return last
    if (best := _newest(root, "best-*.ckpt", language_model)) is None:
        raise UserError(f"--ckpt_path best: no lightning_logs/*version_*/checkpoints/best-*.ckpt under {root}; {FIX}")
    return best
