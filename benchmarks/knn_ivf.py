"""The default approximate search (faiss IVF, calibrated) against pynndescent.

On ``make_face_embeddings(n, n // 68, dim=256)`` (default n = 584,013, the
size of MS1M part1), builds the k = 80 graph with
``knn_graph(method="ivf")`` (the default above 30,000 samples) and with
``method="pynndescent"``, each in a fresh process, and prints for each the
time, the peak resident memory, the recall the IVF search measured on
itself, and the recall of both graphs on the same 1,000 rows against exact
search (ties at the k-th cosine count as found). ``--fit`` also runs
``NDDeTPDiClustering().fit`` end to end in a fresh process (time, peak
memory, BCubed F against the generator's labels).

    python benchmarks/knn_ivf.py [--n 584013] [--recall 0.99] [--fit | --fit-only]
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from speed_after_knn import peak_rss_gb, reset_peak


def data(n, seed=0):
    from sklearn_ndde.datasets import make_face_embeddings

    return make_face_embeddings(n, max(1, n // 68), dim=256, random_state=seed)


def sample_recall(X, indices, k, seed=1):
    """Recall of ``indices`` on 1,000 rows against an exact search."""
    from sklearn_ndde._knn import _exact_knn, _recall_at_k

    rows = np.sort(np.random.default_rng(seed).choice(len(X), 1000, replace=False))
    _, exact_sims = _exact_knn(X, k, rows)
    found_sims = np.einsum("id,ikd->ik", X[rows], X[indices[rows]])
    return _recall_at_k(exact_sims, found_sims)


def child(args):
    from sklearn_ndde import NDDeTPDiClustering, knn_graph
    from sklearn_ndde.metrics import bcubed_fscore

    X, y = data(args.n)
    reset_peak()
    start = time.perf_counter()
    out = {"what": args.child}
    if args.child == "fit":
        est = NDDeTPDiClustering(knn_recall=args.recall, random_state=0).fit(X)
        out["seconds"] = time.perf_counter() - start
        out["peak_gb"] = peak_rss_gb()
        out["knn_recall"] = est.knn_recall_
        out["bcubed_f"] = bcubed_fscore(y, est.labels_)
        out["n_clusters"] = int(est.n_clusters_)
    else:
        indices, _, reached = knn_graph(
            X,
            args.k,
            method=args.child,
            recall=args.recall,
            random_state=0,
            return_recall=True,
        )
        out["seconds"] = time.perf_counter() - start
        out["peak_gb"] = peak_rss_gb()
        out["measured_recall"] = reached
        out["sample_recall"] = sample_recall(X, indices, args.k)
    print(json.dumps(out))


def run_child(what, args):
    cmd = [sys.executable, __file__, "--child", what, "--n", str(args.n)]
    cmd += ["--k", str(args.k), "--recall", str(args.recall)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{what} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=584_013)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--recall", type=float, default=0.99)
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--skip-pynndescent", action="store_true")
    parser.add_argument(
        "--fit-only", action="store_true", help="only the end-to-end fit"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"n = {args.n:,} synthetic 256-d faces, k = {args.k}, 2 cores")
    rows = {} if args.fit_only else {"ivf": run_child("ivf", args)}
    if not (args.skip_pynndescent or args.fit_only):
        rows["pynndescent"] = run_child("pynndescent", args)
    for name, row in rows.items():
        print(
            f"  {name:12s} {row['seconds']:7.1f} s  peak {row['peak_gb']:5.2f} GB  "
            f"recall@{args.k} on 1,000 rows {row['sample_recall']:.4f}"
            + (
                f" (measured by the search itself: {row['measured_recall']:.4f})"
                if name == "ivf"
                else " (incl. numba compile)"
            ),
            flush=True,
        )
    if "pynndescent" in rows:
        ratio = rows["ivf"]["seconds"] / rows["pynndescent"]["seconds"]
        print(f"  time ratio ivf / pynndescent: {ratio:.2f}")
    if args.fit or args.fit_only:
        row = run_child("fit", args)
        print(
            f"  NDDeTPDiClustering().fit end to end: {row['seconds']:.1f} s, peak "
            f"{row['peak_gb']:.2f} GB, kNN recall {row['knn_recall']:.4f}, "
            f"{row['n_clusters']:,} clusters, BCubed F {row['bcubed_f']:.4f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
