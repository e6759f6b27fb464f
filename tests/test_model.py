"""Model knobs through real Trainer runs on tiny data: pretrained vectors (coverage, frozen
rows), learning-rate schedules, class weights, and their bad values."""

import math
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from project.commands.cli import main
from project.data.datamodule import TextDataModule
from project.errors import UserError
from project.model.classifier import TextClassifier
from tests.helpers import make_rows, scalars, write_rows


def tiny_fit(dm: TextDataModule, root: Path, steps: int = 4, callbacks=(), **knobs) -> TextClassifier:
    model = TextClassifier(vocab_size=dm.vocab_size, label_names=dm.label_names,
                           **{"embedding_dim": 4, "hidden_size": 4, **knobs})
    trainer = L.Trainer(
        max_steps=steps, default_root_dir=root, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
        callbacks=list(callbacks), log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=dm)
    return model


@pytest.fixture
def dm(tiny_csv: dict[str, str]) -> TextDataModule:
    return TextDataModule(data_files=tiny_csv, text_column="sentence", min_frequency=1, batch_size=8)


def write_vectors(path: Path, rows: dict[str, list[float]], header: bool) -> str:
    lines = [f"{len(rows)} {len(next(iter(rows.values())))}"] if header else []
    lines += [" ".join([word, *(f"{v:g}" for v in vector)]) for word, vector in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def frozen_vectors(dm: TextDataModule, tmp_path: Path) -> tuple[dict[str, int], str, torch.Tensor]:
    """The vocabulary, a vectors file for "great" and "the", and the embedding a 4-wide model
    seeded 0 starts with; torch is seeded 0 again, so the fit that follows starts from it."""
    path = write_vectors(tmp_path / "glove.txt", {"great": [1, 2, 3, 4], "the": [4, 3, 2, 1]}, header=False)
    torch.manual_seed(0)
    before = TextClassifier(vocab_size=dm.vocab_size, label_names=dm.label_names, embedding_dim=4,
                            hidden_size=4).embedding.weight.detach().clone()
    torch.manual_seed(0)
    return dm.tokenizer.get_vocab(), path, before


@pytest.mark.parametrize("header", [True, False], ids=["fasttext-word2vec", "glove"])
def test_vectors_are_matched_to_the_vocabulary_and_coverage_is_logged(dm, tmp_path: Path, header: bool) -> None:
    vocab = dm.tokenizer.get_vocab()
    words = len([w for w in vocab if not w.startswith("[")])
    rows = {"great": [1, 2, 3, 4], "Awful": [5, 6, 7, 8], "awful": [9, 9, 9, 9], "Table": [0, 1, 0, 1],
            "notinvocab": [7, 7, 7, 7]}
    path = write_vectors(tmp_path / "vectors.vec", rows, header)
    model = tiny_fit(dm, tmp_path, steps=1, pretrained_vectors=path, freeze_embeddings=True)
    assert model.vector_coverage == pytest.approx(3 / words)
    weight = model.embedding.weight.detach()
    assert weight[vocab["great"]].tolist() == [1, 2, 3, 4]
    assert weight[vocab["awful"]].tolist() == [9, 9, 9, 9]  # the exact case wins
    assert weight[vocab["table"]].tolist() == [0, 1, 0, 1]  # lower-cased match
    logged = scalars(next((tmp_path / "lightning_logs").iterdir()))["embedding/vector_coverage"]
    assert logged == pytest.approx([3 / words])


def test_frozen_rows_stay_fixed_while_the_others_learn(dm, tmp_path: Path) -> None:
    vocab, path, before = frozen_vectors(dm, tmp_path)
    model = tiny_fit(dm, tmp_path, steps=5, pretrained_vectors=path, freeze_embeddings=True, weight_decay=0.1)
    weight = model.embedding.weight.detach()
    assert weight[vocab["great"]].tolist() == [1, 2, 3, 4] and weight[vocab["the"]].tolist() == [4, 3, 2, 1]
    assert not torch.equal(weight[vocab["superb"]], before[vocab["superb"]])  # not in the file: learns
    unfrozen = tiny_fit(dm, tmp_path, steps=5, pretrained_vectors=path)
    assert unfrozen.embedding.weight[vocab["the"]].tolist() != [4, 3, 2, 1]


def test_weight_decay_skips_only_the_frozen_rows(dm, tmp_path: Path) -> None:
    vocab, path, before = frozen_vectors(dm, tmp_path)
    record = RecordLR()
    model = tiny_fit(dm, tmp_path, steps=6, callbacks=[record], pretrained_vectors=path, freeze_embeddings=True,
                     weight_decay=0.5, learning_rate=0.1)
    weight = model.embedding.weight.detach()
    assert torch.equal(weight[vocab["great"]], torch.tensor([1.0, 2, 3, 4]))  # bit-identical
    assert torch.equal(weight[vocab["the"]], torch.tensor([4.0, 3, 2, 1]))
    # [UNK] is in no training text (the vocabulary is train's own): no gradient, so AdamW moves
    # it by its decoupled decay alone, p *= 1 - lr * weight_decay at each step.
    decay = math.prod(1 - rate * 0.5 for rate in record.rates)
    assert len(record.rates) == 6 and decay < 0.9
    assert weight[vocab["[UNK]"]].tolist() == pytest.approx((before[vocab["[UNK]"]] * decay).tolist(), rel=1e-5)


class CheckLikeOnGPU(TextClassifier):
    _check_each_step_on = ()  # read the loss flag every log_every_n_steps steps, as on a GPU


def test_a_loss_that_is_not_finite_stops_with_one_line_naming_its_steps(dm, tmp_path: Path) -> None:
    knobs = {"embedding_dim": 4, "hidden_size": 4, "learning_rate": 1e30}
    torch.manual_seed(0)
    with pytest.raises(UserError) as each_step:  # on CPU: checked at every step
        tiny_fit(dm, tmp_path, steps=30, **knobs)
    found = re.fullmatch(r"the training loss is -?(?:nan|inf) at step (\d+) \(epoch \d+\); likely cause: .*; fix: lower "
                         r"--model.learning_rate, or set --trainer.gradient_clip_val 1.0", str(each_step.value))
    assert found, each_step.value
    torch.manual_seed(0)
    model = CheckLikeOnGPU(vocab_size=dm.vocab_size, label_names=dm.label_names, **knobs)
    trainer = L.Trainer(max_steps=30, default_root_dir=tmp_path, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, log_every_n_steps=7)
    with pytest.raises(UserError) as deferred:
        trainer.fit(model, datamodule=dm)
    steps = re.search(r"the training loss was nan or inf at one of the steps (\d+) to (\d+) \(epoch \d+\)",
                      str(deferred.value))
    assert steps and "\n" not in str(deferred.value), deferred.value
    first, last = int(steps[1]), int(steps[2])
    assert (last + 1) % 7 == 0 and last - 6 <= first <= int(found[1]) <= last  # read every 7 steps, not each


def test_vectors_of_another_dimension_are_refused(dm, tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "v.vec", {"zzz": [1, 2, 3], "great": [1, 2, 3]}, header=True)
    with pytest.raises(UserError, match=r"v.vec line 2: a 3-dimensional vector.*--model.embedding_dim 3"):
        tiny_fit(dm, tmp_path, pretrained_vectors=path)


class RecordLR(L.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def learning_rates(steps: int, **knobs) -> list[float]:  # noqa: ANN003 - the model's
    """The learning rate of each of ``steps`` steps: configure_optimizers on a Trainer that would
    train that many, its schedule stepped as Lightning steps it (once per optimizer step)."""
    model = TextClassifier(vocab_size=30, label_names=["a", "b", "c"], embedding_dim=4, hidden_size=4, **knobs)
    model.trainer = L.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                              enable_checkpointing=False)
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured.get("lr_scheduler", {}).get("scheduler")
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return rates


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "linear", "constant"])
def test_schedules_warm_up_then_decay(schedule: str) -> None:
    rates = learning_rates(20, lr_schedule=schedule, warmup=0.25, learning_rate=0.1)
    if schedule == "constant":
        assert rates == [0.1] * 20
        return
    peak = rates.index(max(rates))
    assert 3 <= peak <= 6 and max(rates) == pytest.approx(0.1, rel=0.05)  # after 25% of 20 steps
    assert all(a <= b for a, b in zip(rates[:peak], rates[1 : peak + 1]))  # rising
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :]))  # then falling
    assert rates[-1] < 0.02


def test_a_fit_steps_the_schedule_once_per_step(dm, tmp_path: Path) -> None:
    """The schedule as the unit test above reads it is the one a real fit follows."""
    record = RecordLR()
    tiny_fit(dm, tmp_path, steps=6, callbacks=[record], lr_schedule="cosine", warmup=0.25, learning_rate=0.1)
    assert record.rates == pytest.approx(learning_rates(6, lr_schedule="cosine", warmup=0.25, learning_rate=0.1))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "linear", "constant"])
def test_schedule_and_optimizer_configs_parse(capsys: pytest.CaptureFixture, schedule: str) -> None:
    with pytest.raises(SystemExit):
        main(["fit", f"--model.lr_schedule={schedule}", "--model.optimizer=sgd", "--model.warmup=0.1",
              "--trainer.gradient_clip_val=1.0", "--model.label_smoothing=0.1", "--print_config"])
    printed = capsys.readouterr().out
    assert f"lr_schedule: {schedule}" in printed and "optimizer: sgd" in printed
    assert "gradient_clip_val: 1.0" in printed and "label_smoothing: 0.1" in printed


def test_auto_class_weights_follow_train_label_frequencies(tmp_path: Path) -> None:
    rows = make_rows(90, seed=0)
    skewed = [r for r in rows if r["label"] == "neg"] + [r for r in rows if r["label"] == "neu"][:10] + \
        [r for r in rows if r["label"] == "pos"][:5]  # 30 / 10 / 5
    files = {"train": write_rows(tmp_path / "train.csv", skewed),
             "validation": write_rows(tmp_path / "validation.csv", rows[:9])}
    dm = TextDataModule(data_files=files, text_column="sentence", min_frequency=1, batch_size=8)
    assert dm.label_counts.tolist() == [30, 10, 5]
    model = tiny_fit(dm, tmp_path, steps=1, class_weights="auto")
    assert model.class_weight.tolist() == pytest.approx([45 / 90, 45 / 30, 45 / 15])  # N / (C * n_c)
    given = tiny_fit(dm, tmp_path, steps=1, class_weights=[1.0, 2.0, 3.0])
    assert given.class_weight.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("flag", "message"),
    [("--model.class_weights=[1.0, 2.0]", "has 2 values for 3 classes"),
     ("--model.warmup=1.5", "--model.warmup is 1.5")],
)
def test_bad_model_values_are_one_line_errors(tiny_csv, tmp_path: Path, capsys, flag: str, message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--data.data_files={tiny_csv}", "--data.text_column=sentence", flag,
              f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), classes=st.integers(2, 6), rows=st.integers(1, 8))
def test_the_focal_loss_is_weighted_cross_entropy_scaled_by_how_wrong(data, classes: int, rows: int) -> None:
    """gamma 0 is ``F.cross_entropy`` with the same class weights; above 0 no text's loss grows and
    a text already right with p near 1 counts for nearly nothing (Lin et al. 2017)."""
    import torch.nn.functional as F
    from hypothesis.extra.numpy import arrays

    from project.model.classifier import focal_loss

    floats = st.floats(-8, 8, allow_nan=False, width=32)
    logits = torch.from_numpy(data.draw(arrays("float32", (rows, classes), elements=floats)))
    labels = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows)))
    weight = torch.from_numpy(data.draw(arrays("float32", classes, elements=st.floats(0.125, 5, width=32))))
    plain = F.cross_entropy(logits, labels, weight=weight)
    assert torch.allclose(focal_loss(logits, labels, 0.0, weight), plain, rtol=1e-5, atol=1e-6)
    each = [focal_loss(logits[i : i + 1], labels[i : i + 1], 2.0, weight) for i in range(rows)]
    assert all(f <= F.cross_entropy(logits[i : i + 1], labels[i : i + 1]) + 1e-6 for i, f in enumerate(each))
    sure = torch.full((1, classes), -8.0)
    sure[0, 0] = 8.0
    assert focal_loss(sure, torch.tensor([0]), 2.0, weight) < 1e-9


def test_fit_trains_with_the_focal_loss(tiny_csv, tmp_path: Path) -> None:
    """``--model.loss focal`` trains (its training loss is the focal one, below cross-entropy) and
    the checkpoint says which loss it trained with."""
    cli = main(["fit", f"--data.data_files={tiny_csv}", "--data.text_column=sentence", "--data.min_frequency=1",
                "--model.embedding_dim=8", "--model.hidden_size=8", "--model.loss=focal", "--model.class_weights=auto",
                "--trainer.max_steps=3", "--trainer.logger=false", "--test_after_fit=false",
                "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])
    assert cli.model.hparams.loss == "focal" and cli.model.hparams.focal_gamma == 2.0
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss_epoch"]))
