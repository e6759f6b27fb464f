"""Length-bucketed batches: texts of similar length share a batch, so padding is a few percent
instead of half the compute, while batches stay random.

Training (``shuffle=True``), each epoch: shuffle all texts, cut them into buckets of
``bucket_size`` batches, sort each bucket by length, cut it into batches, shuffle the order of
all batches. Everything is drawn from ``(seed, epoch)``, so a run is reproducible. Evaluation:
batches of the texts sorted by length, in that order.

Under DDP every rank builds the same batch list and takes every ``num_replicas``-th batch: ranks
are disjoint. For training the list is first cut to a multiple of ``num_replicas`` (dropping at
most ``num_replicas - 1`` random batches per epoch), so every rank takes the same number of
steps and none waits forever for another's gradients.
"""

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Sampler

from project.data.padding import pad_ids


class LengthBucketSampler(Sampler[list[int]]):
    """Yields lists of row indices, one per batch; pass it as the DataLoader's ``sampler`` with
    ``batch_size=None`` so each batch is fetched from Arrow in one call."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_size: int = 100,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_size, self.num_replicas, self.rank = bucket_size, num_replicas, rank
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches already trained in it)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch: a new, reproducible order."""
        self.epoch = epoch

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def batches(self) -> list[np.ndarray]:
        """Every batch of this epoch, for all ranks."""
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            if -(-len(order) // self.batch_size) < self.num_replicas:  # Lightning wants a batch per rank
                return list(np.array_split(order, min(self.num_replicas, len(order))))
            return self._cut(order)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        pool = self.batch_size * self.bucket_size
        batches = []
        for start in range(0, len(order), pool):
            bucket = order[start : start + pool]
            # Stable sort of a random permutation: equal lengths stay in random order.
            batches += self._cut(bucket[np.argsort(self.lengths[bucket], kind="stable")])
        batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches[: len(batches) // self.num_replicas * self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        # The body runs at the first batch, after Lightning's set_epoch for this epoch.
        skip = 0
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            skip = self.resume_at[1]  # resumed mid-epoch: the batches the checkpoint has seen
        self.resume_at = None
        for batch in self.batches()[self.rank :: self.num_replicas][skip:]:
            yield batch.tolist()

    def __len__(self) -> int:
        if self.shuffle:  # ceil; buckets are whole batches but the last
            return -(-len(self.lengths) // self.batch_size) // self.num_replicas
        return len(range(self.rank, len(self.batches()), self.num_replicas))


def padding_waste(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of the padded batch tensors that is padding."""
    lengths = np.asarray(lengths)
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


def pad_batch(batch: pa.Table, pad_id: int, labels: int | None = None) -> dict[str, torch.Tensor]:
    """One batch, fetched from Arrow in one call, as the model's tensors (padding.py pads it).
    ``labels``: multi-label data of that many labels, each row's list of label ids made a 0/1
    row (float, as the loss takes it)."""
    padded, lengths = pad_ids(batch.column("input_ids"), pad_id)
    out = {"input_ids": torch.from_numpy(padded), "lengths": torch.from_numpy(lengths)}
    if "label" in batch.column_names and labels is not None:
        column = batch.column("label").combine_chunks()
        hot = np.zeros((len(column), labels), dtype=np.float32)
        hot[column.value_parent_indices().to_numpy(), column.flatten().to_numpy()] = 1
        out["labels"] = torch.from_numpy(hot)
    elif "label" in batch.column_names:
        out["labels"] = torch.from_numpy(batch.column("label").to_numpy().astype(np.int64))
    if "row" in batch.column_names:  # where each text is in its split (the reports look mistakes up)
        out["rows"] = torch.from_numpy(batch.column("row").to_numpy().astype(np.int64))
    return out
