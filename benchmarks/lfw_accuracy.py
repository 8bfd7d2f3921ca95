"""NDDe at default parameters against tuned baselines on the LFW test split.

For each embedding model, clusters the identity-disjoint test split
(6,775 faces, 2,874 identities) with ``NDDeTPDiClustering()`` (nothing tuned
on that data) and prints BCubed and pairwise F beside the best that DBSCAN,
HDBSCAN, AgglomerativeClustering (average linkage), Chinese whispers and
Infomap reach over a grid of their main parameter, scored on the same test
labels (an upper bound on what their users get). Also prints the
authors' clustering fed with raw cosine, and the fit time.

Needs ../shared/data and ``pip install infomap``.

    python benchmarks/lfw_accuracy.py [--split test] [--quick]
"""

import argparse
import time
from pathlib import Path

import numpy as np
from baselines import best_of_grid

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.metrics import bcubed_fscore, pairwise_fscore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class RawCosine:
    """The paper's pipeline fed with the cosine itself, clipped to [0, 1]."""

    def pair_similarity(self, X, indices, Y=None):
        Y = X if Y is None else Y
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        return np.clip(np.einsum("id,ikd->ik", Xn, Yn[indices]), 0.0, 1.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test", choices=["train", "test", "all"])
    parser.add_argument("--quick", action="store_true", help="skip the baselines")
    args = parser.parse_args()
    for name in ["lfw_dlib128", "lfw_mobileface256"]:
        data = np.load(DATA / f"{name}.npz")
        keep = slice(None) if args.split == "all" else data["split"] == args.split
        X, y = data["features"][keep], data["labels"][keep]
        print(f"\n{name}, {args.split} split: {len(y)} faces, {len(np.unique(y))} ids")
        print(f"  {'method':28s} {'BCubed F':>9s} {'pair F':>7s}  parameter")
        start = time.perf_counter()
        labels = NDDeTPDiClustering().fit_predict(X)
        seconds = time.perf_counter() - start
        print(
            f"  {'NDDe + TPDi, defaults':28s} {bcubed_fscore(y, labels):9.4f} "
            f"{pairwise_fscore(y, labels):7.4f}  k=80, tau=0.3, merge 0.18 "
            f"(fit {seconds:.1f} s)"
        )
        paper = dict(tau=0.7, link_saturated=False, merge_threshold=None)
        for label, params in [
            ("NDDe + TPDi, no flow merge", dict(tau=0.7, merge_threshold=None)),
            ("NDDe + TPDi, paper's links", paper),
            ("NDDe + TPDi, raw cosine", dict(similarity=RawCosine(), **paper)),
        ]:
            labels = NDDeTPDiClustering(**params).fit_predict(X)
            print(
                f"  {label:28s} {bcubed_fscore(y, labels):9.4f} "
                f"{pairwise_fscore(y, labels):7.4f}  k=80, tau={params['tau']}"
            )
        if args.quick:
            continue
        indices, sims = knn_graph(X, 80, method="exact")
        for method, (fb, fp, param) in best_of_grid(X, indices, sims, y).items():
            print(f"  {method + ', best of grid':28s} {fb:9.4f} {fp:7.4f}  {param}")


if __name__ == "__main__":
    main()
