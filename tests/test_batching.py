"""The length-bucketed sampler: every text once per epoch, reproducible, DDP-safe, little padding."""

import json
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pytest
import torch

from project.data.batching import LengthBucketSampler, pad_batch, padding_waste
from project.data.padding import length_sorted_batches
from project.data.datamodule import TextDataModule
from project.model.classifier import TextClassifier
from tests.helpers import finish, start


def lengths(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 200, size=n)


def epoch(sampler: LengthBucketSampler, e: int) -> list[list[int]]:
    sampler.set_epoch(e)
    return list(sampler)


@pytest.mark.parametrize("n", [1, 7, 64, 1000, 1003])
def test_training_takes_every_text_exactly_once_per_epoch(n: int) -> None:
    sampler = LengthBucketSampler(lengths(n), batch_size=8, shuffle=True, seed=1, bucket_size=4)
    batches = epoch(sampler, 0)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert len(batches) == len(sampler)
    assert all(1 <= len(b) <= 8 for b in batches)


def test_order_is_reproducible_from_the_seed_and_changes_each_epoch() -> None:
    def make(seed: int) -> LengthBucketSampler:
        return LengthBucketSampler(lengths(500), batch_size=10, shuffle=True, seed=seed, bucket_size=5)

    assert epoch(make(1), 0) == epoch(make(1), 0)
    assert epoch(make(1), 3) == epoch(make(1), 3)
    assert epoch(make(1), 0) != epoch(make(1), 1)
    assert epoch(make(1), 0) != epoch(make(2), 0)


def test_batches_come_in_random_length_order_within_sorted_buckets() -> None:
    n = 2000
    sampler = LengthBucketSampler(lengths(n), batch_size=10, shuffle=True, seed=0, bucket_size=10)
    means = [sampler.lengths[b].mean() for b in epoch(sampler, 0)]
    assert means != sorted(means) and means != sorted(means, reverse=True)
    # Neighbouring batches are not neighbours in length: the order of batches is shuffled.
    assert np.corrcoef(means[:-1], means[1:])[0, 1] < 0.5


def test_evaluation_batches_are_sorted_by_length_and_cover_every_text_once() -> None:
    sampler = LengthBucketSampler(lengths(103), batch_size=10, shuffle=False)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103)) and len(batches) == len(sampler) == 11
    assert list(sampler.lengths[flat]) == sorted(sampler.lengths)


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [50, 997, 1000])
def test_ddp_ranks_take_disjoint_batches_and_the_same_number_of_steps(n: int, world: int) -> None:
    data = lengths(n, seed=world)
    per_rank = []
    for rank in range(world):
        sampler = LengthBucketSampler(data, 8, True, seed=4, bucket_size=3, num_replicas=world, rank=rank)
        per_rank.append(epoch(sampler, 2))
        assert len(per_rank[-1]) == len(sampler)
    assert len({len(batches) for batches in per_rank}) == 1  # equal steps: no rank waits forever
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    whole_batches = -(-n // 8)
    assert len(per_rank[0]) == whole_batches // world  # at most world - 1 batches dropped


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_evaluation_covers_every_text_once_across_ranks(world: int) -> None:
    data = lengths(101)
    seen = []
    for rank in range(world):
        sampler = LengthBucketSampler(data, 10, False, num_replicas=world, rank=rank)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(101))


def test_bucketing_pads_far_less_than_random_batches() -> None:
    data = lengths(5000)
    sampler = LengthBucketSampler(data, batch_size=32, shuffle=True, seed=0)
    random_batches = np.array_split(np.random.default_rng(0).permutation(5000), 5000 // 32)
    bucketed, unbucketed = padding_waste(data, sampler.batches()), padding_waste(data, random_batches)
    assert bucketed < 0.05 < 0.3 < unbucketed


def test_padding_waste_counts_the_padded_share() -> None:
    data = np.array([1, 3, 2, 2])
    assert padding_waste(data, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(1 - 8 / 10)


@pytest.mark.slow
def test_lightning_sets_the_epoch_so_each_epoch_has_a_new_order(tiny_csv: dict[str, str], tmp_path) -> None:
    class Record(L.Callback):
        orders: list[list[int]] = []

        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            sampler = trainer.train_dataloader.sampler
            self.orders.append([i for b in sampler.batches() for i in b])

    dm = TextDataModule(data_files=tiny_csv, text_column="sentence", batch_size=8, bucket_size=2)
    model = TextClassifier(vocab_size=dm.vocab_size, label_names=dm.label_names, embedding_dim=4, hidden_size=4)
    trainer = L.Trainer(
        max_epochs=3, callbacks=[Record()], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        default_root_dir=tmp_path, limit_val_batches=0,
    )
    trainer.fit(model, datamodule=dm)
    orders = Record.orders
    assert len(orders) == 3 and orders[0] != orders[1] != orders[2]
    assert all(sorted(order) == list(range(60)) for order in orders)
    assert not (tmp_path / "tokenizer.json").exists()  # no logger, no run folder to keep it in


RANK_BATCHES = """
import json
from pathlib import Path

import lightning as L


class WriteRankBatches(L.Callback):
    # The batches this DDP rank is served in its first epoch, to rank<N>.json.

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_epoch_start(self, trainer, module) -> None:
        batches = list(trainer.train_dataloader.sampler)
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(batches))
"""


@pytest.mark.slow
def test_real_ddp_ranks_get_disjoint_batches_and_equal_steps(tiny_csv: dict[str, str], tmp_path: Path) -> None:
    """``python -m project fit`` on two CPU processes (Lightning's DDP, gloo): what each rank's
    dataloader serves is what the sampler gives that rank here. A child process with a timeout,
    so a DDP deadlock fails instead of hanging."""
    (tmp_path / "rank_batches.py").write_text(RANK_BATCHES)
    data = {"data_files": tiny_csv, "text_column": "sentence", "batch_size": 7, "bucket_size": 2}
    args = [*(f"--data.{key}={value}" for key, value in data.items()), "--model.embedding_dim=4",
            "--model.hidden_size=4", "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
            "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--test_after_fit=false",
            "--trainer.callbacks+=rank_batches.WriteRankBatches", f"--trainer.callbacks.folder={tmp_path}",
            f"--trainer.default_root_dir={tmp_path}"]
    process = start(["fit", *args], tmp_path, tmp_path)  # rank_batches.py importable
    _, err = finish(process, timeout=180)
    assert process.returncode == 0, err[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # 60 rows / 7 = 9 batches: 8 kept, 4 per rank
    seen = [i for batches in ranks for b in batches for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    dm = TextDataModule(**data, cache_dir=str(tmp_path / "cache"))
    lengths = np.array(dm.dataset["train"].with_format(None)["length"])
    for rank, batches in enumerate(ranks):
        sampler = LengthBucketSampler(lengths, 7, True, dm.hparams.seed, 2, num_replicas=2, rank=rank)
        assert batches == [list(map(int, b)) for b in epoch(sampler, 0)], rank


def test_pad_batch_reads_slices_and_chunked_columns() -> None:
    rows = [[5, 6, 7], [8], [9, 10], [], [11, 12, 13, 14]]
    table = pa.table({"input_ids": pa.array(rows, pa.list_(pa.int32())), "label": [0, 1, 0, 1, 1]})
    expected = {"input_ids": torch.tensor([[8, 0], [9, 10], [0, 0]]), "lengths": torch.tensor([1, 2, 0]),
                "labels": torch.tensor([1, 0, 1])}
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2)])  # two chunks per column
    for batch in (table.slice(1, 3), chunked.slice(1, 3), table.take([1, 2, 3])):
        padded = pad_batch(batch, pad_id=0)
        assert padded.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(padded[key], value), key


def test_predict_batches_are_length_sorted_slices_without_empty_rows() -> None:
    ids = pa.array([[1, 2, 3], [], [4], [5, 6], [7]], pa.list_(pa.int32()))
    order, batches = length_sorted_batches(ids, batch_size=2)
    assert order.tolist() == [2, 4, 3, 0]  # the empty row is left out; ties keep input order
    assert [b.column("input_ids").to_pylist() for b in batches] == [[[4], [7]], [[5, 6], [1, 2, 3]]]
