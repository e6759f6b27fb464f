"""The classifier, top to bottom: token ids -> embedding -> recurrent encoder -> masked pooling
-> linear layer -> class logits. Lightning runs the loop; this file only says what one step is
and how the optimizer and learning-rate schedule are made from the knobs."""

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from project.checks import DataError
from project.encoders import CellType, Dropout, RecurrentEncoder
from project.vectors import load_vectors

Pooling = Literal["last", "mean", "max", "attention"]
Schedule = Literal["constant", "onecycle", "cosine", "linear"]


class Pool(nn.Module):
    """One vector per sequence from encoder states ``(B, T, D)``, reading real positions only."""

    def __init__(self, pooling: Pooling, size: int, bidirectional: bool) -> None:
        super().__init__()
        self.pooling, self.bidirectional = pooling, bidirectional
        if pooling == "attention":  # additive attention: score_t = v . tanh(W h_t)
            self.score = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1, bias=False))

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(states.device)
        if self.pooling == "last":
            # Forward state after the last real token; backward state after reading back to t=0.
            last = states[torch.arange(states.size(0), device=states.device), lengths - 1]
            if not self.bidirectional:
                return last
            half = states.size(-1) // 2
            return torch.cat([last[:, :half], states[:, 0, half:]], dim=-1)
        real = (torch.arange(states.size(1), device=states.device) < lengths.unsqueeze(1)).unsqueeze(-1)
        if self.pooling == "mean":
            return states.masked_fill(~real, 0.0).sum(1) / lengths.unsqueeze(1)
        if self.pooling == "max":
            return states.masked_fill(~real, float("-inf")).amax(1)
        weights = self.score(states).masked_fill(~real, float("-inf")).softmax(1)  # (B, T, 1)
        return (weights * states.masked_fill(~real, 0.0)).sum(1)


def _check_memory(vocab: int, embedding: int, hidden: int, layers: int, bidirectional: bool, cell: str) -> None:
    """Refuse sizes whose weights, gradients and two Adam moments cannot fit in free memory,
    before building them: a layer count of 10**13 would otherwise build layers until the
    kernel kills the process."""
    gates, directions = {"rnn": 1, "lstm": 4, "gru": 3}[cell], 2 if bidirectional else 1
    layer = lambda inputs: directions * gates * (hidden * (inputs + hidden) + 2 * hidden)  # noqa: E731
    params = vocab * embedding + layer(embedding) + (layers - 1) * layer(hidden * directions)
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return
    if params * 4 * 4 > free:
        raise DataError(f"the model would have {params:,} parameters, {params * 16 / 2**30:,.1f} GB with gradients and "
                        f"optimizer state, more than the {free / 2**30:.1f} GB free here; fix: lower "
                        f"--model.num_layers, --model.hidden_size, --model.embedding_dim or --data.max_vocab_size")


class TextClassifier(L.LightningModule):
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
        # Every checkpoint carries them (label names included). logger=False: the Dashboard
        # callback logs them to TensorBoard itself, together with the run's final metrics.
        self.save_hyperparameters(logger=False)
        num_classes = len(label_names)
        if isinstance(class_weights, list) and len(class_weights) != num_classes:
            raise DataError(
                f"--model.class_weights has {len(class_weights)} values for {num_classes} classes "
                f"({', '.join(label_names)}); fix: give one per class, or auto"
            )
        if not 0 < warmup < 1:
            raise DataError(f"--model.warmup is {warmup}; fix: a share of the steps, above 0 and below 1")
        for knob, value in (("embedding_dim", embedding_dim), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise DataError(f"--model.{knob} is {value}; fix: a size of 1 or more")
        for knob, value in (("embedding_dropout", embedding_dropout), ("word_dropout", word_dropout),
                            ("layer_dropout", layer_dropout), ("classifier_dropout", classifier_dropout),
                            ("label_smoothing", label_smoothing)):
            if not 0 <= value < 1:
                raise DataError(f"--model.{knob} is {value}; fix: a share from 0 up to (not including) 1")
        if learning_rate <= 0:
            raise DataError(f"--model.learning_rate is {learning_rate}; fix: a rate above 0")
        if weight_decay < 0:
            raise DataError(f"--model.weight_decay is {weight_decay}; fix: 0 or more")
        _check_memory(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, cell_type)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.embedding_dropout = Dropout(embedding_dropout)
        self.word_dropout = Dropout(word_dropout)
        self.encoder = RecurrentEncoder(
            cell_type, embedding_dim, hidden_size, num_layers, bidirectional, layer_dropout
        )
        self.pool = Pool(pooling, self.encoder.output_size, bidirectional)
        self.classifier_dropout = Dropout(classifier_dropout)
        self.classifier = nn.Linear(self.encoder.output_size, num_classes)
        if init == "orthogonal":
            self.encoder.init_orthogonal()
        # Buffers, so checkpoints carry them: the loss weights and the frozen embedding rows.
        weights = torch.tensor(class_weights) if isinstance(class_weights, list) else torch.ones(num_classes)
        self.register_buffer("class_weight", weights.float())
        self.register_buffer("frozen_rows", torch.zeros(vocab_size, dtype=torch.bool))
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding_dropout(self.embedding(input_ids))
        if self.training and self.hparams.word_dropout > 0:
            x = x * self.word_dropout(torch.ones_like(x[..., :1]))  # (B, T, 1): one draw per token
        # Mean and max pooling read each direction's states in any order.
        states = self.encoder(x, lengths, aligned=self.hparams.pooling not in ("mean", "max"))
        return self.classifier(self.classifier_dropout(self.pool(states, lengths)))

    # --- what fit needs from the data: vectors for its vocabulary, its label frequencies ---

    def setup(self, stage: str) -> None:
        if stage != "fit" or self.trainer.datamodule is None:
            return  # a checkpoint restores vectors, weights and frozen rows after this
        hp, data = self.hparams, self.trainer.datamodule
        if hp.pretrained_vectors:
            found, words = load_vectors(hp.pretrained_vectors, data.tokenizer.get_vocab(), hp.embedding_dim)
            with torch.no_grad():
                for index, vector in found.items():
                    self.embedding.weight[index] = vector
            self.frozen_rows[list(found)] = hp.freeze_embeddings
            self.vector_coverage = len(found) / max(words, 1)
            rank_zero_info(
                f"Pretrained vectors: {len(found):,} of {words:,} vocabulary words found "
                f"({self.vector_coverage:.1%}) in {hp.pretrained_vectors}."
            )
        if hp.class_weights == "auto":
            counts = data.label_counts.float()
            self.class_weight.copy_(counts.sum() / (len(counts) * counts.clamp(min=1)))

    def on_train_start(self) -> None:
        if hasattr(self, "vector_coverage") and self.logger is not None:
            self.logger.log_metrics({"embedding/vector_coverage": self.vector_coverage}, step=0)

    def on_after_backward(self) -> None:
        # Frozen rows get no gradient, so Adam never moves them (they are also left out of
        # weight decay in configure_optimizers).
        grad = self.embedding.weight.grad
        if self.hparams.freeze_embeddings and grad is not None:
            grad[self.frozen_rows] = 0

    # --- the random state travels with checkpoints: a resumed run draws the same dropout masks ---

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["schedule_steps"] = getattr(self, "schedule_steps", None)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Read before configure_optimizers, which checks that a resumed run keeps its schedule.
        self.resumed_schedule_steps = checkpoint.get("schedule_steps")
        if "rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["rng_state"]["torch"])
            if torch.cuda.is_available() and "cuda" in checkpoint["rng_state"]:
                torch.cuda.set_rng_state_all(checkpoint["rng_state"]["cuda"])

    # --- steps ---

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
        if not torch.isfinite(loss):  # stop here: every later step would only spread the NaN
            raise DataError(
                f"the training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                f"likely cause: a learning rate too high for this model ({self.hparams.learning_rate}) "
                f"or exploding gradients; fix: lower --model.learning_rate, or set --trainer.gradient_clip_val 1.0"
            )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")[1]  # the logits: the Dashboard's confusion matrix reads them

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["input_ids"], batch["lengths"]).softmax(-1)

    # --- optimizer and schedule ---

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        frozen = [self.embedding.weight] if hp.freeze_embeddings else []
        groups = [{"params": [p for p in self.parameters() if all(p is not f for f in frozen)]}]
        if frozen:
            groups.append({"params": frozen, "weight_decay": 0.0})
        # fused: one kernel for the whole update instead of ~10 per tensor; on CPU the default
        # per-tensor loop made the optimizer a third of an SST-2 step (benchmarks/train_throughput.py).
        fused = self.device.type in ("cpu", "cuda")
        if hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                          fused=fused)
        else:
            optimizer = torch.optim.SGD(groups, lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                        momentum=0.9, nesterov=True, fused=fused)
        if hp.lr_schedule == "constant":
            return {"optimizer": optimizer}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):  # max_epochs -1 and no max_steps: train until stopped
            raise DataError(
                f"the {hp.lr_schedule} learning-rate schedule needs a known number of steps, but the trainer has "
                f"no limit (--trainer.max_epochs {self.trainer.max_epochs}); fix: set --trainer.max_epochs N or "
                f"--trainer.max_steps N, or use --model.lr_schedule constant"
            )
        if total < 1:  # e.g. --trainer.limit_train_batches 0.01 of a few batches
            raise DataError(f"this fit has no training step ({total}); fix: raise --trainer.max_epochs, "
                            f"--trainer.max_steps or --trainer.limit_train_batches")
        saved = getattr(self, "resumed_schedule_steps", None)
        if saved is not None and saved != total:  # the scheduler's saved state would run past its end
            raise DataError(
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
