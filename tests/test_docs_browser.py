"""The built documentation, opened in a real headless browser at 1,280 x 800.

The docs are built into a temporary folder (skipped without Sphinx or a
Chromium); a small script added to each built page reports, once the page
has loaded, every text element that runs past the article's right edge or
is cut inside its own box, and every image with whether it loaded. The home,
"How it works" and benchmark pages are also saved as screenshots to
``docs/_build/screenshots/``.
"""

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Built page -> its source; every page of the toctree's first level.
PAGES = {
    "index.html": "index.rst",
    "install.html": "install.rst",
    "quickstart.html": "quickstart.rst",
    "auto_examples/plot_how_it_works.html": "../examples/plot_how_it_works.py",
    "user_guide.html": "user_guide.rst",
    "photos.html": "photos.rst",
    "dask.html": "dask.rst",
    "auto_examples/index.html": "../examples/GALLERY_HEADER.rst",
    "api.html": "api.rst",
    "cli.html": "cli.rst",
    "method.html": "method.md",
    "benchmarks.html": "benchmarks.rst",
    "bad_input.html": "bad_input.md",
    "changelog.html": "changelog.rst",
    "citing.html": "citing.rst",
}
SCREENSHOTS = {
    "index.html": "home.png",
    "auto_examples/plot_how_it_works.html": "how_it_works.png",
    "benchmarks.html": "benchmarks.png",
}

REPORT = """<script>
window.addEventListener("load", () => {
  const article = document.querySelector(".bd-article") || document.body;
  const right = article.getBoundingClientRect().right + 1;
  const bad = [];
  const selector = "p, li, h1, h2, h3, dt, td, th, pre, .highlight, img, table";
  for (const el of article.querySelectorAll(selector)) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    const style = getComputedStyle(el);
    const cut = el.scrollWidth > el.clientWidth + 1 && style.overflowX !== "visible";
    const range = document.createRange();
    range.selectNodeContents(el);
    const past = range.getBoundingClientRect().right > right;
    if (box.right > right || cut || past) {
      bad.push(el.tagName + ": " + el.textContent.trim().slice(0, 80));
    }
  }
  const images = [...document.querySelectorAll(".bd-article img")].map(
    (img) => [img.getAttribute("src"), img.complete && img.naturalWidth > 0]
  );
  const out = document.createElement("pre");
  out.id = "ndde-report";
  out.textContent = JSON.stringify({bad, images});
  document.body.appendChild(out);
});
</script>"""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--window-size=1280,800",
    "--virtual-time-budget=10000",
]


def _browser():
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"]:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("sphinx")
    pytest.importorskip("pydata_sphinx_theme")
    if _browser() is None:
        pytest.skip("no Chromium to open the docs")
    out = tmp_path_factory.mktemp("docs")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(DOCS), str(out)]
        + ["-d", str(out / ".doctrees")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _source_has_image(source):
    text = (DOCS / source).read_text()
    if source.endswith(".py"):
        return "plt." in text
    return re.search(r"\.\. (plot|image|figure)::|!\[", text) is not None


def _report(page):
    text = page.read_text()
    page.write_text(text.replace("</body>", REPORT + "</body>"))
    dom = subprocess.run(
        [_browser(), *FLAGS, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="ndde-report"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, f"{page.name}: the page did not load in the browser"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("name", list(PAGES))
def test_page_fits_the_window_and_shows_its_images(built, name):
    report = _report(built / name)
    assert report["bad"] == [], f"{name}: lines overflow or are cut"
    assert all(loaded for _, loaded in report["images"]), report["images"]
    if _source_has_image(PAGES[name]):
        assert report["images"], f"{name}: its source has a figure, the page none"


@pytest.mark.parametrize("name", list(SCREENSHOTS))
def test_screenshots(built, name):
    import numpy as np
    from PIL import Image

    shots = ROOT / "docs" / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / SCREENSHOTS[name]
    subprocess.run(
        [_browser(), *FLAGS, f"--screenshot={shot}", (built / name).as_uri()],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (800, 1280)
    assert pixels.std() > 20  # text and figures, not an empty page
