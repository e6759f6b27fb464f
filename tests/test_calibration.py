"""Calibration (project/training/calibration.py): the temperature fitted on validation minimises its NLL,
travels in the checkpoint that validation produced, and is what predict applies (or not, with
--calibrated false); the logged ECE is torchmetrics' on the same probabilities; a checkpoint
from before calibration predicts with T = 1."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassCalibrationError

from project import Predictor, TextClassifier, tags
from project.commands.cli import main
from project.training.calibration import choose_temperature, fit_temperature
from project.training.metrics_file import FILENAME
from tests.helpers import TINY, best_checkpoint, refused, run_cli, tiny_data, write_splits

TEXTS = ["good film", "a bad and long film that never ends", "the window and the street", "superb lovely great"]


def nll(logits: torch.Tensor, labels: torch.Tensor, t: float) -> float:
    return F.cross_entropy(logits / t, labels).item()


@pytest.mark.parametrize("scale", [4.0, 0.3])  # over-confident logits (T > 1), under-confident (T < 1)
def test_the_fitted_temperature_minimises_the_nll(scale: float) -> None:
    labels = torch.randint(0, 3, (400,))
    logits = torch.randn(400, 3) + 1.5 * F.one_hot(labels, 3)  # right more often than not
    logits = logits * scale
    t = fit_temperature(logits, labels)
    assert (t > 1) if scale > 1 else (t < 1)
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * 0.9), nll(logits, labels, t * 1.1))
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * 0.99), nll(logits, labels, t * 1.01))


@pytest.mark.parametrize("bins", ["1", "101"])
def test_bins_outside_2_to_100_are_refused_before_training(bins: str, tmp_path: Path) -> None:
    refused(["fit", *tiny_data(tmp_path), f"--calibration.bins={bins}", f"--trainer.default_root_dir={tmp_path}"],
            tmp_path, f"--calibration.bins is {bins}; fix: 2 to 100")
    assert not list(tmp_path.glob("lightning_logs/*/checkpoints"))


def validation_logits(ckpt: str, run) -> tuple[TextClassifier, torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """The checkpoint's model, and its logits and the labels over the run's validation split,
    by a forward pass of our own (not the callback's)."""
    model = TextClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in run.datamodule.val_dataloader():
            logits.append(model(batch["input_ids"], batch["lengths"]))
            labels.append(batch["labels"])
    return model, torch.cat(logits), torch.cat(labels)


def test_a_validation_split_of_one_text_is_calibrated(tmp_path: Path) -> None:
    """Found by a hunt: torchmetrics' CatMetric gave one row's labels as a 0-d tensor, and fitting
    the temperature crashed with a traceback."""
    files = write_splits(tmp_path, train=30, validation=1, test=0)
    code, err = run_cli(["fit", f"--data.data_files={files}", "--data.text_column=sentence", *TINY,
                         "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"])
    assert code == 0, err[-3000:]


def test_the_kept_checkpoint_carries_the_temperature_of_its_validation(tiny_run) -> None:
    record = json.loads((Path(tiny_run.trainer.log_dir) / FILENAME).read_text())
    best = torch.load(best_checkpoint(tiny_run), weights_only=True)
    last = torch.load(Path(best_checkpoint(tiny_run)).with_name("last.ckpt"), weights_only=True)
    assert best["state_dict"]["temperature"].item() == pytest.approx(record["best"][tags.TEMPERATURE], rel=1e-6)
    assert last["state_dict"]["temperature"].item() == pytest.approx(record["final"][tags.TEMPERATURE], rel=1e-6)
    # It is what that validation's logits (recomputed here by a forward pass) choose, with its reason.
    model, logits, labels = validation_logits(best_checkpoint(tiny_run), tiny_run)
    t, why = choose_temperature(logits, labels)
    assert model.temperature.item() == pytest.approx(t, rel=1e-3) and best["calibration_note"] == why
    assert model.calibration_note == why  # Lightning's loading restores it too
    if why is None:
        assert nll(logits, labels, t) < nll(logits, labels, 1.0)


def over_confident(n: int, scale: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (n,))
    return (torch.randn(n, 3) + 1.5 * F.one_hot(labels, 3)) * scale, labels


def test_a_temperature_is_kept_only_where_it_can_be_trusted() -> None:
    logits, labels = over_confident(400)
    t, why = choose_temperature(logits, labels)
    assert why is None and t == pytest.approx(fit_temperature(logits, labels)) and t > 1
    # Row 104 of the 2026-12-05 trial: a one-class validation split drove T to 4.6e-05, and predict printed 1.000000.
    one_class = labels == 0
    assert choose_temperature(logits[one_class], labels[one_class]) == (1.0, "the validation split holds one class")
    right = logits.argmax(-1) == labels  # no mistake: the NLL falls as T goes to 0
    t, why = choose_temperature(logits[right], labels[right])
    assert t == 1.0 and "no mistake" in why
    # Sure and wrong half the time: T runs off to uniform probabilities.
    t, why = choose_temperature(torch.tensor([[30.0, -30.0]] * 20), torch.tensor([0, 1] * 10))
    assert t == 1.0 and "outside 0.05-20" in why
    # Chance logits on a few rows (a seed where it shows): a T fitted on half does worse on the other half.
    torch.manual_seed(66)
    t, why = choose_temperature(torch.randn(12, 3) * 3, torch.randint(0, 3, (12,)))
    assert t == 1.0 and "held-out validation NLL" in why, why


@pytest.mark.slow  # real fits
def test_row_104_a_one_class_validation_split_leaves_the_probabilities_as_trained(tmp_path: Path, capsys) -> None:
    files = write_splits(tmp_path, train=30, validation=12, test=0)
    rows = Path(files["validation"]).read_text().splitlines()
    label = rows[1].rsplit(",", 1)[1]
    Path(files["validation"]).write_text("\n".join([rows[0], *(r for r in rows[1:] if r.rsplit(",", 1)[1] == label)]) + "\n")
    code, err = run_cli(["fit", f"--data.data_files={files}", "--data.text_column=sentence", *TINY,
                         "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}"])
    assert code == 0, err[-3000:]
    assert err.count("warning: calibration: T = 1") == 1 and "holds one class" in err  # once, not per epoch
    run = next(tmp_path.glob("lightning_logs/*version_0"))
    assert {entry[tags.TEMPERATURE] for entry in json.loads((run / FILENAME).read_text())["history"]} == {1.0}
    assert "not fitted): the validation split holds one class" in (run / "model_card.md").read_text()
    ckpt = str(run / "checkpoints" / "last.ckpt")
    model = TextClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    capsys.readouterr()
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    main(["predict", f"--ckpt_path={ckpt}", f"--input={tmp_path / 'in.txt'}", "--accelerator=cpu"])
    out, err = capsys.readouterr()
    assert "predict: the model's own probabilities (T = 1: the validation split holds one class)" in err
    calibrated = torch.tensor([list(json.loads(line)["probabilities"].values()) for line in out.splitlines()])
    torch.testing.assert_close(calibrated, forward(model, model_tokenizer(ckpt)).softmax(-1), atol=1e-6, rtol=0)


def test_the_logged_ece_is_torchmetrics_on_the_same_probabilities(tiny_run) -> None:
    record = json.loads((Path(tiny_run.trainer.log_dir) / FILENAME).read_text())
    model, logits, labels = validation_logits(best_checkpoint(tiny_run), tiny_run)
    ece = MulticlassCalibrationError(3, n_bins=15, norm="l1")
    assert ece(logits.softmax(-1), labels).item() == pytest.approx(record["best"][tags.VAL_ECE], abs=1e-6)
    after = ece(logits.div(model.temperature).softmax(-1), labels).item()
    assert after == pytest.approx(record["best"][tags.VAL_ECE_CALIBRATED], abs=1e-6)
    if model.temperature.item() != 1:  # kept only where trusted (see below): then it changed something
        assert after != pytest.approx(record["best"][tags.VAL_ECE], abs=1e-4)
    # The NLL before (the validation loss) and after scaling, which T minimises.
    nll = torch.nn.functional.cross_entropy
    assert nll(logits, labels).item() == pytest.approx(record["best"][tags.VAL_LOSS], abs=1e-5)
    scaled = nll(logits.div(model.temperature), labels).item()
    assert scaled == pytest.approx(record["best"][tags.VAL_LOSS_CALIBRATED], abs=1e-5)
    assert scaled < nll(logits, labels) if model.temperature.item() != 1 else scaled == nll(logits, labels)
    assert record["test"][tags.TEST_ECE] is not None and record["test"][tags.TEST_ECE_CALIBRATED] is not None

    # The reliability diagram: one per validation (none for the sanity check) and one for the test.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(tiny_run.trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    shown = {split: events.Images(f"{split}/{tags.RELIABILITY}") for split in ("val", "test")}
    assert [len(shown["val"]), len(shown["test"])] == [2, 1]
    assert (shown["val"][-1].width, shown["val"][-1].height) == (450, 400)  # read at ~400 px in TensorBoard


def predicted(ckpt: str, tmp_path: Path, capsys, *flags: str) -> torch.Tensor:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    main(["predict", f"--ckpt_path={ckpt}", f"--input={source}", "--accelerator=cpu", *flags])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return torch.tensor([list(line["probabilities"].values()) for line in lines])


def forward(model: TextClassifier, tokenizer) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return torch.cat([model(torch.tensor([ids]), torch.tensor([len(ids)]))
                          for ids in (tokenizer.encode(text).ids for text in TEXTS)])


def model_tokenizer(ckpt: str):  # noqa: ANN201 - a tokenizers.Tokenizer
    from project.inference.predictor import load_checkpoint

    return load_checkpoint(ckpt)[1]


def test_predict_applies_the_temperature_unless_told_not_to(tiny_run, tmp_path: Path, capsys) -> None:
    saved = torch.load(best_checkpoint(tiny_run), weights_only=False)
    saved["state_dict"]["temperature"].fill_(1.7)  # as a validation that trusts its fitted T leaves it
    saved["calibration_note"] = None
    ckpt = str(tmp_path / "scaled.ckpt")
    torch.save(saved, ckpt)
    model = TextClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    logits = forward(model, tiny_run.datamodule.tokenizer)
    calibrated, raw = predicted(ckpt, tmp_path, capsys), predicted(ckpt, tmp_path, capsys, "--calibrated=false")
    # The CLI writes 6 decimals.
    torch.testing.assert_close(calibrated, (logits / model.temperature).softmax(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(raw, logits.softmax(-1), atol=1e-6, rtol=0)
    assert (calibrated - raw).abs().max() > 1e-3  # T != 1 made a difference the test can see
    assert torch.equal(calibrated.argmax(-1), raw.argmax(-1))  # the labels stay the same
    api = Predictor.from_checkpoint(ckpt, device="cpu", calibrated=False).probabilities(TEXTS)[1]
    torch.testing.assert_close(torch.from_numpy(api), raw, atol=1e-6, rtol=0)
    assert "temperature-scaled with T = 1.7, fitted on validation" in Predictor.from_checkpoint(ckpt).probabilities_kind


def test_a_checkpoint_from_before_calibration_predicts_with_t_1(tiny_run, tmp_path: Path, capsys) -> None:
    saved = torch.load(best_checkpoint(tiny_run), weights_only=True)
    del saved["state_dict"]["temperature"]
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    assert TextClassifier.load_from_checkpoint(old, map_location="cpu").temperature.item() == 1.0  # Lightning's loading
    assert Predictor.from_checkpoint(str(old), device="cpu").model.temperature.item() == 1.0
    raw = predicted(best_checkpoint(tiny_run), tmp_path, capsys, "--calibrated=false")
    torch.testing.assert_close(predicted(str(old), tmp_path, capsys), raw, atol=0, rtol=0)
