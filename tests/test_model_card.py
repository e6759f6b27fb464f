"""model_card.md, written by every fit in its run folder (project/training/model_card.py): its figures are
the ones another path gives (metrics.json, the DataModule, the checkpoint, the run's tokenizer);
the per-class tables agree with the split sizes and the macro figures; a resumed run writes it
anew; a separate ``test`` run writes none."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from project import tags
from project.commands.cli import main
from project.training.metrics_file import FILENAME as METRICS
from project.training.model_card import FILENAME, value_cell
from tests.helpers import best_checkpoint, run_cli, run_dir, tiny_data


def section(card: str, heading: str) -> str:
    """The text under ``## heading`` (or ``### heading``), up to the next heading."""
    found = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#|\Z)", card, re.M | re.S)
    assert found, f"no section {heading}"
    return found.group(1)


def rows(text: str) -> list[list[str]]:
    """The cells of each row of the Markdown tables in ``text``, header and rule lines left out."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    found = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [r for r in found if not set("".join(r)) <= set("-") and r[0] not in ("setting", "split", "class")]


def table(text: str) -> dict[str, str]:
    return {r[0]: r[1] for r in rows(text)}


@pytest.fixture(scope="module")
def card(tiny_run) -> tuple[str, Path, dict]:
    run = Path(tiny_run.trainer.log_dir)
    return (run / FILENAME).read_text(), run, json.loads((run / METRICS).read_text())


def test_the_card_lies_in_the_run_folder_with_metrics_json_s_figures(card) -> None:
    text, run, record = card
    assert (run / METRICS).is_file() and (run / "checkpoints").is_dir()
    assert text.startswith("---\n") and f"\n# {run.name}\n" in text  # Hugging Face's metadata block, then the title
    assert not list(run.glob(".*.tmp"))  # written beside, then renamed
    results = {r[0].split(" (")[0]: r for r in rows(section(text, "Results"))}
    best, test = record["best"], record["test"]
    assert results["validation"][0] == f"validation (epoch {best['epoch']}, step {best['step']})"
    assert results["validation"][1:4] == [value_cell(best[t]) for t in (tags.VAL_ACC, tags.VAL_F1, tags.VAL_LOSS)]
    assert results["test"][1:4] == [value_cell(test[t]) for t in (tags.TEST_ACC, tags.TEST_F1, tags.TEST_LOSS)]
    assert table(section(text, "Time and hardware"))["fit wall seconds"] == value_cell(record["wall_s"])
    assert f"`{record['best_checkpoint']}`" in section(text, "Files")
    assert table(section(text, "Time and hardware"))["torch"] == torch.__version__
    # The CPU with torch's capability (AVX2, AVX512: which kernels ran), as metrics.json records it.
    capability = torch.backends.cpu.get_cpu_capability()
    assert table(section(text, "Time and hardware"))["CPU"] == value_cell(record["hardware"]["CPU"])
    assert record["hardware"]["CPU"].endswith(f" logical cores, {capability})")


def test_split_sizes_and_label_counts_are_the_datamodule_s(card, tiny_run) -> None:
    text = card[0]
    dm = tiny_run.datamodule
    got = {r[0]: r[1:] for r in rows(section(text, "Data")) if r[0] in ("train", "validation", "test")}
    for split in ("train", "validation", "test"):
        labels = Counter(dm.dataset[split].with_format(None)["label"])
        assert got[split] == [str(len(dm.dataset[split])), *(str(labels[i]) for i in range(dm.num_classes))], split
    assert got["train"][1:] == [str(c) for c in dm.label_counts.tolist()]


def test_every_model_setting_is_the_checkpoint_s_and_the_vocabulary_the_tokenizer_s(card, tiny_run) -> None:
    text, run, _ = card
    saved = torch.load(best_checkpoint(tiny_run), weights_only=False)
    model = table(section(text, "Model"))
    hparams = {k: v for k, v in saved["hyper_parameters"].items() if not k.startswith("_")}
    assert model == {k: value_cell(v) for k, v in hparams.items()}
    vocab = Tokenizer.from_file(str(run / "tokenizer.json")).get_vocab_size()
    assert table(section(text, "Tokenizer"))["vocabulary size"] == str(vocab)
    # The temperature of the kept checkpoint (calibration.py), the one predict applies.
    t = saved["state_dict"]["temperature"].item()
    if note := saved.get("calibration_note"):  # T = 1 kept, and the card says why (calibration.py)
        assert t == 1 and f"(T = 1, not fitted): {note}." in section(text, "Calibration")
        assert f"not temperature-scaled: {note}." in text
    else:
        assert f"T = {value_cell(t)}," in section(text, "Calibration") and f"T={t:.4g}" in text
    training = table(section(text, "Training"))
    assert (training["max_epochs"], training["batch_size"], training["precision"]) == ("2", "16", "32-true")


@pytest.mark.parametrize("split", ["validation", "test"])
def test_the_per_class_tables_add_up_to_the_split_and_its_macro_figures(card, tiny_run, split: str) -> None:
    text, _, record = card
    figures = record["best"] if split == "validation" else record["test"]
    prefix = "val" if split == "validation" else "test"
    table_rows = rows(section(text, f"Per class, {split}"))
    assert [r[0] for r in table_rows] == tiny_run.datamodule.label_names
    precision, recall, f1, support = ([float(r[i]) for r in table_rows] for i in (1, 2, 3, 4))
    assert sum(support) == len(tiny_run.datamodule.dataset[split])
    # Macro-F1 is the mean of the per-class F1; accuracy the support-weighted mean recall.
    assert sum(f1) / len(f1) == pytest.approx(figures[f"{prefix}/f1"], abs=2e-3)
    accuracy = sum(r * s for r, s in zip(recall, support)) / sum(support)
    assert accuracy == pytest.approx(figures[f"{prefix}/acc"], abs=2e-3)


def test_the_limits_say_what_the_model_cannot_do(card, tiny_run) -> None:
    limits = section(card[0], "Intended use and limits")
    dm = tiny_run.datamodule
    assert f"Texts are cut at {dm.hparams.max_length} tokens (`--data.max_length`)" in limits
    assert f"outside the {dm.vocab_size:,}-word vocabulary" in limits
    assert f"one of these {dm.num_classes} labels ({', '.join(dm.label_names)})" in limits
    assert f"({len(dm.dataset['train']):,} texts, {dm.num_classes} classes" in limits


@pytest.mark.slow  # three real fits
def test_a_resumed_run_rewrites_the_card_and_a_test_run_writes_none(tmp_path: Path) -> None:
    data = [*tiny_data(tmp_path), f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=2"]
    main(["fit", *data, "--test_after_fit=false"])
    run = run_dir(tmp_path)
    first = (run / FILENAME).read_text()
    assert "epochs completed | 2 |" in first and "Per class, test" not in first  # no test asked for
    (run / FILENAME).unlink()
    # Resumed when it had finished: nothing left to train, then the test after fit.
    main(["fit", *data, "--ckpt_path=last"])
    second = (run / FILENAME).read_text()
    assert "### Per class, test" in second
    # The kept validation's per-class table came back with the checkpoint.
    assert section(second, "Per class, validation") == section(first, "Per class, validation")
    assert section(second, "Results").startswith(section(first, "Results").split("\n\nValidation:")[0])
    code, _ = run_cli(["test", *data, "--ckpt_path=last"])
    assert code == 0 and (run_dir(tmp_path, 1) / METRICS).exists() and not (run_dir(tmp_path, 1) / FILENAME).exists()


def test_the_card_says_what_the_temperature_did_to_each_split() -> None:
    """The default BBC run kept T = 2.2 (it lowered validation's NLL and ECE) and raised the test
    ECE from 0.0177 to 0.0383 (issue 31's example): the card says so, in figures."""
    from project.training.model_card import scaling_effect

    best = {tags.VAL_ECE: 0.04279, tags.VAL_ECE_CALIBRATED: 0.02284, tags.VAL_LOSS: 0.299}
    worse = {tags.TEST_ECE: 0.0177, tags.TEST_ECE_CALIBRATED: 0.03829, tags.TEST_LOSS: 0.08288}
    said = scaling_effect(best, worse)
    assert "of validation from 0.04279 to 0.02284, of test from 0.0177 to 0.03829" in said
    assert "the raw probabilities were the better calibrated" in said and "--calibrated false" in said
    better = {**worse, tags.TEST_ECE_CALIBRATED: 0.01}
    assert "raw probabilities" not in scaling_effect(best, better)
    assert scaling_effect({}, {}) == ""
