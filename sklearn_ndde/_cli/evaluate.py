"""The ``evaluate`` command: a labels file scored against the true labels."""

from pathlib import Path

import numpy as np

from .common import _save_figure, _scores, _to_json


def add_parser(sub):
    """Add the command to the subparsers ``sub``."""
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
    evaluate.set_defaults(func=run)


def run(args):
    from ..io import check_output_path, load_features, load_labels
    from ..metrics import bin_range, hard_cluster_report

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
