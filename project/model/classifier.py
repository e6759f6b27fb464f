"""The classifier, top to bottom: token ids -> embedding -> recurrent encoder -> masked pooling -> linear
layer -> class logits. Lightning runs the loop; this file says what one step is and how the optimizer and
learning-rate schedule are made from the knobs."""

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelExactMatch,
    MultilabelF1Score,
)

from project import tags
from project.errors import UserError
from project.model.base import RecurrentModule, check_knobs
from project.model.encoders import CellType, Dropout, Pool, Pooling, RecurrentEncoder, check_memory
from project.model.pretrained import load_pretrained
from project.model.vectors import load_vectors

Schedule = Literal["constant", "onecycle", "cosine", "linear"]
PairEncoding = Literal["joined", "separate"]


def split_pairs(input_ids: torch.Tensor, lengths: torch.Tensor, sep_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``a [SEP] b`` rows as the rows ``a`` then the rows ``b`` (2B, T), with their
    lengths (2B,): each text of a pair in a row of its own, read by the encoder alone. Tensor ops
    only, so that the exported graph splits pairs too. A side with no tokens (``b`` cut off by
    ``max_length``) is read as one padding token; a row without ``[SEP]`` is all ``a``."""
    positions = torch.arange(input_ids.size(1), device=input_ids.device)[None, :]
    lengths = lengths.to(input_ids.device)
    is_sep = (input_ids == sep_id) & (positions < lengths[:, None])
    # The first [SEP] of each row (argmax of the first True); no [SEP]: the row's length.
    first = torch.where(is_sep.any(1), is_sep.int().argmax(1), lengths)
    a = input_ids.masked_fill(positions >= first[:, None], 0)
    b_lengths = lengths - first - 1
    shifted = (positions + (first + 1)[:, None]).clamp(max=input_ids.size(1) - 1)
    b = input_ids.gather(1, shifted).masked_fill(positions >= b_lengths[:, None], 0)
    return torch.cat([a, b]), torch.cat([first, b_lengths]).clamp(min=1)


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float, weight: torch.Tensor) -> torch.Tensor:
    """Focal loss for one label per text (Lin et al. 2017): -w_y (1 - p_y)^gamma log p_y, averaged
    as ``F.cross_entropy`` averages a weighted loss (over the weights), so gamma 0 is exactly it."""
    log_p = F.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
    w = weight[labels]
    return -(w * (1 - log_p.exp()) ** gamma * log_p).sum() / w.sum()


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that a one-text training batch (an epoch's last, say) goes through with
    the running statistics, where torch's raises: one text has no batch statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.size(0) == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class TextClassifier(RecurrentModule):
    _frozen_ids: torch.Tensor | None = None  # rows of embedding.weight that freeze_embeddings keeps
    # Why the temperature is 1 rather than fitted (calibration.py); None: fitted, or never validated.
    calibration_note: str | None = None

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
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
        drop_mult: float = 1.0,
        pooling: Pooling = "mean",
        head_norm: bool | None = None,
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
        loss: Literal["cross_entropy", "focal"] = "cross_entropy",
        focal_gamma: float = 2.0,
        init_from: str | None = None,
        layer_lr_decay: float = 1.0,
        gradual_unfreezing: bool = False,
        pair_encoding: PairEncoding = "separate",
        sep_id: int | None = None,
        multi_label: bool = False,
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
            locked_dropout: ``embedding_dropout`` and ``layer_dropout`` draw one mask per text,
                the same at every step (variational dropout, AWD-LSTM's locked dropout).
            weight_drop: DropConnect on the recurrent (hidden-to-hidden) weights: this share
                of them is dropped, with one mask per batch (AWD-LSTM's weight drop).
            drop_mult: Scales every dropout above (ULMFiT's one knob for all of them).
            pooling: How encoder states become one vector: ``last`` state, ``mean``, ``max``,
                learned additive ``attention`` over real (non-padding) positions, or
                ``concat``: [last, max, mean] side by side (ULMFiT's concat pooling).
            head_norm: Batch-normalize the pooled vector before the classifier (ULMFiT's head):
                the linear layer then sees features on one scale whatever the encoder's. null:
                on for a pretrained start (``init_from``), off otherwise.
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
            loss: Training loss: ``cross_entropy``, or ``focal`` (Lin et al. 2017: each text's
                cross-entropy times (1 - p)^focal_gamma, p its true class's probability, so texts
                already learnt weigh little; with ``class_weights`` as its alpha). Validation and
                test losses are plain cross-entropy either way.
            focal_gamma: The focal loss's exponent (0: cross-entropy); used with ``loss: focal``.
            init_from: A ``pretrain`` run's folder or checkpoint: the embedding and encoder
                start from its language model (fit then takes its tokenizer and sizes).
            layer_lr_decay: Discriminative learning rates: each layer group below the top gets
                the rate of the one above divided by this (ULMFiT: 2.6); 1: one rate for all.
            gradual_unfreezing: Train the classifier head alone in the first epoch, then
                unfreeze one recurrent layer per epoch from the top, the embedding last (ULMFiT).
            pair_encoding: How a text pair (two ``--data.text_column``s) is read: ``separate``:
                the encoder reads each text alone and the classifier sees [u, v, |u - v|, u * v]
                of their pooled vectors u and v (InferSent, Conneau et al. 2017); ``joined``: one
                sequence, ``a [SEP] b``. Single texts: unused.
            sep_id: The ``[SEP]`` id of pair data, None for single texts; taken from the data.
            multi_label: Several labels per text: one sigmoid per label and binary cross-entropy
                (``class_weights`` as its ``pos_weight``; ``auto``: negatives / positives of each
                label), a threshold per label tuned on validation; taken from the data.
        """
        super().__init__()
        # Every checkpoint carries them (label names included). logger=False: the HParams
        # callback logs them to TensorBoard itself, together with the run's final metrics.
        self.save_hyperparameters(logger=False)
        num_classes = len(label_names)
        if isinstance(class_weights, list) and len(class_weights) != num_classes:
            raise UserError(f"--model.class_weights has {len(class_weights)} values for {num_classes} classes "
                            f"({', '.join(label_names)}); fix: give one per class, or auto")
        drops = check_knobs(
            {"embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_layers": num_layers},
            {"label_smoothing": label_smoothing},
            {"embedding_dropout": embedding_dropout, "word_dropout": word_dropout, "layer_dropout": layer_dropout,
             "classifier_dropout": classifier_dropout, "weight_drop": weight_drop},
            drop_mult, learning_rate, weight_decay, warmup)
        if focal_gamma < 0:
            raise UserError(f"--model.focal_gamma is {focal_gamma}; fix: 0 or more (Lin et al.: 2)")
        if loss == "focal" and label_smoothing > 0:
            raise UserError(f"--model.loss focal with --model.label_smoothing {label_smoothing}; fix: one of the "
                            f"two (label_smoothing 0, or loss cross_entropy)")
        if layer_lr_decay < 1:
            raise UserError(f"--model.layer_lr_decay is {layer_lr_decay}; fix: 1 (one rate) or more (ULMFiT: 2.6)")
        check_memory(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, cell_type)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.embedding_dropout = Dropout(drops["embedding_dropout"], locked_dropout)
        self.word_dropout = Dropout(drops["word_dropout"])
        # A pretrained start has a forward and a backward language model's stacks (language_model.py).
        self.encoder = RecurrentEncoder(cell_type, embedding_dim, hidden_size, num_layers, bidirectional,
                                        drops["layer_dropout"], locked_dropout, drops["weight_drop"],
                                        separate_directions=init_from is not None)
        self.pool = Pool(pooling, self.encoder.output_size, bidirectional)
        self.separate_pairs = sep_id is not None and pair_encoding == "separate"
        features = self.pool.output_size * (4 if self.separate_pairs else 1)  # [u, v, |u - v|, u * v]
        # Identity when off: no state, so checkpoints from before the knob load as they were.
        norm = init_from is not None if head_norm is None else head_norm
        self.head_norm = BatchNorm(features) if norm else nn.Identity()
        self.classifier_dropout = Dropout(drops["classifier_dropout"])
        self.classifier = nn.Linear(features, num_classes)
        if init == "orthogonal":
            self.encoder.init_orthogonal()
        # Buffers, so checkpoints carry them: loss weights, frozen rows, the temperature (calibration.py).
        weights = torch.tensor(class_weights) if isinstance(class_weights, list) else torch.ones(num_classes)
        self.register_buffer("class_weight", weights.float())
        self.register_buffer("frozen_rows", torch.zeros(vocab_size, dtype=torch.bool))
        self.register_buffer("temperature", torch.ones(()))
        if multi_label:  # per-label thresholds, tuned on validation (calibration.py); 0.5 until then
            self.register_buffer("thresholds", torch.full((num_classes,), 0.5))
            # acc: the share of texts whose whole label set is right (subset accuracy).
            metrics = MetricCollection({"acc": MultilabelExactMatch(num_classes),
                                        "f1": MultilabelF1Score(num_classes, average="macro"),
                                        "micro_f1": MultilabelF1Score(num_classes, average="micro")})
        else:
            metrics = MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro"),
                                        "f1": MulticlassF1Score(num_classes, average="macro")})
        self.train_metrics, self.val_metrics, self.test_metrics = (metrics.clone(prefix=f"{split}/")
                                                                   for split in ("train", "val", "test"))

    @property
    def validation_tags(self) -> tuple[str, ...]:
        """What metrics.json records per validation (metrics_file.py)."""
        return tags.MULTI_LABEL_VALIDATION if self.hparams.multi_label else tags.VALIDATION

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.separate_pairs:  # both texts of each pair through the encoder in one call
            input_ids, lengths = split_pairs(input_ids, lengths, self.hparams.sep_id)
            if not torch.jit.is_tracing():  # the split rows are shorter: drop the columns no text reaches
                input_ids = input_ids[:, : int(lengths.max())]
        x = self.embedding_dropout(self.embedding(input_ids))
        if self.training and self.word_dropout.p > 0:
            x = x * self.word_dropout(torch.ones_like(x[..., :1]))  # (B, T, 1): one draw per token
        # Mean and max pooling read each direction's states in any order.
        states = self.encoder(x, lengths, aligned=self.hparams.pooling not in ("mean", "max"))
        pooled = self.pool(states, lengths)
        if self.separate_pairs:
            u, v = pooled.chunk(2)
            pooled = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        return self.classifier(self.classifier_dropout(self.head_norm(pooled)))

    # --- what fit needs from the data: vectors for its vocabulary, its label frequencies ---

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit" or self.trainer.datamodule is None:
            return  # a checkpoint restores vectors, weights and frozen rows after this
        hp, data = self.hparams, self.trainer.datamodule
        if hp.init_from:  # a resumed run's checkpoint then puts its own weights over these
            load_pretrained(self, hp.init_from, data.tokenizer)
        if hp.pretrained_vectors:
            found, words = load_vectors(hp.pretrained_vectors, data.tokenizer.get_vocab(), hp.embedding_dim)
            if found:  # one copy, not one per word
                self.embedding.weight.data[list(found)] = torch.stack(list(found.values()))
            self.frozen_rows[list(found)] = hp.freeze_embeddings
            self.vector_coverage = len(found) / max(words, 1)
            rank_zero_info(f"Pretrained vectors: {len(found):,} of {words:,} vocabulary words found "
                           f"({self.vector_coverage:.1%}) in {hp.pretrained_vectors}.")
        if hp.class_weights == "auto" and hp.multi_label:  # pos_weight: each label's negatives per positive
            positives = data.label_counts.float()
            self.class_weight.copy_((data.train_size - positives) / positives.clamp(min=1))
        elif hp.class_weights == "auto":
            counts = data.label_counts.float()
            self.class_weight.copy_(counts.sum() / (len(counts) * counts.clamp(min=1)))

    def on_train_start(self) -> None:
        super().on_train_start()
        if hasattr(self, "vector_coverage") and self.logger is not None:
            self.logger.log_metrics({"embedding/vector_coverage": self.vector_coverage}, step=0)
        # After a checkpoint's weights were restored: the frozen rows as they are now.
        ids = self.frozen_rows.nonzero().squeeze(1) if self.hparams.freeze_embeddings else []
        self._frozen_ids = ids if len(ids) else None
        self._frozen_vectors = self.embedding.weight.detach()[ids].clone() if len(ids) else None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["calibration_note"] = self.calibration_note

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.calibration_note = checkpoint.get("calibration_note")

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters from the bottom up: the embedding, each recurrent layer, the head
        (pooling and classifier); discriminative rates and gradual unfreezing go by them."""
        head = [*self.pool.parameters(), *self.head_norm.parameters(), *self.classifier.parameters()]
        return [[self.embedding.weight], *([*layer.parameters()] for layer in self.encoder.layers), head]

    def parameter_groups(self) -> list[dict]:
        groups, decay = self.layer_groups(), self.hparams.layer_lr_decay
        if decay == 1:  # one group: the optimizer state of every run before discriminative rates
            return super().parameter_groups()
        return [{"params": params, "lr": self.hparams.learning_rate / decay ** (len(groups) - 1 - i)}
                for i, params in enumerate(groups)]

    def on_train_epoch_start(self) -> None:
        if not self.hparams.gradual_unfreezing:
            return
        # Epoch 0 trains the head alone; each epoch after it one more group, from the top down. A
        # frozen parameter has no gradient, so the optimizer (and its weight decay) leaves it alone.
        groups = self.layer_groups()
        for i, params in enumerate(groups):
            for param in params:
                param.requires_grad_(len(groups) - 1 - i <= self.current_epoch)

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

    def _multi_label_loss(self, logits: torch.Tensor, labels: torch.Tensor, split: str) -> torch.Tensor:
        """Binary cross-entropy per label; in training with ``pos_weight``, label smoothing (targets
        pulled towards 1/2) and the focal factor (1 - p_t)^gamma where chosen."""
        if split != "train":
            return F.binary_cross_entropy_with_logits(logits.float(), labels)
        smoothing = self.hparams.label_smoothing
        targets = labels * (1 - smoothing) + smoothing / 2
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=self.class_weight,
                                                  reduction="none")
        if self.hparams.loss == "focal":
            p = logits.float().sigmoid()
            loss = loss * (1 - (p * labels + (1 - p) * (1 - labels))) ** self.hparams.focal_gamma
        return loss.mean()

    def given_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Multi-label: 1 where a label's probability reaches its threshold, else 0 (long)."""
        return (logits.float().sigmoid() >= self.thresholds).long()

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, split: str) -> torch.Tensor:
        if self.hparams.multi_label:
            return self._multi_label_loss(logits, labels, split)
        if split == "train" and self.hparams.loss == "focal":
            return focal_loss(logits, labels, self.hparams.focal_gamma, self.class_weight)
        if split == "train":
            return F.cross_entropy(logits, labels, weight=self.class_weight, label_smoothing=self.hparams.label_smoothing)
        return F.cross_entropy(logits, labels)  # plain cross-entropy: comparable across runs whatever the training loss

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["lengths"])
        labels = batch["labels"]
        loss = self._loss(logits, labels, split)
        metrics = getattr(self, f"{split}_metrics")
        if self.hparams.multi_label:
            metrics.update(self.given_labels(logits), labels.long())
        else:
            metrics.update(logits, labels)
        # Lightning computes the metrics at epoch end (summing every DDP rank's counts, at a point
        # all ranks reach) and resets them. Training logs them at its last batch only: logging
        # the metric objects at every step cost 2.5 ms per SST-2 step.
        if split != "train" or self.trainer.is_last_batch:
            # prog_bar: the terminal's bar shows how it goes (progress.py): val/acc and val/f1.
            self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(labels), prog_bar=split == "val")
        # sync_dist: under DDP the epoch loss is the mean over all ranks' batches, as the metrics are.
        self.log(f"{split}/loss", loss, on_step=split == "train", on_epoch=True, batch_size=len(labels),
                 prog_bar=split == "train",
                 sync_dist=True)
        return loss, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.checked(self._step(batch, "train")[0])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")[1]  # the logits: the report and calibration callbacks read them

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")[1]

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # In float32 whatever the precision: bf16 probabilities summed to 0.999 (tests/test_generated_predict.py).
        scaled = self(batch["input_ids"], batch["lengths"]).float() / self.temperature
        return scaled.sigmoid() if self.hparams.multi_label else scaled.softmax(-1)
