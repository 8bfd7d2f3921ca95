"""Command line: ``python -m sklearn_ndde demo``."""

import argparse
import sys
import time

import numpy as np


def _demo(args):
    from sklearn.cluster import DBSCAN, HDBSCAN

    from . import NDDeTPDiClustering
    from .datasets import make_face_embeddings
    from .metrics import bcubed_precision_recall_fscore, pairwise_fscore

    X, y = make_face_embeddings(
        args.n_samples, args.n_samples // 10, dim=128, random_state=args.random_state
    )
    print(
        f"Synthetic face embeddings: {X.shape[0]} samples, {len(np.unique(y))} "
        f"identities, dim {X.shape[1]} (sklearn_ndde.datasets.make_face_embeddings)"
    )
    methods = [
        ("NDDe + TPDi (defaults)", NDDeTPDiClustering()),
        ("DBSCAN (eps=0.5, cosine)", DBSCAN(eps=0.5, min_samples=2, metric="cosine")),
        ("HDBSCAN (min_cluster_size=2)", HDBSCAN(min_cluster_size=2, copy=True)),
    ]
    print(
        f"{'method':32s} {'BCubed P':>9s} {'BCubed R':>9s} {'BCubed F':>9s} "
        f"{'pair F':>7s} {'time':>7s}"
    )
    for name, est in methods:
        start = time.perf_counter()
        labels = est.fit_predict(X)
        seconds = time.perf_counter() - start
        p, r, f = bcubed_precision_recall_fscore(y, labels)
        print(
            f"{name:32s} {p:9.4f} {r:9.4f} {f:9.4f} {pairwise_fscore(y, labels):7.4f} "
            f"{seconds:6.2f}s"
        )
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="sklearn-ndde",
        description="NDDe + TPDi density-peak clustering of embeddings.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="cluster a built-in synthetic data set and compare with DBSCAN"
    )
    demo.add_argument("--n-samples", type=int, default=5000)
    demo.add_argument("--random-state", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if args.command == "demo" and args.n_samples < 20:
        parser.error("--n-samples must be at least 20")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
