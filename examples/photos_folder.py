"""
From a folder of photos to people
=================================

:func:`sklearn_ndde.faces.run_photos` (the command ``sklearn-ndde photos``)
finds every face of a photo folder with dlib, clusters the faces into
people with :class:`~sklearn_ndde.NDDeTPDiClustering`, never putting two
faces of one photo in one person, and writes ``faces.csv``, ``people.csv``,
a crop of each face and ``index.html``.

This example runs it on a small collection of photos (the folder named by
the ``SKLEARN_NDDE_PHOTOS`` environment variable),
shows the page in a headless Chromium when one is installed, then adds
new photos and runs again: the existing people keep their ids. It needs
``pip install "sklearn-ndde[faces]"``; without dlib or the photos it only
says what is missing.
"""

# %%
import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

try:
    here = Path(__file__).resolve().parent
except NameError:  # run by a tool that sets no __file__
    here = Path.cwd()
photos = Path(
    os.environ.get(
        "SKLEARN_NDDE_PHOTOS", here.parents[1] / "shared" / "data" / "photos"
    )
)
try:
    import dlib  # noqa: F401

    from sklearn_ndde.faces import run_photos
except ImportError:
    run_photos = None
ready = run_photos is not None and photos.is_dir()
if not ready:
    print(
        "Needs dlib (pip install 'sklearn-ndde[faces]') and a photo folder: "
        f"{photos} is {'there' if photos.is_dir() else 'missing'}."
    )

# %%
# The first run detects and embeds every face, then clusters them.
work = Path(tempfile.mkdtemp())
if ready:
    # The collection's own README and truth.csv describe it: leave them out.
    ignore = shutil.ignore_patterns("README.md", "*.csv")
    shutil.copytree(photos, work / "photos", ignore=ignore)
    summary = run_photos(work / "photos", work / "out")
    for item in summary["skipped"]:
        print(f"skipped {item['file']}: {item['reason']}")
    print(
        f"{summary['faces']} faces in {summary['photos']} photos: "
        f"{summary['people']} people, {summary['unassigned']} unassigned, "
        f"{summary['seconds']:.1f} s"
    )
    with open(work / "out" / "faces.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows[:4]:
        print(row)

# %%
# The collection's ``truth.csv`` names the people of each picture: score the
# pictures with one face (unassigned faces count as people of their own).
if ready:
    import numpy as np

    from sklearn_ndde.metrics import bcubed_precision_recall_fscore

    with open(photos / "truth.csv", newline="") as f:
        truth = {r["file"]: r["people"].split(";") for r in csv.DictReader(f)}
    single = [r for r in rows if len(truth.get(r["file"], [])) == 1]
    names = [truth[r["file"]][0] for r in single]
    found = [r["person"] or f"alone {i}" for i, r in enumerate(single)]
    ids = [np.unique(v, return_inverse=True)[1] for v in (names, found)]
    p, r, f = bcubed_precision_recall_fscore(*ids)
    print(f"{len(single)} single-face pictures: BCubed P {p:.3f} R {r:.3f} F {f:.3f}")

# %%
# ``index.html`` has one row per person, largest first, with a thumbnail of
# each face, and the unassigned faces last. Here it is in a headless
# Chromium, when the machine has one.
browser = shutil.which("chromium") or shutil.which("chromium-browser")
if ready and browser:
    import matplotlib.pyplot as plt
    from PIL import Image

    shot = work / "index.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,800",
            "--virtual-time-budget=5000",
            f"--screenshot={shot}",
            (work / "out" / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    fig, ax = plt.subplots(figsize=(12.8, 8), dpi=100)
    ax.imshow(Image.open(shot))
    ax.set_axis_off()
    ax.set_title("index.html of the sample collection (headless Chromium, 1,280 px)")
    fig.tight_layout()
else:
    print("No headless Chromium here: open out/index.html in a browser.")

# %%
# New photos, and a name: the second run detects faces only in the new
# content, assigns them to the people already there, and keeps every id and
# name (``people.csv`` is the place to name people).
if ready:
    new = work / "photos" / "2026"
    new.mkdir()
    for name in ["biden2.jpg", "obama3.jpg"]:
        shutil.copy(work / "photos" / "portraits" / name, new / name)
    again = run_photos(work / "photos", work / "out")
    print(
        f"second run: {again['detected_photos']} photos searched, "
        f"{again['people']} people, {again['seconds']:.1f} s"
    )
shutil.rmtree(work)
