"""What a run keeps between runs: the embedding cache, the people and their names."""

import csv
import json
import zipfile

import numpy as np

from ..io import _atomic_path
from .clustering import cluster_faces


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
