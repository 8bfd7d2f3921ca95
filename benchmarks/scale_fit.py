"""``NDDeTPDiClustering().fit`` end to end against the number of faces.

For each n, on ``make_face_embeddings(n, n // 68, dim=256, random_state=0)``
(float32; MS1M's 68 faces per identity), written once to a ``.npy`` file in
``--cache`` and read memory-mapped, fits the estimator at its defaults in a
fresh process and prints the time and the peak resident memory of each
stage and of the whole fit (the process's VmHWM: the memory-mapped input
counts as far as it is read), the peak beyond the input's size, the
estimator's own memory estimate of it (what ``fit`` checks first), the
search method ``knn_method="auto"`` chose, the recall it reached, BCubed F
against the generator's labels, and the growth exponent of the time
between consecutive sizes and over all of them. ``--json`` writes the
rows, which the documentation's benchmark page draws.

    python benchmarks/scale_fit.py [--n 30000 100000 300000 584013] [--json PATH]
        [--knn-method auto|ivf|pynndescent] [--growth-from 584013] [-v]

The paper's scale, 5,206,761 faces (that size alone about 12 minutes at
17 GB; the whole command about 17 minutes):

    python benchmarks/scale_fit.py --n 30000 100000 300000 584013 1740301 5206761
"""

import argparse
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from speed_after_knn import peak_rss_gb, reset_peak


def data_files(n, cache):
    """The cached ``X`` (float32) and ``y`` files of size ``n``, made once."""
    from sklearn_ndde.datasets import make_face_embeddings

    X_path = cache / f"faces_{n}_256_0_X.npy"
    y_path = cache / f"faces_{n}_256_0_y.npy"
    if not (X_path.exists() and y_path.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        X, y = make_face_embeddings(n, max(1, n // 68), dim=256, random_state=0)
        np.save(y_path, y)
        np.save(X_path.with_suffix(".part.npy"), X)
        X_path.with_suffix(".part.npy").rename(X_path)
    return X_path, y_path


def child(n, cache, knn_method, verbose):
    from sklearn_ndde import NDDeTPDiClustering, _numpy_stages
    from sklearn_ndde._knn import _search_method
    from sklearn_ndde._memory import fit_bytes
    from sklearn_ndde._validation import _has_unit_rows
    from sklearn_ndde.metrics import bcubed_fscore

    X_path, y_path = data_files(n, cache)
    X = np.load(X_path, mmap_mode="r")
    y = np.load(y_path)
    stages = {}
    est = NDDeTPDiClustering(random_state=0, knn_method=knn_method, verbose=verbose)

    def stage_logger(verbose):
        @contextmanager
        def stage(name):
            reset_peak()
            start = time.perf_counter()
            yield
            stages[name] = [time.perf_counter() - start, peak_rss_gb()]

        return stage

    _numpy_stages.stage_logger = stage_logger
    reset_peak()
    start = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - start
    method = _search_method(n, knn_method, "cpu")[0]
    row = {
        "n": n,
        "seconds": seconds,
        "peak_gb": max(peak_rss_gb(), *(peak for _, peak in stages.values())),
        # Unit float32 rows (as these are) are used without a copy.
        "estimate_gb": fit_bytes(
            n, X.shape[1], est.k, method, rows_copied=not _has_unit_rows(X)
        )
        / 1024**3,
        "data_gb": X.nbytes / 1024**3,
        "knn_method": method,
        "knn_recall": est.knn_recall_,
        "bcubed_f": bcubed_fscore(y, est.labels_),
        "n_clusters": int(est.n_clusters_),
        "stages": stages,
    }
    print(json.dumps(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, nargs="+", default=[30000, 100000, 300000, 584013]
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "sklearn-ndde-benchmarks",
        help="folder of the generated faces",
    )
    parser.add_argument(
        "--knn-method", default="auto", choices=["auto", "ivf", "pynndescent"]
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="the fit's lines on stderr"
    )
    parser.add_argument(
        "--growth-from",
        type=int,
        default=584013,
        help="also print the growth exponent over the sizes from this one up",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cache, args.knn_method, int(args.verbose))
        return
    rows = []
    print(
        f"{'n':>9s} {'method':>11s} {'seconds':>8s} {'peak GB':>8s} "
        f"{'beyond input':>12s} {'estimate':>8s} {'recall':>7s} {'BCubed F':>9s}"
    )
    for n in args.n:
        data_files(n, args.cache)  # made here, outside the measured process
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--cache", str(args.cache)]
            + ["--knn-method", args.knn_method]
            + ["-v"] * args.verbose,
            stdout=subprocess.PIPE,
            stderr=None if args.verbose else subprocess.PIPE,
            text=True,
        )
        if proc.returncode:
            raise RuntimeError(f"n={n} failed:\n{(proc.stderr or '')[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{n:9,d} {row['knn_method']:>11s} {row['seconds']:8.1f} "
            f"{row['peak_gb']:8.2f} {row['peak_gb'] - row['data_gb']:12.2f} "
            f"{row['estimate_gb']:8.2f} "
            f"{row['knn_recall']:7.3f} {row['bcubed_f']:9.4f}",
            flush=True,
        )
        for name, (seconds, peak) in row["stages"].items():
            print(f"{'':9s}   {name:<16s} {seconds:8.1f} s {peak:6.2f} GB")
        if args.json:  # after each size: a later one may not finish
            args.json.write_text(json.dumps(rows, indent=1))
    for a, b in zip(rows, rows[1:]):
        slope = np.log(b["seconds"] / a["seconds"]) / np.log(b["n"] / a["n"])
        print(f"time grows as n^{slope:.2f} from {a['n']:,} to {b['n']:,}")
    if len(rows) > 2:
        print_growth(rows)
    large = [r for r in rows if r["n"] >= args.growth_from]
    if 2 < len(large) < len(rows):
        print_growth(large)


def print_growth(rows):
    """The least-squares exponent of the time against n over ``rows``."""
    fit = np.polyfit(
        np.log([r["n"] for r in rows]), np.log([r["seconds"] for r in rows]), 1
    )
    print(f"time grows as n^{fit[0]:.2f} over {rows[0]['n']:,} to {rows[-1]['n']:,}")


if __name__ == "__main__":
    main()
