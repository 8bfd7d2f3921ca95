"""``NDDeTPDiClustering().fit`` end to end against the number of faces.

For each n, in a fresh process, on ``make_face_embeddings(n, n // 68,
dim=256)`` (float32; MS1M's 68 faces per identity), fits the estimator at
its defaults and prints the time, the peak resident memory of the
process during the fit (the float32 data included), the search method
``knn_method="auto"`` chose, the recall it reached and BCubed F against
the generator's labels. ``--json`` writes the rows, which the
documentation's benchmark page draws.

    python benchmarks/scale_fit.py [--n 30000 100000 300000 584013] [--json PATH]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from speed_after_knn import peak_rss_gb, reset_peak


def child(n):
    from sklearn_ndde import NDDeTPDiClustering
    from sklearn_ndde._knn import _search_method
    from sklearn_ndde.datasets import make_face_embeddings
    from sklearn_ndde.metrics import bcubed_fscore

    X, y = make_face_embeddings(n, max(1, n // 68), dim=256, random_state=0)
    X = X.astype(np.float32)
    reset_peak()
    start = time.perf_counter()
    est = NDDeTPDiClustering(random_state=0).fit(X)
    row = {
        "n": n,
        "seconds": time.perf_counter() - start,
        "peak_gb": peak_rss_gb(),
        "data_gb": X.nbytes / 1024**3,
        "knn_method": _search_method(n, "auto", "cpu")[0],
        "knn_recall": est.knn_recall_,
        "bcubed_f": bcubed_fscore(y, est.labels_),
        "n_clusters": int(est.n_clusters_),
    }
    print(json.dumps(row))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--n", type=int, nargs="+", default=[30000, 100000, 300000, 584013]
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = []
    print(
        f"{'n':>9s} {'method':>11s} {'seconds':>8s} {'peak GB':>8s} "
        f"{'recall':>7s} {'BCubed F':>9s}"
    )
    for n in args.n:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise RuntimeError(f"n={n} failed:\n{proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{n:9,d} {row['knn_method']:>11s} {row['seconds']:8.1f} "
            f"{row['peak_gb']:8.2f} {row['knn_recall']:7.3f} {row['bcubed_f']:9.4f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
