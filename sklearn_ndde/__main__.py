"""Command line: ``sklearn-ndde {demo,cluster,evaluate,train,photos}``.

Results go to stdout (``--json`` for machine-readable output), progress bars
and errors to stderr; bad input ends with a one-line error and exit status 2.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _version():
    from . import __version__

    return __version__


def _to_json(result):
    """``result`` as strict JSON: a NaN or infinite score becomes null (bare
    ``NaN`` is not JSON and breaks strict parsers)."""

    def finite(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(result), allow_nan=False)


def _save_figure(reports, path):
    """Draw the hard-cluster reports into ``path``; return the path."""
    from .plotting import plot_hard_cluster_report

    plot_hard_cluster_report(reports).savefig(path, dpi=120)
    return path


#: Identity spread of the demo's synthetic faces (hard, sparse identities).
DEMO_SPREAD = (0.8, 1.6)


def _photo_library(n_samples, random_state):
    """A photo library: six people with hundreds of faces each (at the
    default size) and a tenth of the faces strangers seen once or twice."""
    import numpy as np

    from .datasets import make_face_embeddings

    strangers = max(2, n_samples // 10)
    X1, y1 = make_face_embeddings(
        n_samples - strangers,
        6,
        dim=128,
        size_sigma=0.5,
        spread=DEMO_SPREAD,
        random_state=random_state,
    )
    X2, y2 = make_face_embeddings(
        strangers,
        max(1, (2 * strangers) // 3),
        dim=128,
        spread=DEMO_SPREAD,
        random_state=random_state + 1,
    )
    order = np.random.default_rng(random_state).permutation(n_samples)
    X = np.vstack([X1, X2])[order]
    y = np.concatenate([y1, y2 + y1.max() + 1])[order]
    return X, y


def _demo(args):
    from sklearn.cluster import DBSCAN, HDBSCAN

    from .io import check_output_path

    if args.figure and not args.no_figure:
        # Checked before the demo runs, not after it.
        check_output_path(args.figure, (".png", ".pdf", ".svg"), [])

    from . import NDDeTPDiClustering
    from .datasets import make_face_embeddings
    from .metrics import (
        bcubed_precision_recall_fscore,
        hard_cluster_report,
        pairwise_fscore,
    )

    # Hard identities, the method's subject: long-tailed sizes and a wide
    # spread, so that many identities are sparse (same-person cosines down
    # to about 0.3); then a photo library, a few people with hundreds of
    # faces each.
    X, y = make_face_embeddings(
        args.n_samples,
        args.n_samples // 10,
        dim=128,
        spread=DEMO_SPREAD,
        random_state=args.random_state,
    )
    cases = [
        (
            f"Synthetic face embeddings: {X.shape[0]} samples, {len(np.unique(y))} "
            f"identities of long-tailed sizes, dim {X.shape[1]}, spread "
            f"{DEMO_SPREAD} (sklearn_ndde.datasets.make_face_embeddings)",
            X,
            y,
        )
    ]
    Xp, yp = _photo_library(max(200, args.n_samples // 2), args.random_state)
    sizes = np.bincount(yp)[:6]
    cases.append(
        (
            f"A photo library: {Xp.shape[0]} faces, 6 people with {sizes.min()} to "
            f"{sizes.max()} faces each and {len(np.unique(yp)) - 6} strangers seen "
            "once or twice",
            Xp,
            yp,
        )
    )
    # The numba kernels compile on their first use after an install (and load
    # from numba's cache afterwards): done here, so that the table times
    # the clustering alone.
    start = time.perf_counter()
    NDDeTPDiClustering(k=10).fit(X[:200])
    warm_up = time.perf_counter() - start
    results, reports = [], {}
    for title, X, y in cases:
        # Each baseline at the best of a small grid, chosen on the labels: an
        # upper bound for its users, against NDDe's untuned defaults.
        methods = [
            (
                "NDDe + TPDi (defaults)",
                [("", NDDeTPDiClustering(k=min(80, len(X)), verbose=args.verbose))],
            ),
            (
                "DBSCAN (cosine, best eps)",
                [
                    (f"eps={eps}", DBSCAN(eps=eps, min_samples=2, metric="cosine"))
                    for eps in (0.3, 0.4, 0.5, 0.6, 0.7)
                ],
            ),
            (
                "HDBSCAN (best min_cluster_size)",
                [
                    (f"min_cluster_size={m}", HDBSCAN(min_cluster_size=m, copy=True))
                    for m in (2, 3, 5)
                ],
            ),
        ]
        rows = []
        for name, grid in methods:
            best = None
            for param, est in grid:
                start = time.perf_counter()
                labels = est.fit_predict(X)
                seconds = time.perf_counter() - start
                p, r, f = bcubed_precision_recall_fscore(y, labels)
                if best is None or f > best[0]["bcubed_f"]:
                    row = {
                        "method": name,
                        "parameter": param,
                        "bcubed_precision": p,
                        "bcubed_recall": r,
                        "bcubed_f": f,
                        "pairwise_f": pairwise_fscore(y, labels),
                        "n_clusters": int(len(np.unique(labels))),
                        "seconds": round(seconds, 3),
                    }
                    best = (row, labels)
            rows.append(best[0])
            if not results:  # the figure draws the first case
                reports[name.split(" (")[0]] = hard_cluster_report(
                    y, best[1], X, n_bins=min(5, np.unique(y).size)
                )
        results.append(
            {
                "case": title,
                "n_samples": int(X.shape[0]),
                "n_identities": int(len(np.unique(y))),
                "methods": rows,
            }
        )
    result = {
        "n_samples": results[0]["n_samples"],
        "methods": results[0]["methods"],
        "cases": results,
        "warm_up_seconds": round(warm_up, 3),
    }
    figure_note = None
    if args.figure and not args.no_figure:
        try:
            result["figure"] = _save_figure(reports, args.figure)
        except ImportError as exc:
            figure_note = f"No figure: {exc}"
    if args.json:
        print(_to_json(result))
        return 0
    print("Baselines at their best parameter, chosen on the labels; NDDe untuned.")
    if warm_up > 1.0:
        print(
            f"(The kernels compiled first, in {warm_up:.1f} s: once after an "
            "install; later runs load them from numba's cache.)"
        )
    for case in results:
        print(f"\n{case['case']}")
        print(
            f"{'method':32s} {'BCubed P':>9s} {'BCubed R':>9s} {'BCubed F':>9s} "
            f"{'pair F':>7s} {'clusters':>8s} {'time':>7s}  parameter"
        )
        for row in case["methods"]:
            print(
                f"{row['method']:32s} {row['bcubed_precision']:9.4f} "
                f"{row['bcubed_recall']:9.4f} {row['bcubed_f']:9.4f} "
                f"{row['pairwise_f']:7.4f} {row['n_clusters']:8d} "
                f"{row['seconds']:6.2f}s  {row['parameter']}"
            )
    if "figure" in result:
        print(f"\nHard-cluster figure (first case) written to {result['figure']}")
    elif figure_note:
        print(figure_note)
    return 0


def _check_range(name, value, low, high=None, low_open=False):
    """A one-line error unless ``low <= value <= high`` (``low < value``
    with ``low_open``); checked before the heavy imports, so that a bad
    option is reported at once."""
    if value is None:
        return
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        bound = f"above {low}" if low_open else f"at least {low}"
        span = bound if high is None else f"{bound} and at most {high}"
        raise ValueError(f"{name} must be {span}, got {value}.")


def _check_cluster_options(args):
    _check_range("--k", args.k, 2)
    _check_range("--tau", args.tau, 0, 1, low_open=True)
    _check_range("--merge-threshold", args.merge_threshold, 0)
    _check_range("--knn-recall", args.knn_recall, 0, 1, low_open=True)
    if args.n_jobs == 0:
        raise ValueError("--n-jobs must be a positive count or -1 (all), not 0.")


def _cluster(args):
    from .io import (
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
        from .similarity import TransformerSimilarity

        similarity = TransformerSimilarity.load(args.model, device=args.device)
    # scikit-learn, scipy and numba load only now, once the input is known
    # to be good: a bad path or option is reported at once.
    from . import NDDeTPDiClustering

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


def _scores(y, labels):
    from .metrics import (
        bcubed_precision_recall_fscore,
        pairwise_precision_recall_fscore,
    )

    keys = ("precision", "recall", "f")
    return {
        "pairwise": dict(zip(keys, pairwise_precision_recall_fscore(y, labels))),
        "bcubed": dict(zip(keys, bcubed_precision_recall_fscore(y, labels))),
    }


def _evaluate(args):
    from .io import check_output_path, load_features, load_labels
    from .metrics import bin_range, hard_cluster_report

    if args.figure:
        check_output_path(
            args.figure,
            (".png", ".pdf", ".svg"),
            [args.predicted, args.labels, args.features],
        )
    labels = load_labels(args.predicted)
    y = load_labels(args.labels)
    if labels.shape != y.shape:
        raise ValueError(
            f"{args.predicted} holds {labels.size} labels, {args.labels} {y.size}."
        )
    X = load_features(args.features, dim=args.dim) if args.features else None
    n_bins = min(args.bins, np.unique(y).size)
    result = {"n_samples": int(y.size), **_scores(y, labels)}
    result["hard_clusters"] = hard_cluster_report(y, labels, X, n_bins=n_bins)
    if args.figure:
        reports = {args.name or Path(args.predicted).name: result["hard_clusters"]}
        result["figure"] = _save_figure(reports, args.figure)
    if args.json:
        print(_to_json(result))
        return 0
    for name in ("pairwise", "bcubed"):
        p, r, f = result[name].values()
        print(f"{name:9s} precision {p:.4f} recall {r:.4f} F {f:.4f}")
    titles = {
        "size": "Identities by size (faces per identity)",
        "sparsity": "Identities by sparsity: 1 - mean cosine between the faces of "
        "one identity (0 identical, 1 unrelated; identities of 2 or more faces)",
    }
    for by, title in titles.items():
        rows = [row for row in result["hard_clusters"] if row["by"] == by]
        if not rows:
            continue
        print(f"\n{title}")
        if len(rows) < n_bins:
            print(
                f"{len(rows)} bins, not {n_bins}: identities of equal {by} share "
                "a bin, so that no two bins overlap."
            )
        print(
            f"{'range':>11s} {'ids':>6s} {'faces':>7s} {'BCubed P':>9s} "
            f"{'BCubed R':>9s} {'BCubed F':>9s}"
        )
        for row in rows:
            print(
                f"{bin_range(row):>11s} {row['n_identities']:6d} "
                f"{row['n_samples']:7d} {row['bcubed_precision']:9.4f} "
                f"{row['bcubed_recall']:9.4f} {row['bcubed_f']:9.4f}"
            )
    if args.figure:
        print(f"Hard-cluster figure written to {args.figure}")
    return 0


def _train(args):
    from .io import check_output_path, load_features, load_labels
    from .similarity import TransformerSimilarity

    check_output_path(args.output, (".pt",), [args.features, args.labels])
    X = load_features(args.features, dim=args.dim)
    y = load_labels(args.labels)
    model = TransformerSimilarity(
        n_neighbors=args.k,
        d_model=args.d_model,
        dim_feedforward=args.dim_feedforward,
        max_epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        validation_fraction=args.validation_fraction,
        device=args.device,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    start = time.perf_counter()
    model.fit(X, y)
    model.save(args.output)
    result = {
        "n_samples": int(X.shape[0]),
        "epochs": len(model.history_),
        "train_loss": model.history_[-1]["train_loss"],
        "valid_loss": model.history_[-1]["valid_loss"],
        "seconds": round(time.perf_counter() - start, 3),
        "output": args.output,
    }
    if args.json:
        print(_to_json(result))
    else:
        print(
            f"Trained on {result['n_samples']} faces for {result['epochs']} epochs "
            f"in {result['seconds']:.1f} s (train loss {result['train_loss']:.4f}); "
            f"model in {args.output}"
        )
    return 0


def _photos(args):
    from .faces import NOT_A_PICTURE, FaceEmbedder, run_photos

    if args.output is None:
        raise ValueError("photos needs an output folder: -o OUT_DIR.")
    if args.min_faces < 1:
        raise ValueError(f"--min-faces must be at least 1, got {args.min_faces}.")
    embedder = FaceEmbedder(
        upsample=args.upsample,
        min_face_size=args.min_face_size,
        max_side=args.max_side or None,
    )
    show = args.verbose > 0 or (not args.json and sys.stderr.isatty())
    result = run_photos(
        args.photos_dir,
        args.output,
        embedder=embedder,
        min_faces=args.min_faces,
        progress=show,
    )
    if args.json:
        print(_to_json(result))
        return 0
    others = [s["file"] for s in result["skipped"] if s["reason"] == NOT_A_PICTURE]
    for item in result["skipped"]:
        if item["reason"] != NOT_A_PICTURE:
            print(f"not read: {item['file']}: {item['reason']}")
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        print(f"left out {len(others)} files that are not JPEG or PNG: {shown}")
    cached = result["photos"] - result["detected_photos"]
    print(
        f"{result['faces']} faces in {result['photos']} photos"
        + (
            f" ({result['detected_photos']} searched now, {cached} from the cache)"
            if cached
            else ""
        )
        + f": {result['people']} people, {result['unassigned']} faces unassigned, "
        f"in {result['seconds']:.1f} s. Open {Path(args.output) / 'index.html'}; "
        f"name the people in {Path(args.output) / 'people.csv'}."
    )
    return 0


def _batch_size(text):
    """``--batch-size``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or 'auto', not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser():
    """The command line's parser (every command and option)."""
    parser = argparse.ArgumentParser(
        prog="sklearn-ndde",
        description="NDDe + TPDi density-peak clustering of embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="cluster built-in synthetic faces with hard identities and compare "
        "with DBSCAN and HDBSCAN at their best parameters",
        description="Cluster synthetic face embeddings with long-tailed identity "
        "sizes and sparse identities (make_face_embeddings, spread 0.8-1.6) "
        "with NDDe at its defaults, and compare with DBSCAN and HDBSCAN, each "
        "at the best of a small parameter grid chosen on the labels.",
    )
    demo.add_argument(
        "--n-samples",
        type=int,
        default=5000,
        help="synthetic faces, one identity per 10 (default %(default)s)",
    )
    demo.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of the data (default %(default)s)",
    )
    demo.add_argument(
        "--figure",
        default="ndde_demo.png",
        help="write the hard-cluster figure here (.png, .pdf, .svg; default "
        "%(default)s; needs matplotlib)",
    )
    demo.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.add_argument(
        "-v", "--verbose", action="count", default=0, help="stage times on stderr"
    )
    demo.set_defaults(func=_demo)

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
        help="neighbour search: auto is exact up to 30,000 samples, ivf up to "
        "1,000,000, pynndescent above (default %(default)s)",
    )
    cluster.add_argument(
        "--knn-recall",
        type=float,
        default=0.99,
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
    cluster.set_defaults(func=_cluster)

    evaluate = sub.add_parser(
        "evaluate", help="score a labels file and print the hard-cluster report"
    )
    evaluate.add_argument("predicted", help="predicted labels (.npy, .csv, .meta)")
    evaluate.add_argument("--labels", required=True, help="ground-truth labels")
    evaluate.add_argument(
        "--features", help="embeddings, for the sparsity bins (.npy, .bin, ...)"
    )
    evaluate.add_argument(
        "--dim",
        type=int,
        default=256,
        help="row length of a .bin file (default %(default)s)",
    )
    evaluate.add_argument(
        "--bins", type=int, default=5, help="bins per report (default %(default)s)"
    )
    evaluate.add_argument("--figure", help="write the hard-cluster figure here")
    evaluate.add_argument(
        "--name",
        help="the method's name in the figure's legend (default: the labels "
        "file's name)",
    )
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(func=_evaluate)

    train = sub.add_parser(
        "train", help="train the learned pair similarity and save it (needs torch)"
    )
    train.add_argument("features", help="labelled embeddings (.npy, .bin, ...)")
    train.add_argument("--labels", required=True, help="identity of each face")
    train.add_argument("-o", "--output", required=True, help="model file (.pt)")
    train.add_argument(
        "--dim",
        type=int,
        default=256,
        help="row length of a .bin file (default %(default)s)",
    )
    train.add_argument(
        "--k",
        type=int,
        default=80,
        help="neighbours, self included (default %(default)s)",
    )
    train.add_argument(
        "--epochs", type=int, default=10, help="at most (default %(default)s)"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="peak rate of the one-cycle schedule (default %(default)s, the model's)",
    )
    train.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help="anchors per step, or auto: set from the number of faces "
        "(default %(default)s, the model's)",
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="identities held out for early stopping",
    )
    train.add_argument(
        "--d-model",
        type=int,
        default=256,
        help="width of the transformer (default %(default)s)",
    )
    train.add_argument(
        "--dim-feedforward",
        type=int,
        default=2048,
        help="width of its feed-forward layer (default %(default)s)",
    )
    train.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if present), cpu, cuda (default %(default)s)",
    )
    train.add_argument(
        "--random-state", type=int, default=0, help="seed (default %(default)s)"
    )
    train.add_argument("--json", action="store_true", help="machine-readable output")
    train.add_argument(
        "-v", "--verbose", action="count", default=0, help="losses per epoch on stderr"
    )
    train.set_defaults(func=_train)

    photos = sub.add_parser(
        "photos",
        help="find the people in a folder of photos (needs sklearn-ndde[faces])",
        description="Detect, align and embed the faces of every JPEG and PNG "
        "under PHOTOS_DIR with dlib, cluster them into people, and write "
        "faces.csv, people.csv, a crop of each face under people/ and "
        "index.html to OUT_DIR. Running again on the same OUT_DIR detects "
        "only new photos and keeps every person's id and name.",
    )
    photos.add_argument("photos_dir", help="folder of photos, searched recursively")
    photos.add_argument("-o", "--output", required=True, help="output folder")
    photos.add_argument(
        "--upsample",
        type=int,
        default=1,
        help="times each photo is doubled before detection, 0 to 3; 0 is 4x "
        "faster but misses faces under about 80 px (default %(default)s)",
    )
    photos.add_argument(
        "--min-face-size",
        type=int,
        default=20,
        help="smallest face kept, in pixels of width (default %(default)s)",
    )
    photos.add_argument(
        "--max-side",
        type=int,
        default=2000,
        help="photos larger than this many pixels (32 to 20,000) are shrunk for "
        "detection; 0 keeps them whole (default %(default)s)",
    )
    photos.add_argument(
        "--min-faces",
        type=int,
        default=2,
        help="smallest group of faces that makes a person (default %(default)s)",
    )
    photos.add_argument("--json", action="store_true", help="machine-readable summary")
    photos.add_argument(
        "-v", "--verbose", action="count", default=0, help="progress bar on stderr"
    )
    photos.set_defaults(func=_photos)

    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line of ours, without the source line it came from
    (which would point inside scikit-learn or numpy)."""
    text = " ".join(str(message).split())
    print(f"sklearn-ndde: warning: {text}", file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and args.n_samples < 20:
        parser.error("--n-samples must be at least 20")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (ValueError, TypeError, OSError, MemoryError, ImportError) as exc:
        message = " ".join(str(exc).split())
        print(f"sklearn-ndde: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every output is written whole or not at all; what photos detected
        # so far is in its cache.
        print("sklearn-ndde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
