"""The README's screenshots, taken as the tests take their own, in Debian's headless ``chromium``
through Playwright: two of a real ``tensorboard`` over a logdir (tests/test_browser.py), and one
of the page of ``python -m project serve`` (tests/test_serve.py) over the run's export.

    python -m project fit                       # the default BBC News run
    python docs/screenshots.py lightning_logs   # writes docs/images/scalars.png, mistakes.png, serve.png
    python docs/screenshots.py lightning_logs serve   # serve.png alone
    python docs/screenshots.py benchmarks/out/pairs/trec-separate-s42/lightning_logs pairs   # serve_pairs.png
    python docs/screenshots.py benchmarks/out/multi_label/s42/lightning_logs multi_label
        # multi_label_per_label.png, multi_label_mistakes.png, serve_multi_label.png

Each image is cropped to the part that tells something and stored as a 64-colour PNG, so that
the repository stays small."""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import CHROMIUM, FLAGS, tensorboard  # noqa: E402 - the tests' own server and browser

# A BBC-style paragraph of the kind a colleague would paste in.
TEXT = ("Shares in the carmaker rose 4% after it reported record quarterly profits and raised its "
        "forecast for the year, sending the wider market to a two-month high.")

OUT = Path(__file__).resolve().parent / "images"


def small(path: Path, width: int) -> None:
    image = Image.open(path).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(64).save(path, optimize=True)


# Two TREC questions, for the page of a model of question pairs (benchmarks/pairs.py's trec task),
# and the two run together, for the page of a multi-label model (benchmarks/multi_label.py's set).
PAIR = ("Who wrote the novel Moby Dick ?", "Who was the first woman to fly across the Atlantic ?")
TWO_QUESTIONS = "Who wrote the novel Moby Dick ? How far is it from Denver to Aspen ?"


def serve_page(logdir: Path, pair: bool = False, image: str = "serve.png", text: str = TEXT) -> None:
    """Export the run's best checkpoint, serve it, type ``text`` (or PAIR, for a model of text
    pairs) into the page and press the button; the page is saved as ``image``."""
    spec = importlib.util.spec_from_file_location("serve_benchmark", ROOT / "benchmarks" / "serve.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run = sorted(logdir.glob("*version_*"))[0]
    best = next(run.glob("checkpoints/best-*.ckpt"))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "project", "export", f"--ckpt_path={best.resolve()}", "--output=exports/bbc"],
                       check=True, cwd=tmp)
        command = [sys.executable, "-m", "project", "serve", "--model=exports/bbc", "--port=0"]
        with bench.server(command, cwd=tmp) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 760, "height": 600})
            page.goto(url)
            if pair:
                page.wait_for_selector("#text1")  # the second box, made once /health said the columns
                page.fill("#text1", PAIR[1])
            page.fill("#text", PAIR[0] if pair else text)
            page.click("#predict")
            page.wait_for_function("document.querySelectorAll('#bars .row').length > 0")
            page.screenshot(path=OUT / image, full_page=True)
            browser.close()
    small(OUT / image, 600)


def multi_label(logdir: Path) -> None:
    """A multi-label run's per-label table and mistakes (TensorBoard's Text tab), and its page
    with several labels lit."""
    run = next(p.name for p in sorted(logdir.glob("*version_*")))
    with tensorboard(logdir, Path("/tmp/screenshots-tensorboard.log"), run) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"{base}/#text")
        for tag, image in (("test/per_class", "multi_label_per_label.png"), ("val/misclassified", "multi_label_mistakes.png")):
            card = page.locator("tf-text-loader", has_text=tag).first
            card.locator("td").first.wait_for(timeout=60_000)
            card.scroll_into_view_if_needed()
            box = card.bounding_box()
            page.screenshot(path=OUT / image, clip={**box, "height": min(box["height"], 620)})
            small(OUT / image, 900)
        browser.close()
    serve_page(logdir, image="serve_multi_label.png", text=TWO_QUESTIONS)


def main(logdir: Path) -> None:
    run = next(p.name for p in sorted(logdir.glob("*version_*")))
    OUT.mkdir(exist_ok=True)
    with tensorboard(logdir, Path("/tmp/screenshots-tensorboard.log"), run) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/#timeseries")
        page.locator("text=Epoch/macro_f1").first.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # the charts draw after their data arrives
        page.screenshot(path=OUT / "scalars.png", clip={"x": 0, "y": 0, "width": 1150, "height": 900})
        page.goto(f"{base}/#text")
        card = page.locator("tf-text-loader", has_text="val/misclassified").first
        card.locator("td").first.wait_for(timeout=60_000)
        box = card.bounding_box()
        page.set_viewport_size({"width": 1400, "height": int(box["y"] + 700)})
        card.scroll_into_view_if_needed()
        box = card.bounding_box()
        page.screenshot(path=OUT / "mistakes.png", clip={**box, "height": min(box["height"], 620)})
        browser.close()
    small(OUT / "scalars.png", 900)
    small(OUT / "mistakes.png", 900)
    serve_page(logdir)
    print(*(f"{p}: {p.stat().st_size // 1024} KB" for p in sorted(OUT.glob("*.png"))), sep="\n")


if __name__ == "__main__":
    logs = Path(sys.argv[1] if len(sys.argv) > 1 else "lightning_logs")
    if sys.argv[2:] == ["serve"]:
        serve_page(logs)
    elif sys.argv[2:] == ["pairs"]:
        serve_page(logs, pair=True, image="serve_pairs.png")
    elif sys.argv[2:] == ["multi_label"]:
        multi_label(logs)
    else:
        main(logs)
