"""The defaults on small collections: a few hundred faces, mostly strangers.

For each shared embedding file and each size (200, 500 and 1,000 faces),
``NDDeTPDiClustering()`` clusters two random subsets of rows (seeds 0 and 2:
nearly every face a different person) and one subset of 10 faces per
person (seed 1), and the script prints BCubed F and the number of clusters
for each, marks with ``!`` the fits that warned of one cluster whose pairs
are no more alike than random pairs, and counts the warnings among the
collections under F 0.3 and the others. Needs ../shared/data.

    python benchmarks/small_collections.py
"""

import warnings
from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.metrics import bcubed_fscore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = [
    "lfw_dlib128",
    "lfw_mobileface256",
    "celeba_faceres1024",
    "celeba_mobileface256",
    "celeba_dlib128",
]


def subset(y, n, seed):
    """Rows of a random subset (seeds 0, 2) or of 10 faces per person (1)."""
    rng = np.random.default_rng(seed)
    if seed != 1:
        return rng.choice(len(y), n, replace=False)
    ids, counts = np.unique(y, return_counts=True)
    people = rng.choice(ids[counts >= 10], n // 10, replace=False)
    return np.concatenate([np.flatnonzero(y == p)[:10] for p in people])


def fit_warned(X):
    """Labels of the defaults, and whether ``fit`` warned of one cluster
    whose pairs are no more alike than random pairs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = NDDeTPDiClustering().fit_predict(X)
    return labels, any("One cluster holds" in str(w.message) for w in caught)


def main():
    print(
        "F / clusters; r: random rows (mostly strangers), s: 10 faces per "
        "person; !: fit warned of one cluster like random pairs"
    )
    collapsed, others = [], []
    for name in FILES:
        data = np.load(DATA / f"{name}.npz")
        X, y = data["features"], data["labels"]
        cells = []
        for n in (200, 500, 1000):
            for seed in (0, 1, 2):
                rows = subset(y, n, seed)
                labels, warned = fit_warned(X[rows])
                kind = "s" if seed == 1 else "r"
                f = bcubed_fscore(y[rows], labels)
                (collapsed if f < 0.3 else others).append(warned)
                mark = "!" if warned else ""
                cells.append(f"{n}{kind} {f:.2f}/{labels.max() + 1}{mark}")
        print(f"{name:22s} " + "  ".join(cells), flush=True)
    print(
        f"warned on {sum(collapsed)} of the {len(collapsed)} collections under "
        f"F 0.3, and on {sum(others)} of the {len(others)} others"
    )


if __name__ == "__main__":
    main()
