"""TensorBoard as a user sees it: a real ``tensorboard`` server on 127.0.0.1 over a finished
tiny run, read through the same HTTP endpoints its tabs use. What it shows comes from the model
and the callbacks: Lightning's LearningRateMonitor, GradNorm, Throughput, ValidationReport and
HParams."""

import inspect
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, RichModelSummary, RichProgressBar

from project import tags
from project.tags import HP_METRICS
from project.training.metrics_file import FILENAME
from project.training.progress import LineProgressBar
from tests.helpers import best_checkpoint, get, tensorboard


@pytest.fixture
def server(tiny_run, tmp_path: Path):
    """A real ``tensorboard`` server on 127.0.0.1 over a copy of the run, named ``run``."""
    shutil.copytree(Path(tiny_run.trainer.log_dir), tmp_path / "logs" / "run")
    with tensorboard(tmp_path / "logs", tmp_path / "tensorboard.log", "run") as base:
        yield base


@pytest.mark.slow
def test_every_tab_is_served(server: str, tiny_run) -> None:
    record = json.loads((Path(tiny_run.trainer.log_dir) / FILENAME).read_text())
    assert sorted(json.loads(get(f"{server}/data/runs"))) == ["run", "run/train", "run/validation"]
    found = json.loads(get(f"{server}/data/plugin/scalars/tags"))
    # Train and validation of each metric on one chart: one tag, two runs (runs.py).
    curves = {"Epoch/loss", "Epoch/accuracy", "Epoch/macro_f1"}
    assert set(found["run/train"]) == set(found["run/validation"]) == curves
    scalars = set(found["run"])
    expected = {f"test/{m}" for m in ("loss", "acc", "f1", "ece", "ece_calibrated")}
    expected |= {"train/loss_step", "train/grad_norm", "lr-AdamW", *HP_METRICS, tags.VAL_ECE,
                 tags.VAL_ECE_CALIBRATED, tags.TEMPERATURE,
                 "perf/train_tokens_per_s", "perf/train_samples_per_s", "perf/epoch_s", "perf/peak_memory_mb",
                 "perf/memory_growth_mb", "perf/val_tokens_per_s", "perf/elapsed_s",
                 "perf/train_tokens_per_s_median", "model/trainable_params"}
    assert expected <= scalars, expected - scalars
    assert "epoch" not in scalars and not scalars & set(tags.CURVES)  # no step-indexed epoch series, no duplicate
    # The names come from one module: every tag it lists for a scalar is one TensorBoard shows.
    listed = {v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str) and "/" in v}
    listed -= {*tags.CURVES, *tags.LANGUAGE_MODEL}  # a pretrain run's: tests/test_pretrain.py
    listed -= set(tags.MULTI_LABEL)  # a multi-label run's: tests/test_multi_label.py
    assert listed <= scalars, listed - scalars
    # No NaN point anywhere (the old HParams placeholders were NaN at step 0).
    series = {(run, tag): json.loads(get(f"{server}/data/plugin/scalars/scalars?run={run}&tag={tag}"))
              for run, tags_ in found.items() for tag in tags_}
    assert all(value == value for points in series.values() for _, _, value in points)
    # Validation accuracy: one point per epoch, the figures the run recorded (its metrics.json).
    history = [entry[tags.VAL_ACC] for entry in record["history"]]
    points = series["run/validation", "Epoch/accuracy"]
    assert len(history) == 2 and [value for _, _, value in points] == pytest.approx(history)
    # An epoch's scalars, images and texts sit at one step.
    steps = [step for _, step, _ in points]
    assert [step for _, step, _ in series["run/train", "Epoch/loss"]] == steps
    images = json.loads(get(f"{server}/data/plugin/images/images?run=run&tag=val/confusion_matrix"))
    assert [image["step"] for image in images] == steps  # one per validation epoch, sanity check excluded
    assert get(f"{server}/data/plugin/images/individualImage?{images[-1]['query']}").startswith(b"\x89PNG")
    for tag in ("val/per_class/text_summary", "val/misclassified/text_summary"):
        texts = json.loads(get(f"{server}/data/plugin/text/text?run=run&tag={tag}"))
        assert [text["step"] for text in texts] == steps, tag
    # The learning rate each step (Lightning's LearningRateMonitor, logging_interval step).
    lr = series["run", "lr-AdamW"]
    assert len(lr) == 8 and len({value for _, _, value in lr}) > 1  # 4 steps an epoch, one-cycle
    # The test split gets the validation's report too.
    for tag in ("test/confusion_matrix", "test/reliability"):
        assert len(json.loads(get(f"{server}/data/plugin/images/images?run=run&tag={tag}"))) == 1, tag
    table = json.loads(get(f"{server}/data/plugin/text/text?run=run&tag=test/per_class/text_summary"))
    assert all(name in table[-1]["text"] for name in ("neg", "neu", "pos", "precision", "recall"))

    # HParams: every setting of the run, those it chose first (tiny_run's flags, the data, the
    # cell, the seed: TensorBoard shows the first five); the four metrics, at the real figures.
    experiment = json.loads(get(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""}))
    listed = [h["name"] for h in experiment["hparamInfos"]]
    assert listed[:8] == sorted(["cell_type", "data", "seed", "embedding_dim", "hidden_size", "min_frequency",
                                 "batch_size", "max_epochs"])
    assert {"num_layers", "max_length", "bidirectional", "learning_rate", "pooling"} <= set(listed[8:])
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == list(HP_METRICS)
    groups = json.loads(get(f"{server}/data/plugin/hparams/session_groups",
                            {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                             "colParams": [], "startIndex": 0, "sliceSize": 10}))
    session = groups["sessionGroups"][0]
    assert session["name"] == Path(tiny_run.trainer.log_dir).name == "tiny_run0-lstm-version_0"  # what it is
    assert session["hparams"]["bidirectional"] is True and session["hparams"]["cell_type"] == "lstm"
    assert set(session["hparams"]) == set(listed)  # its values for every setting listed
    assert (session["hparams"]["seed"], session["hparams"]["hidden_size"]) == ("42", "8")  # not 42.000
    assert not {"cache_dir", "num_workers", "text_separator", "path", "data_files"} & set(session["hparams"])
    values = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
    assert values == pytest.approx({
        tags.BEST_VAL_ACC: record["best"][tags.VAL_ACC], tags.BEST_VAL_F1: record["best"][tags.VAL_F1],
        tags.TEST_ACC: record["test"][tags.TEST_ACC], tags.TEST_F1: record["test"][tags.TEST_F1],
    })


def test_the_learning_rate_is_lightnings_own_monitor(tiny_run) -> None:
    monitor = next(c for c in tiny_run.trainer.callbacks if isinstance(c, LearningRateMonitor))
    assert monitor.logging_interval == "step"
    # Lightning's own, which only stays quiet in a run without a logger (it would refuse it).
    assert {name for name in vars(type(monitor)) if name.startswith("on_")} == {
        "on_train_start", "on_train_batch_start", "on_train_epoch_start"}
    assert all(f"super().{name}" in inspect.getsource(getattr(type(monitor), name)) for name in vars(type(monitor))
               if name.startswith("on_"))


def test_a_progress_bar_and_the_rich_model_summary_are_on_by_default(tiny_run) -> None:
    callbacks = tiny_run.trainer.callbacks
    # Rich on a terminal, plain lines when output goes to a file (as under pytest without -s):
    # test_progress.py runs both.
    expected = RichProgressBar if sys.stdout.isatty() else LineProgressBar
    assert type(tiny_run.trainer.progress_bar_callback) is expected
    assert any(isinstance(c, RichModelSummary) for c in callbacks)


def test_the_run_keeps_what_predict_needs(tiny_run) -> None:
    import torch

    best = torch.load(best_checkpoint(tiny_run), weights_only=True)
    assert best["hyper_parameters"]["label_names"] == ["neg", "neu", "pos"]
    assert best["hyper_parameters"]["cell_type"] == "lstm"
    assert json.loads(best["TextDataModule"]["tokenizer"])["model"]["vocab"]["great"] > 1


# --- the pieces the reports are made of ---


def test_the_mistakes_table_shows_what_the_model_read() -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from project.data.tokenization import PAD, UNK
    from project.training.validation_report import as_read

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(["upset the favourites in the final"],
                                  trainers.WordLevelTrainer(special_tokens=[PAD, UNK]))
    assert as_read(tokenizer, "Ecuador upset Brazil") == "⟨Ecuador⟩ upset ⟨Brazil⟩"  # kept, marked, cased
    assert as_read(tokenizer, "upset the favourites") == "= text (every word known)"
    assert as_read(tokenizer, "with UNESCO-led teams") == "⟨with⟩ ⟨UNESCO-led⟩ ⟨teams⟩"  # touching tokens: one mark
    tokenizer.enable_truncation(2)
    assert as_read(tokenizer, "upset the final") == "upset the ✂ read 9 of 15 characters"


def test_a_cell_is_shown_verbatim_on_one_line() -> None:
    from project.training.validation_report import cell

    assert cell("a|b *c* <i>d</i> _e_ [f](g) #h\nnext") == (
        r"a\|b \*c\* &lt;i&gt;d&lt;/i&gt; \_e\_ \[f\](g) \#h next")
    assert cell("sci_fi", keep=True) == r"<pre>sci\_fi</pre>"  # the one element TensorBoard never wraps


@pytest.mark.parametrize("n", [2, 5, 14, 20])
def test_the_confusion_matrix_fits_the_dashboard(n: int) -> None:
    import torch

    from project.training.validation_report import confusion_figure

    counts = torch.eye(n, dtype=torch.long) * 900 + 3  # three-digit counts
    counts[0] = 0  # a class with no validation example: no division by zero, an empty row
    names = [f"class_{i}_with_a_long_name" for i in range(n)]
    figure = confusion_figure(counts, names, "validation")
    width, _ = figure.get_size_inches() * figure.dpi
    assert width <= 360  # TensorBoard shows images about 330 px wide: no shrinking the text away
    matrix, bar = figure.axes  # and a colour bar
    assert bar.get_xlim() == (0.0, 1.0) and matrix.get_images()[0].get_array().max() == pytest.approx(903 / (903 + 3 * (n - 1)))
    shown = [t.get_text() for t in matrix.texts]
    # Counts in the cells while they have room for them (three digits: up to 17 classes); names always.
    assert shown == ([] if n > 16 else [str(c) for c in counts.flatten().tolist() if c])
    assert [t.get_text() for t in matrix.get_yticklabels()] == [name[:15] + "…" for name in names]


@pytest.mark.parametrize("data, expected", [
    ({}, "bbc_news-gru"),
    ({"path": "fancyzhx/ag_news"}, "ag_news-gru"),
    ({"path": "nyu-mll/glue", "name": "sst2"}, "glue-sst2-gru"),
    ({"data_files": {"train": "../shared/data/sst2/train.tsv"}}, "sst2-gru"),
    ({"data_files": {"train": ["/x/My Data/a.csv"]}}, "my_data-gru"),
])
def test_a_run_is_named_for_what_it_is(data: dict, expected: str) -> None:
    from project.training.runs import run_name

    assert run_name(data, "gru") == expected


def test_row_100_names_the_font_cannot_draw_are_shown_by_their_id_without_warnings() -> None:
    """CJK and emoji label names were drawn as boxes, with one matplotlib warning per glyph."""
    import io
    import warnings

    import torch

    from project.training.validation_report import (_font, cell, confusion_figure, drawable, per_class_table,
                                                    with_figure_ids)

    names = ["sport", "料理", "спорт ⚽", "café", "<img src=x onerror=alert(1)>"]
    shown = drawable(names)
    assert shown[0] == "sport" and shown[3] == "café" and shown[4] == names[4]
    for i in (1, 2):  # whatever the machine's font lacks is shown by its id, what it has as written
        assert shown[i] == (names[i] if all(c.isspace() or _font().get_char_index(ord(c)) for c in names[i]) else f"#{i}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would fail here
        confusion_figure(torch.eye(5, dtype=torch.long), names, "validation").savefig(io.BytesIO(), format="png")
    # The table beside the figure says which id is which class (the helper's rerun: it did not).
    rows = [{"class": name, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for name in names]
    table = per_class_table(with_figure_ids(rows))
    for i, name in enumerate(names):
        assert f"| {cell(name if shown[i] == name else f'#{i} {name}', keep=True)} |" in table, table
