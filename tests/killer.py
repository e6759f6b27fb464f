"""Stopping a test's own ``python -m project`` process at a point the test chooses, as a
pre-emption, an out-of-memory kill, a scheduler or a person would: the race with the process is
controlled, not won by polling from outside.

``kill_at_file_operation``: SIGKILL at a file operation (an audit event of Python's own) on a
path that matches a pattern, e.g. the rename of a partial cache entry onto its place.

``KillAtStep``, a callback: stop its own ``fit`` at a step, a validation, the test or a
checkpoint write."""

import os
import re
import signal
import sys
import threading

from lightning.pytorch.callbacks import Callback


def kill_at_file_operation(event: str, pattern: str) -> None:
    """SIGKILL this process at its first ``event`` (a Python audit event: ``open``, ``os.mkdir``,
    ``os.rename`` (os.replace too), ...) on a path that matches the regular expression
    ``pattern``, before the operation runs. Audit hooks cannot be removed: for a process that
    is to die (a fork server's child)."""
    wanted = re.compile(pattern)

    def hook(name: str, args: tuple) -> None:
        path = args[0] if args else None
        if name == event and isinstance(path, (str, bytes, os.PathLike)) and wanted.search(os.fsdecode(path)):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


class KillAtStep(Callback):
    """Stop this ``fit`` with signal ``send`` at a point ``phase`` names. SIGKILL is a kill with
    no cleanup and no final checkpoint; SIGTERM and SIGINT are what a scheduler and Ctrl-C send
    (the run is expected to save and stop). ``phase``: ``step`` after training step ``step``
    (before that step's checkpoint is written), ``validation`` during the first validation after
    step ``step``, ``test`` during the test after fit, ``save`` ``delay_ms`` after the first
    checkpoint of step ``step`` or later begins (usually inside the write of the file)."""

    def __init__(self, step: int, phase: str = "step", send: str = "SIGKILL", delay_ms: float = 0.0) -> None:
        self.step, self.phase, self.delay_ms = step, phase, delay_ms
        self.signum = signal.Signals[send]
        self.sent = False

    def _send(self) -> None:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
        if self.phase == "step" and trainer.global_step == self.step:
            self._send()

    def on_validation_batch_end(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
        if self.phase == "validation" and not trainer.sanity_checking and trainer.global_step >= self.step:
            self._send()

    def on_test_batch_end(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
        if self.phase == "test":
            self._send()

    def on_save_checkpoint(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
        if self.phase == "save" and trainer.global_step >= self.step and not self.sent:
            self.sent = True
            threading.Timer(self.delay_ms / 1000, os.kill, (os.getpid(), signal.SIGKILL)).start()
