"""Speed and memory of a fit. Per training epoch: train tokens/s and samples/s, the epoch's
seconds, peak memory and its growth over what fit started with. Per validation: validation
(inference) tokens/s and the seconds since fit started. At the end of training: the median
tokens/s of the timed steps and the trainable parameter count. The fit's clock and these
figures so far go into the run's record (record.py), for metrics.json and the model card.

Lightning's ``ThroughputMonitor`` would do the counting, but it synchronizes the GPU after every
step and reads each batch's token count on its own (one more GPU wait per step); here the counts
stay tensors and are read once per epoch."""

import resource
import statistics
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from project import tags
from project.errors import UserError
from project.training.record import RunRecord, record_of


def _status_mb(field: str) -> float | None:
    """VmRSS (resident now) or VmHWM (resident peak) of this process, Linux only."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def peak_memory_mb(device: torch.device) -> float:
    """Largest CUDA memory allocated by tensors, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device: torch.device) -> float:
    """Start measuring the peak afresh; returns what is in use now (MB). On Linux writing 5 to
    clear_refs resets VmHWM, so the peak of training is not the peak of loading the data."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    now = _status_mb("VmRSS")
    return now if now is not None else peak_memory_mb(device)


def _log(trainer: L.Trainer, pl_module: L.LightningModule, name: str, value: float) -> None:
    """Log one of this process's figures, from rank 0 only. They are per process on purpose (a
    rank's own speed and memory; under DDP the run trains devices x this), and every reader is
    rank 0's: the logger, LineProgressBar (disabled on the other ranks) and metrics.json
    (written by rank 0). ``rank_zero_only`` makes Lightning's sync a no-op (no collective, no
    averaging); ``sync_dist=True`` only stops Lightning's epoch-level warning, which asks for it
    whatever ``rank_zero_only`` says."""
    if trainer.is_global_zero:
        pl_module.log(name, value, sync_dist=True, rank_zero_only=True)


class Throughput(Callback):
    def __init__(self, warmup_steps: int = 10) -> None:
        """
        Args:
            warmup_steps: Timed training steps left out of the run's median tokens/s (the
                allocator and thread pools warm up first); when a run has no more, all count.
        """
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise UserError(f"--throughput.warmup_steps is {warmup_steps}; fix: a whole number, 0 or more")
        self.warmup_steps = warmup_steps
        # The run's figures so far; a resumed run carries them in its checkpoint (state_dict).
        self.step_rates: list[float] = []  # train tokens/s of every timed step, in order
        self.epoch_seconds: list[float] = []
        self.peak_memory_mb: float | None = None  # the largest of every epoch's, every process's
        self.memory_growth_mb: float | None = None
        self.record = RunRecord()  # the Trainer's, from setup on: it holds the clock
        self._saved: dict[str, Any] | None = None  # a checkpoint's state, taken if fit resumes
        self._last_step_end: float | None = None
        # This epoch's timed steps: seconds, real tokens (tensors, read once at epoch end: reading
        # each on its own would make a GPU wait for every step), texts.
        self._steps: list[tuple[float, torch.Tensor, int]] = []

    def median_tokens_per_s(self) -> float | None:
        """The median train tokens/s of the timed steps, the first ``warmup_steps`` left out."""
        timed = self.step_rates[self.warmup_steps :] or self.step_rates
        return statistics.median(timed) if timed else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.record = record_of(trainer)

    def state_dict(self) -> dict[str, Any]:
        elapsed = self.record.elapsed_s()
        return {"elapsed_s": self.record.elapsed_before if elapsed is None else elapsed,
                "step_rates": torch.tensor(self.step_rates, dtype=torch.float32),  # 4 bytes a step
                "epoch_seconds": self.epoch_seconds, "peak_memory_mb": self.peak_memory_mb,
                "memory_growth_mb": self.memory_growth_mb}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning loads callback states for a test from a checkpoint too (the test after fit
        # loads the best one): only a resumed fit takes them, in on_fit_start, which follows.
        self._saved = state_dict

    # --- training ---

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        elapsed_before = self.record.elapsed_before
        if saved := self._saved:
            elapsed_before, self.step_rates = saved["elapsed_s"], saved["step_rates"].tolist()
            self.epoch_seconds = list(saved["epoch_seconds"])
            self.peak_memory_mb, self.memory_growth_mb = saved["peak_memory_mb"], saved["memory_growth_mb"]
        self._saved = None
        self.record.start_clock(elapsed_before)
        self._memory_before = reset_peak_memory(pl_module.device)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A fit resumed in the middle of an epoch starts there: on_train_epoch_start is not called.
        self._start_epoch()
        # Not at on_fit_start: a resumed fit with nothing left to train (Lightning skips the
        # training hooks then) reports no speed or memory, as it measured none.
        self._publish()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_epoch()

    def _start_epoch(self) -> None:
        # The first step of an epoch also waits for the DataLoader to start: it is not timed.
        self._last_step_end = None
        self._epoch_started = time.perf_counter()
        self._steps = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last_step_end is not None:  # one whole step: fetch, forward, backward, update
            self._steps.append((now - self._last_step_end, batch["lengths"].sum(), len(batch["lengths"])))
        self._last_step_end = now

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._steps:  # per process: under DDP the run trains devices x this
            seconds = [s for s, _, _ in self._steps]
            tokens = torch.stack([t for _, t, _ in self._steps]).tolist()
            self.step_rates += [t / s for t, s in zip(tokens, seconds)]
            _log(trainer, pl_module, tags.TRAIN_TOKENS_PER_S, sum(tokens) / sum(seconds))
            _log(trainer, pl_module, tags.TRAIN_SAMPLES_PER_S, sum(n for _, _, n in self._steps) / sum(seconds))
        if self._last_step_end is not None:  # first step to last, validation left out
            self.epoch_seconds.append(self._last_step_end - self._epoch_started)
            _log(trainer, pl_module, tags.EPOCH_S, self.epoch_seconds[-1])
        peak = peak_memory_mb(pl_module.device)
        growth = peak - self._memory_before  # over what fit started with
        self.peak_memory_mb = peak if self.peak_memory_mb is None else max(peak, self.peak_memory_mb)
        self.memory_growth_mb = growth if self.memory_growth_mb is None else max(growth, self.memory_growth_mb)
        _log(trainer, pl_module, tags.PEAK_MEMORY_MB, peak)
        _log(trainer, pl_module, tags.MEMORY_GROWTH_MB, growth)
        self._publish()

    def _publish(self) -> None:
        """The figures of the epochs trained so far, into the record."""
        record = self.record
        record.train_tokens_per_s_median = self.median_tokens_per_s()
        record.epoch_s = statistics.median(self.epoch_seconds) if self.epoch_seconds else None
        record.peak_memory_mb, record.memory_growth_mb = self.peak_memory_mb, self.memory_growth_mb

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        median = self.median_tokens_per_s()
        if trainer.logger is not None and median is not None:
            trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
            trainer.logger.log_metrics({tags.TRAIN_TOKENS_PER_S_MEDIAN: median, tags.TRAINABLE_PARAMS: trainable},
                                       step=trainer.global_step)

    # --- validation ---

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_started, self._val_tokens = time.perf_counter(), 0

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        self._val_tokens = self._val_tokens + batch["lengths"].sum()  # a tensor: no wait per batch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Inference speed: the forward passes and metric updates of the validation loop.
        seconds = time.perf_counter() - self._val_started
        _log(trainer, pl_module, tags.VAL_TOKENS_PER_S, float(self._val_tokens) / seconds)
        if (elapsed := self.record.elapsed_s()) is not None:  # wall clock of this validation (fit only)
            _log(trainer, pl_module, tags.ELAPSED_S, elapsed)
