"""The README's two TensorBoard screenshots, taken as tests/test_browser.py takes its own: a real
``tensorboard`` over a logdir, opened in Debian's headless ``chromium`` through Playwright.

    python -m project fit                       # the default BBC News run
    python docs/screenshots.py lightning_logs   # writes docs/images/scalars.png and mistakes.png

Each image is cropped to the part that tells something and stored as a 64-colour PNG, so that
the repository stays small."""

import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import CHROMIUM, FLAGS, tensorboard  # noqa: E402 - the tests' own server and browser

OUT = Path(__file__).resolve().parent / "images"


def small(path: Path, width: int) -> None:
    image = Image.open(path).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(64).save(path, optimize=True)


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
    print(*(f"{p}: {p.stat().st_size // 1024} KB" for p in sorted(OUT.glob("*.png"))), sep="\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "lightning_logs"))
