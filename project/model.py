"""The classifier, top to bottom: token ids -> embedding -> recurrent encoder -> masked pooling
-> linear layer -> class logits. Lightning runs the loop; this file only says what one step is."""

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from project.encoders import CellType, RecurrentEncoder

Pooling = Literal["last", "mean", "max"]
Schedule = Literal["constant", "onecycle"]


def pool(outputs: torch.Tensor, lengths: torch.Tensor, pooling: Pooling, bidirectional: bool):
    """One vector per sequence from encoder outputs, reading real positions only."""
    lengths = lengths.to(outputs.device)
    if pooling == "last":
        # Forward state after the last real token; backward state after reading back to t=0.
        rows = torch.arange(outputs.size(0), device=outputs.device)
        last = outputs[rows, lengths - 1]
        if not bidirectional:
            return last
        half = outputs.size(-1) // 2
        return torch.cat([last[:, :half], outputs[:, 0, half:]], dim=-1)
    real = torch.arange(outputs.size(1), device=outputs.device) < lengths.unsqueeze(1)
    real = real.unsqueeze(-1)
    if pooling == "mean":
        return outputs.masked_fill(~real, 0.0).sum(1) / lengths.unsqueeze(1)
    return outputs.masked_fill(~real, float("-inf")).amax(1)


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
        dropout: float = 0.3,
        pooling: Pooling = "mean",
        learning_rate: float = 1e-2,
        weight_decay: float = 0.01,
        lr_schedule: Schedule = "onecycle",
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
            dropout: Dropout on word vectors, between layers and before the classifier.
            pooling: How encoder states become one vector: ``last`` state, ``mean`` or ``max``
                over real (non-padding) positions.
            learning_rate: AdamW learning rate.
            weight_decay: AdamW decoupled weight decay.
            lr_schedule: ``onecycle``: warm up to ``learning_rate`` over the first 30% of the
                steps, then anneal to nearly zero by the last step; ``constant``: no schedule.
        """
        super().__init__()
        self.save_hyperparameters()  # hparams.yaml and every checkpoint carry the label names
        num_classes = len(label_names)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.encoder = RecurrentEncoder(
            cell_type, embedding_dim, hidden_size, num_layers, bidirectional, dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.encoder.output_size, num_classes)
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
        x = self.dropout(self.embedding(input_ids))
        states = self.encoder(x, lengths)
        pooled = pool(states, lengths, self.hparams.pooling, self.hparams.bidirectional)
        return self.classifier(self.dropout(pooled))

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["lengths"])
        loss = F.cross_entropy(logits, batch["labels"])
        metrics = getattr(self, f"{split}_metrics")
        metrics.update(logits, batch["labels"])
        size = len(batch["labels"])
        # sync_dist: under DDP the epoch loss is the mean over all ranks' batches, as the metrics are.
        self.log(f"{split}/loss", loss, on_step=split == "train", on_epoch=True, batch_size=size,
                 sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["input_ids"], batch["lengths"]).softmax(-1)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
        )
        if hp.lr_schedule == "constant":
            return {"optimizer": optimizer}
        # Annealing to ~0 lets the last epochs settle instead of bouncing around a minimum.
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp.learning_rate, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
