"""Run folders (``<root>/lightning_logs/version_N``): how a run gets one, how a failed run gives
it back, and how ``--ckpt_path last`` / ``best`` find a run's checkpoint.

Lightning's TensorBoard logger picks ``max(existing versions) + 1`` by listing the folder, so two
fits started together in one root both pick ``version_0`` and write over each other. Here the
number is claimed with ``mkdir``, which exactly one process wins. A run that fails before its
first training step (a bad setting found in setup, a refused checkpoint) removes the folder it
claimed, so what is left under ``lightning_logs/`` is runs that trained.
"""

import os
import shutil
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from project.errors import UserError

FIX = "fix: pass the path of a checkpoint, or run fit without --ckpt_path first"


class RunLogger(TensorBoardLogger):
    """TensorBoard's logger, with a version folder claimed atomically (``version_N``)."""

    claimed = False  # this process made the folder: it may remove it

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0:  # other DDP ranks are given rank 0's folder (a broadcast)
            return version
        os.makedirs(self.root_dir, exist_ok=True)
        while True:
            try:
                os.mkdir(os.path.join(self.root_dir, f"version_{version}"))
            except FileExistsError:  # another fit took it between the listing and now
                version += 1
                continue
            self.claimed = True
            return version

    def discard(self) -> None:
        """Remove the folder this run claimed (a run that never trained)."""
        if not self.claimed or rank_zero_only.rank != 0:
            return
        if self._experiment is not None:
            self._experiment.close()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.claimed = False
        self._discarded = True

    def finalize(self, status: str) -> None:
        if not getattr(self, "_discarded", False):  # nothing to flush into a removed folder
            super().finalize(status)


def _newest(root: Path, pattern: str) -> Path | None:
    found = sorted(root.glob(f"lightning_logs/version_*/checkpoints/{pattern}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def find_checkpoint(which: str, root: Path) -> Path:
    """``last``: the newest run's ``last.ckpt``; ``best``: the newest run's best checkpoint."""
    if which == "last":
        if (last := _newest(root, "last.ckpt")) is None:
            raise UserError(f"--ckpt_path last: no lightning_logs/version_*/checkpoints/last.ckpt under {root}; {FIX}")
        return last
    if (best := _newest(root, "best-*.ckpt")) is None:
        raise UserError(f"--ckpt_path best: no lightning_logs/version_*/checkpoints/best-*.ckpt under {root}; {FIX}")
    return best
