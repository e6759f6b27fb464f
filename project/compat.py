"""Every use of a dependency's private API, in one place, each with a test in tests/test_compat.py
that fails when the dependency moves it (pyproject pins each to the minors tested). Nothing else
in the package touches a private attribute of Lightning, datasets or jsonargparse: a test greps
for it (tests/test_compat.py). Each function says why no public API does the job."""

import lightning as L
from datasets import Dataset
from lightning.pytorch.callbacks import ModelCheckpoint


def logged_step(trainer: L.Trainer) -> int:
    """The step Lightning logs epoch-level metrics at (validation's, the training epoch's, the
    test's), so that images and texts of an epoch sit at the same step as its scalars. It differs
    from ``global_step`` under gradient accumulation and in a test after fit; Lightning 2.6 keeps
    it on the fit loop only."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def uses_distributed_sampler(trainer: L.Trainer) -> bool:
    """``Trainer(use_distributed_sampler=...)`` as given: Lightning 2.6 keeps it on a private
    connector only."""
    return trainer._accelerator_connector.use_distributed_sampler


def fingerprint(dataset: Dataset) -> str:
    """The hash ``datasets`` keys its own cache on (a Hub dataset's files and revision, and every
    transform since): datasets 5.x has no public accessor for it."""
    return dataset._fingerprint


def save_last_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer) -> None:
    """Write ``last.ckpt`` now, unless this step's is written already. Lightning 2.6 rewrites it
    only where its own schedule says so; the method that does the writing is private."""
    if callback._last_global_step_saved != trainer.global_step:
        callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


__all__ = ["fingerprint", "logged_step", "save_last_checkpoint", "uses_distributed_sampler"]
