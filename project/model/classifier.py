"""The classifier, top to bottom: token ids -> embedding -> recurrent encoder -> masked pooling -> linear
layer -> class logits. Lightning runs the loop; this file says what one step is and how the optimizer and
learning-rate schedule are made from the knobs."""

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from project.errors import UserError
from project.model.checkpoint_format import FORMAT, FORMAT_KEY, upgrade
from project.model.encoders import CellType, Dropout, Pool, Pooling, RecurrentEncoder, autocast_runs, check_memory
from project.model.vectors import load_vectors

Schedule = Literal["constant", "onecycle", "cosine", "linear"]


class TextClassifier(L.LightningModule):
    _frozen_ids: torch.Tensor | None = None  # rows of embedding.weight that freeze_embeddings keeps
    _nonfinite: torch.Tensor | None = None  # True if a training loss since the last check was nan / inf
    _check_each_step_on = ("cpu",)  # devices where reading the loss makes nothing wait

    def __init__(
        self,
        vocab_size: int,
        label_names: list[str],
        cell_type: CellType = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        embedding_dropout: float = 0.3,
        word_dropout: float = 0.0,
        layer_dropout: float = 0.3,
        classifier_dropout: float = 0.3,
        pooling: Pooling = "mean",
        init: Literal["orthogonal", "torch"] = "orthogonal",
        pretrained_vectors: str | None = None,
        freeze_embeddings: bool = False,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        learning_rate: float = 1e-2,
        weight_decay: float = 0.01,
        lr_schedule: Schedule = "onecycle",
        warmup: float = 0.3,
        label_smoothing: float = 0.0,
        class_weights: Literal["auto"] | list[float] | None = None,
    ) -> None:
        """
        Args:
            vocab_size: Rows of the embedding table; taken from the data, not typed.
            label_names: Class names, in label-id order; taken from the data, not typed.
            cell_type: Recurrent cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
            embedding_dim: Size of each word vector.
            hidden_size: Hidden units per direction and layer.
            num_layers: Stacked recurrent layers.
            bidirectional: Read each text both ways and concatenate the two states.
            embedding_dropout: Dropout on the word vectors (each unit on its own).
            word_dropout: Share of tokens whose whole vector is dropped in training, so the
                model cannot lean on any single word (Iyyer et al. 2015).
            layer_dropout: Dropout between stacked recurrent layers.
            classifier_dropout: Dropout on the pooled vector, before the linear classifier.
            pooling: How encoder states become one vector: ``last`` state, ``mean``, ``max``
                or learned additive ``attention`` over real (non-padding) positions.
            init: ``orthogonal``: orthogonal recurrent weights (per gate), Xavier input
                weights, zero biases but the LSTM forget gate's, 1 (remember by default);
                ``torch``: PyTorch's uniform defaults.
            pretrained_vectors: A GloVe, word2vec-text or fastText ``.vec`` file; vocabulary
                words found there start from its vectors, the share found is logged.
            freeze_embeddings: Keep the rows found in ``pretrained_vectors`` fixed (the other
                rows still learn).
            optimizer: ``adamw``, or ``sgd`` with Nesterov momentum 0.9.
            learning_rate: Peak learning rate.
            weight_decay: Decoupled weight decay (AdamW) or L2 (SGD).
            lr_schedule: ``onecycle`` (warm up, then cosine-anneal to ~0), ``cosine`` or
                ``linear`` (linear warm-up, then that decay to 0), or ``constant``.
            warmup: Share of the training steps spent warming up (all schedules but ``constant``).
            label_smoothing: Training-loss label smoothing (validation and test losses are plain).
            class_weights: Training-loss weight per class: ``auto`` = inverse train-label
                frequency, a list in label-id order, or null for none.
        """
        super().__init__()
        # Every checkpoint carries them (label names included). logger=False: the HParams
        # callback logs them to TensorBoard itself, together with the run's final metrics.
        self.save_hyperparameters(logger=False)
        num_classes = len(label_names)
        if isinstance(class_weights, list) and len(class_weights) != num_classes:
            raise UserError(f"--model.class_weights has {len(class_weights)} values for {num_classes} classes "
                            f"({', '.join(label_names)}); fix: give one per class, or auto")
        if not 0 < warmup < 1:
            raise UserError(f"--model.warmup is {warmup}; fix: a share of the steps, above 0 and below 1")
        for knob, value in (("embedding_dim", embedding_dim), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise UserError(f"--model.{knob} is {value}; fix: a size of 1 or more")
        for knob, value in (("embedding_dropout", embedding_dropout), ("word_dropout", word_dropout),
                            ("layer_dropout", layer_dropout), ("classifier_dropout", classifier_dropout),
                            ("label_smoothing", label_smoothing)):
            if not 0 <= value < 1:
                raise UserError(f"--model.{knob} is {value}; fix: a share from 0 up to (not including) 1")
        if learning_rate <= 0:
            raise UserError(f"--model.learning_rate is {learning_rate}; fix: a rate above 0")
        if weight_decay < 0:
            raise UserError(f"--model.weight_decay is {weight_decay}; fix: 0 or more")
        check_memory(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, cell_type)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.embedding_dropout = Dropout(embedding_dropout)
        self.word_dropout = Dropout(word_dropout)
        self.encoder = RecurrentEncoder(cell_type, embedding_dim, hidden_size, num_layers, bidirectional, layer_dropout)
        self.pool = Pool(pooling, self.encoder.output_size, bidirectional)
        self.classifier_dropout = Dropout(classifier_dropout)
        self.classifier = nn.Linear(self.encoder.output_size, num_classes)
        if init == "orthogonal":
            self.encoder.init_orthogonal()
        # Buffers, so checkpoints carry them: loss weights, frozen rows, the temperature (calibration.py).
        weights = torch.tensor(class_weights) if isinstance(class_weights, list) else torch.ones(num_classes)
        self.register_buffer("class_weight", weights.float())
        self.register_buffer("frozen_rows", torch.zeros(vocab_size, dtype=torch.bool))
        self.register_buffer("temperature", torch.ones(()))
        metrics = MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro"),
                                    "f1": MulticlassF1Score(num_classes, average="macro")})
        self.train_metrics, self.val_metrics, self.test_metrics = (metrics.clone(prefix=f"{split}/")
                                                                   for split in ("train", "val", "test"))

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding_dropout(self.embedding(input_ids))
        if self.training and self.hparams.word_dropout > 0:
            x = x * self.word_dropout(torch.ones_like(x[..., :1]))  # (B, T, 1): one draw per token
        # Mean and max pooling read each direction's states in any order.
        states = self.encoder(x, lengths, aligned=self.hparams.pooling not in ("mean", "max"))
        return self.classifier(self.classifier_dropout(self.pool(states, lengths)))

    # --- what fit needs from the data: vectors for its vocabulary, its label frequencies ---

    def setup(self, stage: str) -> None:
        self._say_encoder_precision()
        if stage != "fit" or self.trainer.datamodule is None:
            return  # a checkpoint restores vectors, weights and frozen rows after this
        hp, data = self.hparams, self.trainer.datamodule
        if hp.pretrained_vectors:
            found, words = load_vectors(hp.pretrained_vectors, data.tokenizer.get_vocab(), hp.embedding_dim)
            if found:  # one copy, not one per word
                self.embedding.weight.data[list(found)] = torch.stack(list(found.values()))
            self.frozen_rows[list(found)] = hp.freeze_embeddings
            self.vector_coverage = len(found) / max(words, 1)
            rank_zero_info(f"Pretrained vectors: {len(found):,} of {words:,} vocabulary words found "
                           f"({self.vector_coverage:.1%}) in {hp.pretrained_vectors}.")
        if hp.class_weights == "auto":
            counts = data.label_counts.float()
            self.class_weight.copy_(counts.sum() / (len(counts) * counts.clamp(min=1)))

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
        if hasattr(self, "vector_coverage") and self.logger is not None:
            self.logger.log_metrics({"embedding/vector_coverage": self.vector_coverage}, step=0)
        # After a checkpoint's weights were restored: the frozen rows as they are now.
        ids = self.frozen_rows.nonzero().squeeze(1) if self.hparams.freeze_embeddings else []
        self._frozen_ids = ids if len(ids) else None
        self._frozen_vectors = self.embedding.weight.detach()[ids].clone() if len(ids) else None
        self._nonfinite, self._unchecked_from = None, self.global_step

    def on_after_backward(self) -> None:
        # Frozen rows get no gradient, for clipping and the logged norm (index_fill_: no GPU wait).
        if self._frozen_ids is not None and self.embedding.weight.grad is not None:
            self.embedding.weight.grad.index_fill_(0, self._frozen_ids, 0)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # Weight decay (and SGD's momentum) would still move the frozen rows: put them back.
        if self._frozen_ids is not None:
            with torch.no_grad():
                self.embedding.weight.index_copy_(0, self._frozen_ids, self._frozen_vectors)

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

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["lengths"])
        labels = batch["labels"]
        if split == "train":
            loss = F.cross_entropy(logits, labels, weight=self.class_weight,
                                   label_smoothing=self.hparams.label_smoothing)
        else:  # plain cross-entropy: comparable across runs whatever the training loss
            loss = F.cross_entropy(logits, labels)
        metrics = getattr(self, f"{split}_metrics")
        metrics.update(logits, labels)
        # Lightning computes the metrics at epoch end (summing every DDP rank's counts, at a point
        # all ranks reach) and resets them. Training logs them at its last batch only: logging
        # the metric objects at every step cost 2.5 ms per SST-2 step.
        if split != "train" or self.trainer.is_last_batch:
            self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(labels))
        # sync_dist: under DDP the epoch loss is the mean over all ranks' batches, as the metrics are.
        self.log(f"{split}/loss", loss, on_step=split == "train", on_epoch=True, batch_size=len(labels),
                 sync_dist=True)
        return loss, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")[0]
        # A loss that is not finite stops the run: every later step would only spread the nan.
        # Reading the loss costs nothing on CPU, but on a GPU it waits for all queued work, each
        # step: there a flag stays on the device and is read at the steps Lightning logs (it
        # reads the logged loss then anyway), at an epoch's end and before a checkpoint is saved.
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

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")[1]  # the logits: the report and calibration callbacks read them

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")[1]

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return (self(batch["input_ids"], batch["lengths"]) / self.temperature).softmax(-1)

    # --- optimizer and schedule ---

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # fused: one kernel for the whole update instead of ~10 per tensor; on CPU the default
        # per-tensor loop made the optimizer a third of an SST-2 step (benchmarks/train_throughput.py).
        common = {"lr": hp.learning_rate, "weight_decay": hp.weight_decay, "fused": self.device.type in ("cpu", "cuda")}
        optimizer = (torch.optim.AdamW(self.parameters(), **common) if hp.optimizer == "adamw"
                     else torch.optim.SGD(self.parameters(), momentum=0.9, nesterov=True, **common))
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
            schedule = sched.OneCycleLR(optimizer, max_lr=hp.learning_rate, total_steps=steps, pct_start=pct)
        else:
            decay = (sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warm))
                     if hp.lr_schedule == "cosine"
                     else sched.LinearLR(optimizer, 1.0, 0.0, total_iters=max(1, total - warm)))
            schedule = sched.SequentialLR(
                optimizer, [sched.LinearLR(optimizer, 1e-3, 1.0, total_iters=warm), decay], milestones=[warm]
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
