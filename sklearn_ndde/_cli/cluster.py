"""The ``cluster`` command: an embeddings file in, a labels file out."""

import time

from .common import _check_range, _scores, _to_json


def add_parser(sub):
    """Add the command to the subparsers ``sub``."""
    cluster = sub.add_parser(
        "cluster", help="cluster an embeddings file and write the labels"
    )
    cluster.add_argument("features", help=".npy, .npz, .bin (raw float32) or .csv")
    cluster.add_argument("-o", "--output", help="labels file to write (.npy or .csv)")
    cluster.add_argument(
        "--k",
        type=int,
        default=80,
        help="neighbours, self included (default %(default)s)",
    )
    cluster.add_argument(
        "--tau",
        type=float,
        default=0.3,
        help="largest TPDi of a link (default %(default)s, the estimator's)",
    )
    cluster.add_argument(
        "--merge-threshold",
        type=float,
        default=0.18,
        help="smallest two-way flow score of a cluster merge; 0 turns the merge "
        "off (default %(default)s, the estimator's)",
    )
    cluster.add_argument(
        "--no-recalibrate",
        action="store_true",
        help="merge once, with the first calibration: no second merge with the "
        "calibration refitted to the first clustering",
    )
    cluster.add_argument(
        "--dim",
        type=int,
        default=256,
        help="row length of a .bin file (default %(default)s)",
    )
    cluster.add_argument(
        "--knn", help="reuse a learn-to-cluster kNN file (faiss_k_80.npz)"
    )
    cluster.add_argument(
        "--model",
        help="the learned pair similarity written by train (.pt; needs torch); "
        "it suits the paper's links: --tau 0.7 --merge-threshold 0",
    )
    cluster.add_argument(
        "--knn-method",
        default="auto",
        choices=["auto", "exact", "ivf", "pynndescent"],
        help="neighbour search: auto is exact up to 30,000 samples, ivf above "
        "(pynndescent without faiss) (default %(default)s)",
    )
    cluster.add_argument(
        "--knn-recall",
        type=float,
        default=0.98,
        help="recall target of the ivf search: the share of the likely "
        "neighbours it finds, measured at run time on 1,000 rows (default "
        "%(default)s)",
    )
    cluster.add_argument(
        "--labels", help="ground truth (.meta, .npy, .csv): print metrics"
    )
    cluster.add_argument(
        "--n-jobs", type=int, default=None, help="threads (default: all cores)"
    )
    cluster.add_argument(
        "--device",
        default="auto",
        help="exact kNN on a torch device: auto (CUDA above 30,000 samples if "
        "present), cpu, cuda (default %(default)s)",
    )
    cluster.add_argument("--json", action="store_true", help="machine-readable output")
    cluster.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="stage times and the kNN recall on stderr",
    )
    cluster.set_defaults(func=run)


def _check_cluster_options(args):
    _check_range("--k", args.k, 2)
    _check_range("--tau", args.tau, 0, 1, low_open=True)
    _check_range("--merge-threshold", args.merge_threshold, 0)
    _check_range("--knn-recall", args.knn_recall, 0, 1, low_open=True)
    if args.n_jobs == 0:
        raise ValueError("--n-jobs must be a positive count or -1 (all), not 0.")


def run(args):
    from ..io import (
        check_output_path,
        knn_to_graph,
        load_features,
        load_knn,
        load_labels,
        save_labels,
    )

    _check_cluster_options(args)
    if args.model and args.knn:
        raise ValueError(
            "--model scores pairs from the features' neighbourhoods; it cannot be "
            "used with --knn."
        )
    if args.output:
        check_output_path(
            args.output,
            (".npy", ".csv"),
            [args.features, args.knn, args.labels, args.model],
        )
    X = load_features(args.features, dim=args.dim)
    # The ground truth is read and checked before the work, not after it.
    y = load_labels(args.labels) if args.labels else None
    if y is not None and y.shape != (X.shape[0],):
        raise ValueError(
            f"{args.labels} holds {y.size} labels for {X.shape[0]} samples."
        )
    if args.knn:
        indices, distances = load_knn(args.knn)
        if indices.shape[0] != X.shape[0]:
            raise ValueError(
                f"The kNN file has {indices.shape[0]} rows, the features {X.shape[0]}."
            )
    similarity = None
    if args.model:
        from ..similarity import TransformerSimilarity

        similarity = TransformerSimilarity.load(args.model, device=args.device)
    # scikit-learn, scipy and numba load only now, once the input is known
    # to be good: a bad path or option is reported at once.
    from .. import NDDeTPDiClustering

    params = dict(
        k=args.k,
        tau=args.tau,
        similarity=similarity,
        merge_threshold=args.merge_threshold or None,
        recalibrate=not args.no_recalibrate,
        n_jobs=args.n_jobs,
        verbose=args.verbose,
    )
    start = time.perf_counter()
    if args.knn:
        est = NDDeTPDiClustering(metric="precomputed", **params)
        labels = est.fit_predict(knn_to_graph(indices, distances))
    else:
        est = NDDeTPDiClustering(
            knn_method=args.knn_method,
            knn_recall=args.knn_recall,
            device=args.device,
            **params,
        )
        labels = est.fit_predict(X)
    result = {
        "n_samples": int(X.shape[0]),
        "n_clusters": int(est.n_clusters_),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if est.knn_recall_ is not None:
        result["knn_recall"] = round(float(est.knn_recall_), 4)
    if args.output:
        save_labels(args.output, labels)
        result["output"] = args.output
    if y is not None:
        result.update(_scores(y, labels))
    if args.json:
        print(_to_json(result))
    else:
        print(
            f"{result['n_samples']} samples -> {result['n_clusters']} clusters in "
            f"{result['seconds']:.1f} s"
            + (
                f", labels in {args.output}"
                if args.output
                else " (labels not written: pass -o labels.npy to keep them)"
            )
        )
        for name in ("pairwise", "bcubed"):
            if name in result:
                p, r, f = result[name].values()
                print(f"{name:9s} precision {p:.4f} recall {r:.4f} F {f:.4f}")
    return 0
