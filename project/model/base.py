"""What every model of this project shares around its own steps: the trust contract (the random
state in each checkpoint, so a resumed run draws the same dropout masks; a training loss that is
not finite stops the run in one line; the checkpoint's format), the lengths kept on the host,
the line about CPU mixed precision, and the optimizer and learning-rate schedule made from the
knobs. ``TextClassifier`` (classifier.py) and ``LanguageModel`` (language_model.py) are
LightningModules on top of it; their hparams carry ``optimizer``, ``learning_rate``,
``weight_decay``, ``lr_schedule``, ``warmup`` and ``cell_type``."""

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from project.errors import UserError
from project.model.checkpoint_format import FORMAT, FORMAT_KEY, upgrade
from project.model.encoders import autocast_runs


def check_knobs(sizes: dict[str, int], shares: dict[str, float], dropouts: dict[str, float], drop_mult: float,
                learning_rate: float, weight_decay: float, warmup: float) -> dict[str, float]:
    """Refuse, in one line, a knob no model can be built or trained with; return ``dropouts``
    scaled by ``drop_mult``."""
    for knob, value in sizes.items():
        if value < 1:
            raise UserError(f"--model.{knob} is {value}; fix: a size of 1 or more")
    for knob, value in {**dropouts, **shares}.items():
        if not 0 <= value < 1:
            raise UserError(f"--model.{knob} is {value}; fix: a share from 0 up to (not including) 1")
    scaled = {knob: value * drop_mult for knob, value in dropouts.items()}
    if drop_mult < 0 or max(scaled.values()) >= 1:
        raise UserError(f"--model.drop_mult {drop_mult} makes a dropout {max(scaled.values()):g}; fix: a "
                        f"multiplier of 0 or more that keeps every dropout below 1")
    if learning_rate <= 0:
        raise UserError(f"--model.learning_rate is {learning_rate}; fix: a rate above 0")
    if weight_decay < 0:
        raise UserError(f"--model.weight_decay is {weight_decay}; fix: 0 or more")
    if not 0 < warmup < 1:
        raise UserError(f"--model.warmup is {warmup}; fix: a share of the steps, above 0 and below 1")
    return scaled


class RecurrentModule(L.LightningModule):
    _nonfinite: torch.Tensor | None = None  # True if a training loss since the last check was nan / inf
    _unchecked_from = 0
    _check_each_step_on = ("cpu",)  # devices where reading the loss makes nothing wait

    def setup(self, stage: str) -> None:
        self._say_encoder_precision()

    def _say_encoder_precision(self) -> None:
        """At the start of a Trainer command: one line when CPU mixed precision runs the recurrent
        layers in fp32 (encoders.autocast_runs), so that no speed or memory figure is misread."""
        precision = str(self.trainer.precision)
        if (not precision.endswith("-mixed") or self.trainer.strategy.root_device.type != "cpu"
                or getattr(self, "_said_precision", None) == precision):  # once: not again for the test after fit
            return
        self._said_precision = precision
        dtype, cell = (torch.bfloat16 if precision.startswith("bf16") else torch.float16), self.hparams.cell_type
        if not autocast_runs(cell, dtype):
            rank_zero_info(f"Precision {precision}: the {cell.upper()} layers run in fp32 (torch has no {str(dtype)[6:]} "
                           f"{cell.upper()} kernel for this CPU); the rest of the model runs in {precision}.")

    def on_train_start(self) -> None:
        self._nonfinite, self._unchecked_from = None, self.global_step

    # --- the random state travels with checkpoints: a resumed run draws the same dropout masks ---

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._check_loss()  # no checkpoint of weights a nan / inf loss may have spoilt
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["schedule_steps"] = getattr(self, "schedule_steps", None)
        checkpoint[FORMAT_KEY] = FORMAT

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Read before configure_optimizers, which checks that a resumed run keeps its schedule.
        upgrade(checkpoint)  # an older format's checkpoint, in today's (checkpoint_format.py)
        self.resumed_schedule_steps = checkpoint.get("schedule_steps")
        if "rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["rng_state"]["torch"])
            if torch.cuda.is_available() and "cuda" in checkpoint["rng_state"]:
                torch.cuda.set_rng_state_all(checkpoint["rng_state"]["cuda"])

    # --- steps ---

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        # The lengths stay on the host: packing (the CUDA path) reads them there and the poolers
        # copy them over without waiting; on the GPU, every read would wait for its queued work.
        rest = {k: v for k, v in batch.items() if k != "lengths"}
        return {**super().transfer_batch_to_device(rest, device, dataloader_idx), "lengths": batch["lengths"]}

    def checked(self, loss: torch.Tensor) -> torch.Tensor:
        """The training step's ``loss``, watched. A loss that is not finite stops the run: every later step would only spread the nan.
        # Reading the loss costs nothing on CPU, but on a GPU it waits for all queued work, each
        # step: there a flag stays on the device and is read at the steps Lightning logs (it
        # reads the logged loss then anyway), at an epoch's end and before a checkpoint is saved."""
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        self._last_loss, self._last_step = loss.detach(), self.global_step
        every = 1 if loss.device.type in self._check_each_step_on else max(1, self.trainer.log_every_n_steps)
        if (self.global_step + 1) % every == 0 or self.trainer.is_last_batch:
            self._check_loss()
        return loss

    def _check_loss(self) -> None:
        if self._nonfinite is None:
            return
        bad, self._nonfinite = bool(self._nonfinite), None
        first, last, self._unchecked_from = self._unchecked_from, self._last_step, self._last_step + 1
        if bad:
            where = (f"is {self._last_loss.item()} at step {last}" if first == last
                     else f"was nan or inf at one of the steps {first} to {last}")
            raise UserError(f"the training loss {where} (epoch {self.current_epoch}); likely cause: a learning "
                            f"rate too high for this model ({self.hparams.learning_rate}) or exploding gradients; "
                            f"fix: lower --model.learning_rate, or set --trainer.gradient_clip_val 1.0")

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each with its peak ``lr`` (the classifier's
        discriminative rates give each layer its own)."""
        return [{"params": list(self.parameters()), "lr": self.hparams.learning_rate}]

    # --- optimizer and schedule ---

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # fused: one kernel for the whole update instead of ~10 per tensor; on CPU the default
        # per-tensor loop made the optimizer a third of an SST-2 step (benchmarks/train_throughput.py).
        common = {"lr": hp.learning_rate, "weight_decay": hp.weight_decay, "fused": self.device.type in ("cpu", "cuda")}
        groups = self.parameter_groups()
        optimizer = (torch.optim.AdamW(groups, **common) if hp.optimizer == "adamw"
                     else torch.optim.SGD(groups, momentum=0.9, nesterov=True, **common))
        if hp.lr_schedule == "constant":
            return {"optimizer": optimizer}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):  # max_epochs -1 and no max_steps: train until stopped
            raise UserError(
                f"the {hp.lr_schedule} learning-rate schedule needs a known number of steps, but the trainer has "
                f"no limit (--trainer.max_epochs {self.trainer.max_epochs}); fix: set --trainer.max_epochs N or "
                f"--trainer.max_steps N, or use --model.lr_schedule constant"
            )
        if total < 1:  # e.g. --trainer.limit_train_batches 0.01 of a few batches
            raise UserError(f"this fit has no training step ({total}); fix: raise --trainer.max_epochs, "
                            f"--trainer.max_steps or --trainer.limit_train_batches")
        saved = getattr(self, "resumed_schedule_steps", None)
        if saved is not None and saved != total:  # the scheduler's saved state would run past its end
            raise UserError(
                f"the checkpoint's {hp.lr_schedule} learning-rate schedule spans {saved} steps, but this fit would "
                f"take {total} (a changed --trainer.max_epochs, --trainer.max_steps or --data.batch_size); fix: resume "
                f"with the run's own config.yaml, or start a new run (only --model.lr_schedule constant runs extend)"
            )
        self.schedule_steps = total
        warm = max(1, int(hp.warmup * total))
        sched = torch.optim.lr_scheduler
        if hp.lr_schedule == "onecycle":
            # torch divides by the length of each phase: on a run of a few steps keep both phases
            # at least half a step long (a 2-step run with warmup 0.5 had a warm-up of 0 steps).
            steps = max(total, 2)  # one step more than a 1-step run takes does no harm
            pct = min(max(hp.warmup, 1.5 / steps), 1 - 0.5 / steps)
            schedule = sched.OneCycleLR(optimizer, max_lr=[group["lr"] for group in groups], total_steps=steps, pct_start=pct)
        else:
            decay = (sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warm))
                     if hp.lr_schedule == "cosine"
                     else sched.LinearLR(optimizer, 1.0, 0.0, total_iters=max(1, total - warm)))
            schedule = sched.SequentialLR(
                optimizer, [sched.LinearLR(optimizer, 1e-3, 1.0, total_iters=warm), decay], milestones=[warm]
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
