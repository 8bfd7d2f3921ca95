"""The defaults on people whose faces vary a lot, with and without the
closed groups (method step 7f).

Collections of ``make_face_embeddings`` with spreads of 0.8-1.6 (sparse
people, up to hundreds of faces each: 12 people in 3,000 faces, 24 in
5,000, in 64 and 256 dimensions, seeds 0-3) and the demo's photo library
(1,000 faces, seeds 0-9). For each, BCubed F and the number of clusters of
``NDDeTPDiClustering()``, and the same with the closed groups left out
(the step replaced by one that links nothing), so that the step's effect
reads off each row. Needs nothing but the package.

    python benchmarks/sparse_people.py
"""

import warnings

import numpy as np

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde._cli.demo import _photo_library
from sklearn_ndde._numpy_stages import NumpyStages
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore


def collections():
    for seed in range(4):
        for dim in (64, 256):
            for people, n in ((12, 3000), (24, 5000)):
                X, y = make_face_embeddings(
                    n,
                    people,
                    dim=dim,
                    size_sigma=1.0,
                    spread=(0.8, 1.6),
                    random_state=seed,
                )
                yield f"{people} people, {n} faces, dim {dim}, seed {seed}", X, y
    for seed in range(10):
        X, y = _photo_library(1000, seed)
        yield f"photo library, 1,000 faces, seed {seed}", X, y


def main():
    warnings.simplefilter("ignore")
    closed_groups = NumpyStages.closed_groups
    print(f"{'collection':44s} {'defaults':>16s} {'without 7f':>16s}")
    with_, without = [], []
    for name, X, y in collections():
        out = []
        for step in (closed_groups, lambda self, parents, labels, rank: parents):
            NumpyStages.closed_groups = step
            labels = NDDeTPDiClustering().fit_predict(X)
            out.append((bcubed_fscore(y, labels), labels.max() + 1))
        NumpyStages.closed_groups = closed_groups
        with_.append(out[0][0])
        without.append(out[1][0])
        print(
            f"{name:44s} {out[0][0]:7.4f} ({out[0][1]:5d}) {out[1][0]:7.4f} "
            f"({out[1][1]:5d})",
            flush=True,
        )
    with_, without = np.array(with_), np.array(without)
    print(
        f"mean BCubed F {with_.mean():.4f} with the closed groups, "
        f"{without.mean():.4f} without; better on {(with_ > without).sum()}, "
        f"worse on {(with_ < without).sum()} of {with_.size}"
    )


if __name__ == "__main__":
    main()
