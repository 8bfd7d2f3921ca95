"""Labels of the defaults on every benchmark cell, as hashes: a refactoring
or a speed-up must not move one label.

The cells: every LFW regime of ``benchmarks/regimes.py`` on both splits and
both models, the CelebA subset in its three models, and synthetic faces
(``make_face_embeddings``: 20,000 faces of 2,000 people; 10,240 faces of 24
people of 12 to 2,947 faces each). Each is clustered by
``NDDeTPDiClustering()`` at its defaults; the LFW test ">= 20" cells and
the 20,000 synthetic faces are also clustered from a Dask array (row blocks
of a quarter of the rows), which must give the numpy path's labels.

``python benchmarks/label_hashes.py`` compares the labels with the hashes
stored in ``benchmarks/results/label_hashes.json`` and exits 1 if one
differs; ``--write`` stores them. The hash is SHA-256 of the labels as
little-endian int64; the labels are the same on a machine with another
BLAS only where its cosines round the same, so compare on one machine
(before and after a change).
"""

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings

sys.path.insert(0, str(Path(__file__).parent))
from regimes import CELEBA, DATA, MODELS, REGIMES, regime_rows  # noqa: E402

STORED = Path(__file__).parent / "results" / "label_hashes.json"


def cells():
    """``(name, X, dask)`` for every cell; ``dask``: also fit from Dask."""
    for model, file in MODELS.items():
        data = np.load(DATA / f"{file}.npz")
        for split in ("train", "test"):
            rows = data["split"] == split
            X, y = data["features"][rows], data["labels"][rows]
            for regime, (min_faces, cap) in REGIMES.items():
                kept = regime_rows(y, min_faces, cap)
                dask = split == "test" and regime == ">= 20"
                yield f"LFW {split} {model} {regime}", X[kept], dask
    for model, file in CELEBA.items():
        yield f"CelebA {model}", np.load(DATA / f"{file}.npz")["features"], False
    X, _ = make_face_embeddings(20_000, 2_000, dim=128, random_state=0)
    yield "synthetic 20,000 faces, 2,000 people", X, True
    X, _ = make_face_embeddings(
        10_240, 24, dim=128, size_sigma=1.0, spread=(0.8, 1.4), random_state=0
    )
    yield "synthetic 10,240 faces, 24 people", X, False


def label_hash(labels):
    return hashlib.sha256(np.asarray(labels, dtype="<i8").tobytes()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="store the hashes")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    found, stored = {}, {}
    if not args.write:
        stored = json.loads(STORED.read_text())
    differ = 0
    for name, X, with_dask in cells():
        t = time.perf_counter()
        labels = NDDeTPDiClustering().fit_predict(X)
        found[name] = {"hash": label_hash(labels), "n_clusters": int(labels.max()) + 1}
        seconds = time.perf_counter() - t
        line = f"{name:44s} {labels.max() + 1:6d} clusters  {seconds:6.1f} s"
        if with_dask:
            import dask.array as da

            chunks = (-(-X.shape[0] // 4), X.shape[1])
            X_dask = da.from_array(X, chunks=chunks)
            dask_labels = NDDeTPDiClustering().fit_predict(X_dask)
            same = np.array_equal(dask_labels, labels)
            differ += not same
            line += "  dask: " + ("same labels" if same else "LABELS DIFFER")
        if not args.write:
            if name not in stored:
                line += "  (no stored hash)"
            elif stored[name]["hash"] != found[name]["hash"]:
                differ += 1
                line += f"  DIFFERS (stored: {stored[name]['n_clusters']} clusters)"
            else:
                line += "  same"
        print(line, flush=True)
    if args.write:
        STORED.write_text(json.dumps(found, indent=1) + "\n")
        print(f"wrote {len(found)} hashes to {STORED}")
    print(f"{differ} cell(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
