"""Checkpoints: written atomically, checked when read, kept when a run is stopped, and still
found when a run folder is moved.

Lightning's own save can leave an empty ``last.ckpt`` after a kill (see AtomicCheckpointIO).
Here every file is written beside its final name and renamed into place: a reader sees the
previous whole file or the new whole file; a full disk removes the partial file and stops with
one line. A file given to ``fit / validate / test / predict`` is opened first, so a missing,
truncated or foreign one is refused with one line instead of a traceback.
"""

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from project.atomic import atomic_write, remove_stale
from project.compat import save_last_checkpoint
from project.errors import Stopped
from project.training.runs import RunLogger

class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints streamed by ``torch.save`` into a partial file beside their final name and
    renamed into place (atomic.py).

    Kept because Lightning 2.6's own save falls short; tests/test_atomic.py SIGKILLs a save
    before each of its file operations. Lightning serializes the whole checkpoint into memory
    (a 512 MB checkpoint: +512 MB peak RSS; ours +0), writes it to a ``tempfile.mkstemp`` file
    in $TMPDIR and moves that onto the checkpoint. With $TMPDIR on another file system (a tmpfs
    /tmp; a node's local /tmp, checkpoints on a network share) the move copies INTO the
    checkpoint, and a kill there left it empty (0 bytes): ``--ckpt_path last`` was lost. On one
    file system it stayed whole, but each kill mid-write left a checkpoint-sized file in
    $TMPDIR. Ours left the old whole file at every kill, and nothing in $TMPDIR."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):  # a remote store: fsspec's transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(final, "xb", fix="point --trainer.default_root_dir at another disk") as f:
            torch.save(checkpoint, f)
        return None


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, which also finds its files when the run folder was moved or
    copied: the paths it saved are re-rooted in the folder it now writes to (Lightning keeps
    the old absolute ``best_model_path``, so the test after a resumed fit would read a file
    that is gone, or the old copy's)."""

    @property
    def state_key(self) -> str:
        # Saved under Lightning's class name, as before this class existed: older runs resume.
        key = super().state_key
        return key.replace(RunCheckpoint.__name__, ModelCheckpoint.__name__, 1) if type(self) is RunCheckpoint else key

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # A process killed while writing left its partial file: remove those of processes that
        # are gone, so a resumed run does not keep the disk full of them. Global rank 0 alone
        # writes checkpoints, so the pids are of this machine.
        if self.dirpath and trainer.is_global_zero:
            remove_stale(Path(self.dirpath))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved, here = state_dict.get("dirpath"), self.dirpath
        if saved and here and saved != here:
            def moved(path: Any) -> Any:
                return os.path.join(here, os.path.basename(path)) if isinstance(path, str) and path else path

            state_dict = {**state_dict, "dirpath": here,
                          **{k: moved(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                   "last_model_path")},
                          "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)


class LastCheckpoint(RunCheckpoint):
    """``last.ckpt`` after every epoch (its validation included), at the end of training, and
    every N training steps, so a run killed mid-epoch loses at most N steps. Ctrl-C (SIGINT)
    and SIGTERM (what a cluster scheduler sends before pre-emption) lose none: the run finishes
    the step it is in (or the validation it is in), writes ``last.ckpt`` there and stops; a
    second Ctrl-C stops at once. A run that fails before its first step removes its new run
    folder."""

    def __init__(self, every_n_train_steps: int = 500) -> None:
        """
        Args:
            every_n_train_steps: Write ``last.ckpt`` after every this many training steps; 0: never.
        """
        # No version counter: this and the main checkpoint both write the one last.ckpt.
        super().__init__(every_n_train_steps=every_n_train_steps or None, save_last=True, save_top_k=0,
                         enable_version_counter=False)
        self.stop_signal: int | None = None
        self._handlers: dict[int, Any] = {}

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        self.stop_signal = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after this step, with last.ckpt saved "
              f"(Ctrl-C again stops at once).", flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Replaces Lightning's own SIGTERM handler, which stops in the middle of validation.
        self._handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def _write_last(self, trainer: L.Trainer) -> None:
        save_last_checkpoint(self, trainer)

    def _stop_if_asked(self, trainer: L.Trainer, step_end: bool = False) -> None:
        asked = self.stop_signal is not None
        if trainer.world_size > 1:
            # Every rank stops at the same step, or the others wait forever for its gradients. The
            # ranks agree every 10 steps (and at each validation): a collective and a GPU sync
            # per step would slow every step for a signal that comes once.
            if step_end and trainer.global_step % 10:
                return
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        if asked:
            self._write_last(trainer)
            raise Stopped(self.stop_signal or signal.SIGTERM, trainer.global_step, self.last_model_path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Not after a batch that validation follows: Lightning resumes such a checkpoint past
        # that validation (it takes it as done), so the best checkpoint kept could differ. The
        # save and a requested stop wait for the validation's end (on_train_epoch_end at the
        # end of an epoch, on_validation_end within one).
        every = trainer.val_check_batch
        if trainer.is_last_batch or (isinstance(every, int) and (batch_idx + 1) % every == 0):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._stop_if_asked(trainer, step_end=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking and trainer.state.fn == "fit" and not trainer.is_last_batch:
            self._after_validation(trainer)  # a validation inside the epoch (val_check_interval < 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # After the epoch's validation and after the main checkpoint's save of a new best (it
        # runs first): a last.ckpt written before that would resume without this epoch's best.
        self._after_validation(trainer)

    def _after_validation(self, trainer: L.Trainer) -> None:
        # Lightning 2.6 rewrites last.ckpt only where a best checkpoint was saved too: a run
        # whose final epochs did not improve would leave last.ckpt behind its end.
        self._write_last(trainer)
        self._stop_if_asked(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_last(trainer)  # max_steps can end a run between two validations

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if trainer.global_step == 0 and isinstance(trainer.logger, RunLogger):
            trainer.logger.discard()
