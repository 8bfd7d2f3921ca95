"""The ``photos`` run: photos in, people's folders, CSV files and a page out."""

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..io import _atomic_path
from .embedding import FaceEmbedder
from .files import (
    _CACHE,
    _FACES,
    _MARKER,
    _PEOPLE,
    _STATE,
    _link_or_copy,
    _one_run_at_a_time,
    _scratch,
    _sha256,
    _swap_in,
    find_photos,
    load_photo,
)
from .page import _crop, _crop_name, _densest, _write_index
from .state import _Cache, _face_key, _read_people, _update_people, _write_csv


def run_photos(
    photos_dir,
    out_dir,
    *,
    embedder=None,
    min_faces=2,
    progress=False,
):
    """Find the people in a photo folder; write them to ``out_dir``.

    Outputs, all in ``out_dir`` (created if missing):

    - ``faces.csv``: one row per face: ``file`` (relative to
      ``photos_dir``), ``left``, ``top``, ``right``, ``bottom``, ``person``
      (empty when unassigned), ``name`` and ``distance`` (cosine distance
      to the person's densest face, the one with the highest mean cosine to
      the person's other faces);
    - ``people.csv``: ``person``, ``name``, ``faces``; edit the names, the
      next run keeps them;
    - ``people/<person>/`` and ``people/unassigned/``: a crop of each face;
    - ``index.html``: one row per person with a thumbnail of each face,
      unassigned faces last;
    - ``embeddings.npz`` and ``state.json``: the cache of detected faces
      (by file content) and the person of each face, for the next run.

    Running again on the same ``out_dir`` detects faces only in photos whose
    content is new and keeps the person of every face already assigned.
    All faces are clustered again; a new (or still unassigned) face joins
    the person that holds its cluster, and clusters that no person holds
    make new people with new ids. Existing people are never renumbered or
    renamed.

    Parameters
    ----------
    photos_dir : str or path-like
        Folder of photos, searched recursively.
    out_dir : str or path-like
        Output folder; may be inside ``photos_dir`` (it is not scanned).
    embedder : FaceEmbedder or None, default=None
        Detector settings; None means ``FaceEmbedder()``.
    min_faces : int, default=2
        Smallest cluster that becomes a person; faces of smaller clusters
        stay unassigned until later photos join them.
    progress : bool, default=False
        Show a progress bar of the detection on stderr.

    Returns
    -------
    summary : dict
        Counts (photos, faces, people, unassigned, new faces detected),
        the skipped files with their reasons, and the seconds taken.
    """

    start = time.perf_counter()
    photos_dir, out_dir = Path(photos_dir), Path(out_dir)
    if min_faces < 1:
        raise ValueError(f"min_faces must be at least 1, got {min_faces}.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{str(out_dir)!r} is a file; the output is a folder.")
    embedder = FaceEmbedder() if embedder is None else embedder
    # The outputs are never read as photos, even when the output folder is
    # the photo folder itself: its crops live under people/.
    photos, skipped = find_photos(photos_dir, exclude=[out_dir, out_dir / "people"])
    people_dir = out_dir / "people"
    if people_dir.exists() and not (people_dir / _MARKER).exists():
        raise ValueError(
            f"{people_dir} exists and was not made by sklearn-ndde; move it away."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with _one_run_at_a_time(out_dir), _scratch(out_dir) as scratch:
        summary = _run(
            photos_dir, out_dir, photos, skipped, embedder, min_faces, progress, scratch
        )
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


#: Seconds between two saves of the cache during the detection, so that an
#: interrupted run keeps most of what it found.
_CACHE_EVERY = 30.0


def _run(photos_dir, out_dir, photos, skipped, embedder, min_faces, progress, scratch):
    """The body of :func:`run_photos`, under its lock; ``scratch`` holds the
    run's temporary folders (removed whatever happens)."""
    from .._progress import progress as progress_bar

    people_dir = out_dir / "people"
    cache = _Cache(out_dir / _CACHE, embedder.settings())
    state_path = out_dir / _STATE
    state = {"next_person": 1, "faces": {}}
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            state["faces"] = {str(a): int(b) for a, b in state["faces"].items()}
            state["next_person"] = int(state["next_person"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(
                f"{state_path} is damaged; remove it (and {_PEOPLE}) to start the "
                "people again."
            ) from None
    names = _read_people(out_dir / _PEOPLE)

    # Faces of every photo, from the cache or detected now. The cache is
    # saved as the detection goes and whatever stops it, so that a rerun
    # does not detect again what was found.
    faces = []  # (file, sha, box, descriptor, photo index)
    read = []  # photos read successfully
    staging = scratch / "crops"
    staging.mkdir()
    detected = unsaved = 0
    last_save = time.perf_counter()
    bar = progress_bar("detecting faces", len(photos), progress, unit="photo")
    try:
        with bar:
            for rel in photos:
                path = photos_dir / rel
                try:
                    sha = _sha256(path)
                except OSError as exc:
                    skipped.append((rel, f"cannot be read: {exc.strerror or exc}"))
                    bar.update(1)
                    continue
                if sha not in cache.entries:
                    try:
                        image = load_photo(path)
                    except ValueError as exc:
                        skipped.append((rel, str(exc)))
                        bar.update(1)
                        continue
                    found = embedder.embed(image)
                    # Crops now, while the picture is decoded (it is not kept).
                    for box in found[0]:
                        crop = _crop(image, box)
                        crop.save(staging / _crop_name(rel, sha, box), quality=90)
                    del image
                    cache.entries[sha] = found
                    detected += 1
                    unsaved += 1
                    if time.perf_counter() - last_save > _CACHE_EVERY:
                        cache.save()
                        unsaved, last_save = 0, time.perf_counter()
                boxes, descriptors = cache.entries[sha]
                for box, descriptor in zip(boxes, descriptors):
                    faces.append((rel, sha, box, descriptor, len(read)))
                read.append(rel)
                bar.update(1)
    finally:
        if unsaved:
            cache.save()
    skipped.sort()

    n = len(faces)
    X = (
        np.array([f[3] for f in faces], dtype=np.float32)
        if n
        else np.empty((0, 128), np.float32)
    )
    photo = np.array([f[4] for f in faces], dtype=np.int64)
    keys = [_face_key(f[1], f[2]) for f in faces]
    persons = np.array([state["faces"].get(key, -1) for key in keys], dtype=np.int64)
    # A key seen before but unassigned is -1 too: it joins the leftovers.
    # The same faces as the last run (and the same rule): the same people.
    signature = hashlib.sha256(
        "\n".join([str(min_faces), *sorted(keys)]).encode()
    ).hexdigest()
    if state.get("signature") != signature:
        persons = _update_people(X, photo, persons, min_faces, state)
    state["signature"] = signature

    # Outputs.
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    distance = np.full(n, np.nan)
    for p in np.unique(persons[persons >= 0]):
        members = np.flatnonzero(persons == p)
        cosine = Xn[members] @ Xn[_densest(Xn, members)]
        distance[members] = np.maximum(1.0 - cosine, 0.0)
    for p in np.unique(persons[persons >= 0]):
        names.setdefault(int(p), "")
    # The people's folders are built aside, from the new crops, the last
    # run's crops (linked, not moved) or the photo decoded again, then put
    # in place of the old ones at once.
    building = scratch / "people"
    building.mkdir()
    (building / _MARKER).touch()
    previous = {p.name: p for p in people_dir.glob("*/*.jpg")}
    thumbs = {}
    decoded = (None, None)  # the last photo decoded again, if any
    for i, (rel, sha, box, _, _) in enumerate(faces):
        folder = str(persons[i]) if persons[i] >= 0 else "unassigned"
        (building / folder).mkdir(exist_ok=True)
        name = _crop_name(rel, sha, box)
        target = building / folder / name
        if (staging / name).exists():
            (staging / name).replace(target)
        elif name in previous and not target.exists():
            _link_or_copy(previous[name], target)
        elif not target.exists():
            if decoded[0] != rel:
                decoded = (rel, load_photo(photos_dir / rel))
            _crop(decoded[1], box).save(target, quality=90)
        thumbs[i] = f"people/{folder}/{name}"
    _swap_in(building, people_dir, scratch / "old-people")
    _write_csv(
        out_dir / _FACES,
        ["file", "left", "top", "right", "bottom", "person", "name", "distance"],
        [
            [
                Path(rel).as_posix(),
                *(int(v) for v in box),
                int(persons[i]) if persons[i] >= 0 else "",
                names.get(int(persons[i]), "") if persons[i] >= 0 else "",
                f"{distance[i]:.4f}" if persons[i] >= 0 else "",
            ]
            for i, (rel, _, box, _, _) in enumerate(faces)
        ],
    )
    counts = {int(p): int(c) for p, c in zip(*np.unique(persons, return_counts=True))}
    _write_csv(
        out_dir / _PEOPLE,
        ["person", "name", "faces"],
        [[p, names[p], counts.get(p, 0)] for p in sorted(names)],
    )
    # Faces of photos gone from the folder keep their person for later.
    state["faces"].update(zip(keys, persons.tolist()))
    with _atomic_path(state_path) as tmp:
        tmp.write_text(json.dumps(state), encoding="utf-8")
    people = []
    for p in sorted(counts):
        if p < 0:
            continue
        members = np.flatnonzero(persons == p)
        members = members[np.argsort(distance[members], kind="stable")]
        people.append(
            (p, names.get(p, ""), [(thumbs[i], str(faces[i][0])) for i in members])
        )
    people.sort(key=lambda item: (-len(item[2]), item[0]))
    unassigned = [(thumbs[i], str(faces[i][0])) for i in np.flatnonzero(persons < 0)]
    _write_index(out_dir, people, unassigned, len(read), skipped)
    return {
        "photos": len(read),
        "faces": n,
        "people": len(people),
        "unassigned": len(unassigned),
        "detected_photos": detected,
        "skipped": [{"file": str(rel), "reason": reason} for rel, reason in skipped],
        "out_dir": str(out_dir),
    }
