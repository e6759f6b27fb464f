"""The dashboards as a reader sees them: a finished tiny run opened in a real TensorBoard in
headless Chromium (Debian's ``chromium``, which .ci/run installs, driven by Playwright), tab by
tab. Screenshots of each view are saved in the test's tmp folder.

The validation split holds one text, full of characters Markdown and HTML would eat and of words
the vocabulary lacks, three times, once under each class: the model gives one label to all three,
so at least two are mistakes, and the mistakes table must show that text as written."""

import os
import re
from pathlib import Path

import pytest

from tests.helpers import CHROMIUM, FLAGS, TINY, make_rows, tensorboard, write_rows

KNOWN = 'UNESCO said: "great" <b>film</b> *is* a_b | 50% & more #1 [x](y)'

if not os.environ.get("CI"):  # in CI a missing browser fails the test; elsewhere it is skipped
    pytest.importorskip("playwright", reason="pip install -e '.[dev]' installs Playwright")
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium: `apt-get install chromium` (.ci/run does)", allow_module_level=True)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from project.commands.cli import main

    root = tmp_path_factory.mktemp("browser")
    validation = make_rows(12, seed=2) + [{"sentence": KNOWN, "label": label} for label in ("neg", "neu", "pos")]
    files = {"train": write_rows(root / "train.csv", make_rows(60, seed=1)),
             "validation": write_rows(root / "validation.csv", validation),
             "test": write_rows(root / "test.csv", make_rows(15, seed=3))}
    cli = main(["fit", f"--data.data_files={files}", "--data.text_column=sentence", "--data.batch_size=16", *TINY,
                "--model.hidden_size=16", "--trainer.max_epochs=2", "--validation_report.misclassified=100",
                f"--trainer.default_root_dir={root}", f"--data.cache_dir={root / 'cache'}"])
    return Path(cli.trainer.log_dir)


@pytest.fixture(scope="module")
def page(run: Path, tmp_path_factory: pytest.TempPathFactory):
    from playwright.sync_api import sync_playwright

    log = tmp_path_factory.mktemp("tensorboard") / "tensorboard.log"
    with tensorboard(run.parent, log, run.name) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.base = base
        yield page
        browser.close()


def open_tab(page, tab: str, ready: str) -> None:  # noqa: ANN001 - a Playwright Page
    page.goto(f"{page.base}/#{tab}")
    page.locator(ready).first.wait_for(timeout=60_000)


def test_the_opening_view_is_train_and_validation_on_one_chart(page, run: Path, tmp_path: Path) -> None:
    open_tab(page, "timeseries", "metrics-card-group-toolbar")
    page.locator("text=Epoch/accuracy").first.wait_for(timeout=60_000)
    groups = page.locator("metrics-card-group-toolbar")
    names = [re.sub(r"\s*\d+ cards?$", "", g.inner_text().strip()) for g in groups.all()]
    opened = [g.locator("mat-icon").first.get_attribute("svgicon") == "expand_less_24px" for g in groups.all()]
    # Time Series opens the first two groups; the first is loss, accuracy and macro-F1.
    assert names[:2] == ["Epoch", "best_val"] and opened[:2] == [True, True], (names, opened)
    card = page.locator("scalar-card", has_text="Epoch/accuracy").first
    card.locator("text=validation").first.wait_for(timeout=30_000)
    legend = card.inner_text()
    assert f"{run.name}/train" in legend and f"{run.name}/validation" in legend, legend
    page.screenshot(path=tmp_path / "scalars.png")


def test_mistakes_show_the_text_as_written(page, tmp_path: Path) -> None:
    open_tab(page, "text", "text=val/misclassified")
    card = page.locator("tf-text-loader", has_text="val/misclassified").first
    cell = card.locator("td", has_text="UNESCO said").first
    cell.wait_for(timeout=60_000)
    row = cell.locator("xpath=..")
    cells = [c.inner_text().strip() for c in row.locator("td").all()]
    assert KNOWN in cells, cells  # verbatim: no character eaten by Markdown or HTML
    read = cells[cells.index(KNOWN) + 1]
    # Words the vocabulary lacks are marked, not dropped; known ones (great, film, is) are not.
    assert read == '⟨UNESCO⟩ ⟨said:⟩ ⟨"⟩great⟨"⟩ ⟨<b>⟩film⟨</b>⟩ ⟨*⟩is⟨*⟩ ⟨a_b⟩ ⟨|⟩ ⟨50%⟩ ⟨&⟩ ⟨more⟩ ⟨#1⟩ ⟨[x](y)⟩', read
    # The short columns (p, true, predicted) stay on one line beside the long text.
    line = cell.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
    for short in row.locator("pre").all():
        assert short.bounding_box()["height"] < 1.6 * line, short.inner_text()
    card.screenshot(path=tmp_path / "mistakes.png")


def test_hparams_lists_the_chosen_settings(page, run: Path, tmp_path: Path) -> None:
    open_tab(page, "hparams", "tf-hparams-dashboard")
    dashboard = page.locator("tf-hparams-dashboard").first
    dashboard.get_by_text(run.name).first.wait_for(timeout=60_000)  # the row is named for the run
    shown = lambda text: dashboard.get_by_text(text, exact=True).count() > 0  # noqa: E731 - inside the shadow DOM
    chosen = ["batch_size", "cell_type", "data", "embedding_dim", "hidden_size", "max_epochs", "min_frequency", "seed"]
    assert [name for name in chosen if not shown(name)] == []
    assert [noise for noise in ("cache_dir", "num_workers", "text_separator", "data_files") if shown(noise)] == []
    metrics = ("best validation accuracy", "best validation macro-F1", "test accuracy", "test macro-F1")
    assert [metric for metric in metrics if not shown(metric)] == []
    page.screenshot(path=tmp_path / "hparams.png")
