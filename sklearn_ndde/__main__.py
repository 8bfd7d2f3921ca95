"""Command line: ``sklearn-ndde demo`` and ``sklearn-ndde cluster``."""

import argparse
import json
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


def _cluster(args):
    from . import NDDeTPDiClustering
    from .io import knn_to_graph, load_features, load_knn, load_labels, save_labels
    from .metrics import (
        bcubed_precision_recall_fscore,
        pairwise_precision_recall_fscore,
    )

    X = load_features(args.features, dim=args.dim)
    params = dict(k=args.k, tau=args.tau, n_jobs=args.n_jobs, verbose=args.verbose)
    start = time.perf_counter()
    if args.knn:
        indices, distances = load_knn(args.knn)
        if indices.shape[0] != X.shape[0]:
            raise ValueError(
                f"The kNN file has {indices.shape[0]} rows, the features {X.shape[0]}."
            )
        est = NDDeTPDiClustering(metric="precomputed", **params)
        labels = est.fit_predict(knn_to_graph(indices, distances))
    else:
        est = NDDeTPDiClustering(knn_method=args.knn_method, **params)
        labels = est.fit_predict(X)
    result = {
        "n_samples": int(X.shape[0]),
        "n_clusters": int(est.n_clusters_),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if args.output:
        save_labels(args.output, labels)
        result["output"] = args.output
    if args.labels:
        y = load_labels(args.labels)
        result["pairwise"] = dict(
            zip(
                ("precision", "recall", "f"),
                pairwise_precision_recall_fscore(y, labels),
            )
        )
        result["bcubed"] = dict(
            zip(("precision", "recall", "f"), bcubed_precision_recall_fscore(y, labels))
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['n_samples']} samples -> {result['n_clusters']} clusters in "
            f"{result['seconds']:.1f} s"
            + (f", labels in {args.output}" if args.output else "")
        )
        for name in ("pairwise", "bcubed"):
            if name in result:
                p, r, f = result[name].values()
                print(f"{name:9s} precision {p:.4f} recall {r:.4f} F {f:.4f}")
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

    cluster = sub.add_parser(
        "cluster", help="cluster an embeddings file and write the labels"
    )
    cluster.add_argument("features", help=".npy, .npz, .bin (raw float32) or .csv")
    cluster.add_argument("-o", "--output", help="labels file to write (.npy or .csv)")
    cluster.add_argument("--k", type=int, default=80, help="neighbours, self included")
    cluster.add_argument("--tau", type=float, default=0.7)
    cluster.add_argument("--dim", type=int, default=256, help="row length of a .bin")
    cluster.add_argument(
        "--knn", help="reuse a learn-to-cluster kNN file (faiss_k_80.npz)"
    )
    cluster.add_argument(
        "--knn-method", default="auto", choices=["auto", "exact", "pynndescent"]
    )
    cluster.add_argument(
        "--labels", help="ground truth (.meta, .npy, .csv): print metrics"
    )
    cluster.add_argument("--n-jobs", type=int, default=None)
    cluster.add_argument("--json", action="store_true", help="machine-readable output")
    cluster.add_argument("-v", "--verbose", action="count", default=0)
    cluster.set_defaults(func=_cluster)

    args = parser.parse_args(argv)
    if args.command == "demo" and args.n_samples < 20:
        parser.error("--n-samples must be at least 20")
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        message = " ".join(str(exc).split())
        print(f"sklearn-ndde: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
