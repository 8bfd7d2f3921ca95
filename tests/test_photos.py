"""The photos front end: scanning, decoding, the cannot-link rule, the runs.

The end-to-end tests need dlib (``pip install "sklearn-ndde[faces]"``) and
the sample collection ``../shared/data/photos``; they skip without either.
The browser test also needs Chromium.
"""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sklearn_ndde.__main__ import main
from sklearn_ndde._photos.clustering import _cut_cannot_links
from sklearn_ndde.faces import (
    FaceEmbedder,
    cluster_faces,
    find_photos,
    load_photo,
    run_photos,
)
from sklearn_ndde.metrics import bcubed_fscore

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


# ------------------------------------------------- scanning and decoding


@pytest.fixture
def small_folder(tmp_path):
    """Tiny generated pictures of every kind, and files that are not."""
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = 255
    Image.fromarray(rgb).save(folder / "a" / "rgb.jpg")
    Image.fromarray(rgb).convert("RGBA").save(folder / "a" / "rgba.PNG")
    Image.fromarray(rgb).convert("L").save(folder / "a" / "b" / "grey.png")
    # EXIF orientation 6: the stored picture is shown turned 90 degrees.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif)
    full = (folder / "a" / "rgb.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (folder / "text.jpg").write_text("not a picture")
    (folder / "notes.txt").write_text("hello")
    (folder / ".hidden" / "x.jpg").write_bytes(full)
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


def test_find_photos_lists_pictures_and_skips_the_rest(small_folder):
    photos, skipped = find_photos(small_folder)
    assert [p.as_posix() for p in photos] == [
        "a/b/grey.png",
        "a/rgb.jpg",
        "a/rgba.PNG",
        "rotated.jpg",
        "text.jpg",
        "truncated.jpg",
    ]
    assert [(p.as_posix(), r) for p, r in skipped] == [
        ("notes.txt", "not a JPEG or PNG file")
    ]


def test_find_photos_leaves_out_the_output_folder(small_folder):
    out = small_folder / "a"
    photos, _ = find_photos(small_folder, exclude=[out])
    assert all(not p.as_posix().startswith("a/") for p in photos)


def test_find_photos_refuses_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        find_photos(tmp_path / "nowhere")


def test_load_photo_gives_upright_rgb(small_folder):
    for name in ["a/rgb.jpg", "a/rgba.PNG", "a/b/grey.png"]:
        image = load_photo(small_folder / name)
        assert image.shape == (40, 60, 3) and image.dtype == np.uint8
        assert image[:, :25].mean() > 200 and image[:, 35:].mean() < 50
    turned = load_photo(small_folder / "rotated.jpg")
    assert turned.shape == (60, 40, 3)


@pytest.mark.parametrize(
    "name, reason", [("truncated.jpg", "truncated"), ("text.jpg", "decoded")]
)
def test_load_photo_names_the_reason(small_folder, name, reason):
    with pytest.raises(ValueError, match=reason):
        load_photo(small_folder / name)


def test_missing_extra_is_one_clear_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    with pytest.raises(ImportError, match=r'pip install "sklearn-ndde\[faces\]"'):
        FaceEmbedder().embed(np.zeros((10, 10, 3), np.uint8))


# ------------------------------------------------------ the cannot-link rule


def test_cut_cannot_links_cuts_the_weakest_link_between_the_pair():
    # A chain 3 -> 2 -> 1 -> 0; 0 and 3 share a photo. The link 2 -> 1 joins
    # the least alike faces, so it is the one cut.
    X = np.array([[1.0, 0.0], [0.99, 0.14], [0.6, 0.8], [0.55, 0.83]])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    parents = _cut_cannot_links(np.array([-1, 0, 1, 2]), Xn, [(0, 3)])
    np.testing.assert_array_equal(parents, [-1, 0, -1, 2])


def test_cluster_faces_never_joins_two_faces_of_one_photo():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 32))
    X = np.repeat(centres, 8, axis=0) + 0.05 * rng.standard_normal((40, 32))
    photo = np.arange(40)
    free = cluster_faces(X, photo)
    assert np.unique(free).size == 5
    # Two faces of one person in one photo, twice.
    photo[[0, 1]] = 100
    photo[[8, 9]] = 101
    labels = cluster_faces(X, photo)
    assert labels[0] != labels[1] and labels[8] != labels[9]
    # Nothing else changes much: every other face stays with its person.
    assert bcubed_fscore(np.repeat(np.arange(5), 8), labels) > 0.9


def test_cluster_faces_checks_its_input():
    with pytest.raises(ValueError, match="one photo id per row"):
        cluster_faces(np.ones((3, 2)), [0, 1])
    np.testing.assert_array_equal(cluster_faces(np.ones((1, 2)), [0]), [0])


# ------------------------------------------------ the sample collection

needs_photos = pytest.mark.skipif(
    not PHOTOS.is_dir(), reason="needs ../shared/data/photos"
)


def _read_truth():
    truth = {}
    with open(PHOTOS / "truth.csv", newline="") as f:
        for row in csv.DictReader(f):
            truth[row["file"]] = row["people"].split(";")
    return truth


def _read_faces(out):
    with open(out / "faces.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    if not PHOTOS.is_dir():
        pytest.skip("needs ../shared/data/photos")
    work = tmp_path_factory.mktemp("photos")
    photos = work / "photos"
    # The collection as a user's folder holds it: its README and truth.csv
    # describe it and are not part of it.
    shutil.copytree(PHOTOS, photos, ignore=shutil.ignore_patterns("README.md", "*.csv"))
    out = work / "out"
    assert main(["photos", str(photos), "-o", str(out), "--json"]) == 0
    return photos, out, json.loads((out / "state.json").read_text())


@needs_photos
def test_photos_finds_every_face_and_reports_the_unreadable(first_run, capsys):
    photos, out, _ = first_run
    rows = _read_faces(out)
    assert len(rows) == 30
    # The same run again, to read its summary: nothing is detected again.
    assert main(["photos", str(photos), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["faces"] == 30 and summary["detected_photos"] == 0
    skipped = {item["file"]: item["reason"] for item in summary["skipped"]}
    assert set(skipped) == {"misc/notes.txt", "misc/truncated.jpg"}
    assert "truncated" in skipped["misc/truncated.jpg"]


@needs_photos
def test_photos_groups_people_and_honours_one_face_per_photo(first_run):
    _, out, _ = first_run
    truth = _read_truth()
    rows = _read_faces(out)
    person = [r["person"] or f"alone-{i}" for i, r in enumerate(rows)]
    # Single-face pictures of the known people: one person each.
    single = [
        i
        for i, r in enumerate(rows)
        if r["file"] in truth and len(truth[r["file"]]) == 1
    ]
    y = [truth[rows[i]["file"]][0] for i in single]
    ids = lambda values: np.unique(values, return_inverse=True)[1]  # noqa: E731
    f = bcubed_fscore(ids(y), ids([person[i] for i in single]))
    assert f >= 0.95, f
    # Never two faces of one photo in one person.
    seen = set()
    for r in rows:
        if r["person"]:
            assert (r["file"], r["person"]) not in seen
            seen.add((r["file"], r["person"]))
    # Both named people of each group photo are among the people made: the
    # person that holds most of that name's single-face pictures has a face
    # in the group photo.
    holder = {}
    for name in set(y):
        ids = [person[i] for i, v in zip(single, y) if v == name]
        holder[name] = max(set(ids), key=ids.count)
    for file, names in truth.items():
        if len(names) < 2:
            continue
        found = {person[i] for i, r in enumerate(rows) if r["file"] == file}
        for name in names:
            if name != "unknown":
                assert holder[name] in found, (file, name)
    # Every face has its crop, and each person's densest face is at distance 0.
    for r in rows:
        folder = r["person"] or "unassigned"
        assert any((out / "people" / folder).glob(f"{Path(r['file']).stem}_*.jpg"))
    by_person = {}
    for r in rows:
        if r["person"]:
            by_person.setdefault(r["person"], []).append(float(r["distance"]))
    assert all(min(d) == pytest.approx(0.0, abs=1e-4) for d in by_person.values())


@needs_photos
def test_photos_second_run_keeps_people_and_names(first_run, tmp_path, capsys):
    photos, out, _ = first_run
    work = tmp_path / "work"
    shutil.copytree(photos, work / "photos")
    shutil.copytree(out, work / "out")
    photos, out = work / "photos", work / "out"
    before = {(r["file"], r["left"], r["top"]): r["person"] for r in _read_faces(out)}
    # The user names a person.
    with open(out / "people.csv", newline="") as f:
        people = list(csv.DictReader(f))
    people[0]["name"] = "Somebody <b>"
    with open(out / "people.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["person", "name", "faces"])
        writer.writeheader()
        writer.writerows(people)
    named = people[0]["person"]
    # New photos: copies of a few, in a new folder.
    new = photos / "new" / "deeper"
    new.mkdir(parents=True)
    copied = ["portraits/biden2.jpg", "portraits/obama3.jpg", "events/two_people.jpg"]
    for rel in copied:
        shutil.copy(photos / rel, new / Path(rel).name)
    assert main(["photos", str(photos), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["detected_photos"] == 0  # same content: from the cache
    rows = _read_faces(out)
    assert len(rows) == 30 + 1 + 1 + 2
    after = {(r["file"], r["left"], r["top"]): r["person"] for r in rows}
    for key, person in before.items():
        if person:
            assert after[key] == person
    # The faces left alone stay alone (the sample's lone faces: a bystander
    # and the one photo of a person).
    assert all(not after[k] for k, v in before.items() if not v)
    for rel in copied:
        for r in rows:
            if r["file"] == f"new/deeper/{Path(rel).name}":
                assert r["person"] == before[(rel, r["left"], r["top"])]
    assert {r["name"] for r in rows if r["person"] == named} == {"Somebody <b>"}
    page = (out / "index.html").read_text()
    assert "Somebody &lt;b&gt;" in page


@needs_photos
def test_photos_new_content_is_assigned_to_the_existing_person(first_run, tmp_path):
    from PIL import Image

    photos, out, state = first_run
    work = tmp_path / "work"
    shutil.copytree(photos, work / "photos")
    shutil.copytree(out, work / "out")
    photos, out = work / "photos", work / "out"
    before = _read_faces(out)
    obama = {r["person"] for r in before if r["file"] == "portraits/obama.jpg"}
    # A new photo (new bytes: mirrored) of a person already known.
    image = Image.open(photos / "portraits" / "obama.jpg")
    image.transpose(Image.FLIP_LEFT_RIGHT).save(photos / "mirrored.jpg", quality=92)
    assert main(["photos", str(photos), "-o", str(out), "--json"]) == 0
    rows = _read_faces(out)
    mirrored = [r for r in rows if r["file"] == "mirrored.jpg"]
    assert len(mirrored) == 1 and {mirrored[0]["person"]} == obama
    assert (
        json.loads((out / "state.json").read_text())["next_person"]
        == state["next_person"]
    )


def _browser():
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"]:
        path = shutil.which(name)
        if path:
            return path
    return None


@needs_photos
def test_index_html_in_a_real_browser(first_run, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium to open the page")
    _, out, _ = first_run
    page = (out / "index.html").resolve().as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,800",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    rows = _read_faces(out)
    n_people = len({r["person"] for r in rows if r["person"]})
    assert dom.count('class="person"') == n_people
    assert dom.count("<img") == len(rows)
    # Every thumbnail was loaded by the browser (the page marks each one).
    assert dom.count('data-loaded="yes"') == len(rows)
    shots = Path(__file__).resolve().parents[1] / "docs" / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "photos_index.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page],
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (800, 1280)
    assert pixels.std() > 20  # thumbnails, not an empty page


# ------------------------------------------------ bad state in the output


def test_a_people_folder_not_ours_is_refused_before_any_work(tmp_path):
    from sklearn_ndde.faces import run_photos

    (tmp_path / "photos").mkdir()
    (tmp_path / "out" / "people").mkdir(parents=True)
    (tmp_path / "out" / "people" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not made by sklearn-ndde"):
        run_photos(tmp_path / "photos", tmp_path / "out")
    assert (tmp_path / "out" / "people" / "mine.txt").read_text() == "keep me"


def test_a_damaged_state_file_is_named(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "state.json").write_text("{not json")
    code = main(["photos", str(tmp_path / "photos"), "-o", str(tmp_path / "out")])
    assert code == 2
    assert "state.json is damaged" in capsys.readouterr().err


def test_a_damaged_cache_is_rebuilt(small_folder, tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from sklearn_ndde.faces import run_photos

    out = tmp_path / "out"
    first = run_photos(small_folder, out)
    assert first["detected_photos"] == 4  # the four decodable pictures
    (out / "embeddings.npz").write_bytes(b"PK\x03\x04 damaged")
    again = run_photos(small_folder, out)
    assert again["detected_photos"] == 4 and again["faces"] == first["faces"] == 0
    reasons = {s["file"]: s["reason"] for s in again["skipped"]}
    assert reasons["notes.txt"] == "not a JPEG or PNG file"
    assert "truncated or damaged" in reasons["truncated.jpg"]
    assert reasons["text.jpg"] == "not a picture that can be decoded"


@needs_photos
def test_photos_into_its_own_folder_never_reads_its_crops(tmp_path, capsys):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    photos = tmp_path / "photos"
    shutil.copytree(PHOTOS, photos, ignore=shutil.ignore_patterns("README.md", "*.csv"))
    for _ in range(2):
        assert main(["photos", str(photos), "-o", str(photos), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        # The crops under people/ are outputs, never photos: 30 faces each time.
        assert (summary["faces"], summary["photos"]) == (30, 26)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--upsample", "40"], "upsample must be between 0 and 3"),
        (["--max-side", "-5"], "max_side must be between 32 and 20000"),
        (["--min-face-size", "-1"], "min_face_size must be between 0 and 10000"),
    ],
)
def test_photos_options_out_of_range_are_refused(tmp_path, capsys, option, message):
    (tmp_path / "photos").mkdir()
    argv = ["photos", str(tmp_path / "photos"), "-o", str(tmp_path / "out")]
    assert main(argv + option) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_pixel_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    from sklearn_ndde._photos import files

    # A picture larger than the limit (lowered here so that the test stays
    # small): refused from its header, never decoded.
    monkeypatch.setattr(files, "MAX_PIXELS", 1_000_000)
    Image.new("L", (2000, 1000)).save(tmp_path / "big.png")
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(ValueError, match="2000 x 1000 pixels, more than the 1"):
        files.load_photo(tmp_path / "big.png")
    assert decoded == []


INTERRUPTED_RUN = (
    # A shell that starts the tests in the background ignores SIGINT in its
    # children; Python then installs no KeyboardInterrupt handler.
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from sklearn_ndde.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("after", [2.0, 5.0, 10.0])
def test_photos_interrupted_then_rerun_ends_as_an_uninterrupted_run(
    first_run, tmp_path, after
):
    import signal
    import sys
    import time

    photos, reference, _ = first_run
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-c",
        INTERRUPTED_RUN,
        "photos",
        str(photos),
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 130:
        assert err.strip().endswith("sklearn-ndde: interrupted")
        assert "Traceback" not in err
    else:
        assert proc.returncode == 0  # it ended before the interrupt
    # Nothing half-written is left, and a rerun ends as the uninterrupted run.
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert main(["photos", str(photos), "-o", str(out), "--json"]) == 0
    assert (out / "faces.csv").read_text() == (reference / "faces.csv").read_text()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_photos_interrupted_keeps_its_detections_and_reruns_in_process(
    small_folder, tmp_path, monkeypatch
):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from sklearn_ndde.faces import FaceEmbedder

    out = tmp_path / "out"
    embed = FaceEmbedder.embed
    calls = []

    def interrupted(self, image):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return embed(self, image)

    monkeypatch.setattr(FaceEmbedder, "embed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_photos(small_folder, out)
    monkeypatch.setattr(FaceEmbedder, "embed", embed)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    # The two pictures searched before the interrupt are not searched again.
    again = run_photos(small_folder, out)
    assert again["detected_photos"] == 4 - 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_one_run_at_a_time_per_output_folder(small_folder, tmp_path):
    import subprocess as sp
    import sys

    out = tmp_path / "out"
    out.mkdir()
    other = sp.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".sklearn-ndde.lock").write_text(str(other.pid))
        with pytest.raises(ValueError, match=f"process {other.pid}"):
            run_photos(small_folder, out)
    finally:
        other.kill()
        other.wait()
    # A lock left by a process that no longer runs is taken over.
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    run_photos(small_folder, out)
    assert not (out / ".sklearn-ndde.lock").exists()


@needs_photos
def test_a_cache_with_nan_or_other_descriptors_is_rebuilt(tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    photos = tmp_path / "photos"
    photos.mkdir()
    for picture in sorted((PHOTOS / "portraits").glob("*.jpg"))[:2]:
        shutil.copy(picture, photos)
    out = tmp_path / "out"
    first = run_photos(photos, out)
    assert first["faces"] > 0
    with np.load(out / "embeddings.npz") as data:
        arrays = dict(data)
    for broken in (
        np.full_like(arrays["descriptors"], np.nan),
        np.zeros((arrays["descriptors"].shape[0], 64), np.float32),
    ):
        np.savez(out / "embeddings.npz", **{**arrays, "descriptors": broken})
        again = run_photos(photos, out)
        # Not trusted: searched again, the same faces found.
        assert again["detected_photos"] == 2 and again["faces"] == first["faces"]


def test_an_output_that_is_a_file_is_refused(small_folder, tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(ValueError, match="is a file; the output is a folder"):
        run_photos(small_folder, tmp_path / "out")
