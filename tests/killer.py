"""A callback for tests: stop its own ``fit`` process at a given point, as a pre-emption, an
out-of-memory kill, a scheduler or a person would.

``send`` SIGKILL is a kill with no cleanup and no final checkpoint; SIGTERM and SIGINT are
what a scheduler and Ctrl-C send (the run is expected to save and stop). ``phase`` says where:
``step`` after training step ``step`` (before that step's checkpoint is written), ``validation``
during the first validation after step ``step``, ``test`` during the test after fit, ``save``
``delay_ms`` after the first checkpoint of step ``step`` or later begins (usually inside the
write of the file)."""

import os
import signal
import threading

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
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
