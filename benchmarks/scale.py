"""Time and peak memory of every stage at the paper's benchmark sizes.

For each n, a fresh process generates ``make_face_embeddings(n, n // 68,
dim=256)`` (MS1M part1: 584,013 faces of 8,573 identities, about 68 each)
and runs the stages of ``NDDeTPDiClustering().fit`` one by one, with the
same public functions: kNN (the default search: faiss IVF at its default
recall target above 30,000 samples), the
training-free similarity, the two transition matrices, NDDe, TPDi and the
density peaks. The peak resident memory of each stage is read from VmHWM,
reset before the stage (``/proc/self/clear_refs``). Prints one row per n and
the growth exponent of the total time fitted on a log-log scale.

    python benchmarks/scale.py [--sizes 50000 200000 584013 1740301]
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from speed_after_knn import peak_rss_gb, reset_peak

STAGES = ["knn", "similarity", "transitions", "ndde", "tpdi", "peaks"]


def run(n, k=80, seed=0):
    from sklearn_ndde import (
        density_peaks,
        knn_graph,
        ndde_density,
        tpdi,
        transition_matrix,
    )
    from sklearn_ndde.datasets import make_face_embeddings
    from sklearn_ndde.metrics import bcubed_fscore
    from sklearn_ndde.similarity import CalibratedCosineSimilarity

    X, y = make_face_embeddings(n, max(1, n // 68), dim=256, random_state=seed)
    out = {"n": n, "time": {}, "peak_gb": {}}

    def stage(name, fn):
        reset_peak()
        start = time.perf_counter()
        value = fn()
        out["time"][name] = time.perf_counter() - start
        out["peak_gb"][name] = peak_rss_gb()
        return value

    indices, cosines = stage("knn", lambda: knn_graph(X, k, random_state=seed))

    def similarity():
        sim = CalibratedCosineSimilarity().fit_neighbors(indices, cosines)
        s = sim.calibrate(cosines)
        order = np.argsort(-s, axis=1, kind="stable")
        return np.take_along_axis(indices, order, 1), np.take_along_axis(s, order, 1)

    idx, s = stage("similarity", similarity)
    P, Q = stage(
        "transitions",
        lambda: (
            transition_matrix(idx, s, sigma=0.5, top=20),
            transition_matrix(idx, s, sigma=0.05),
        ),
    )
    rho = stage("ndde", lambda: ndde_density(P))
    D = stage("tpdi", lambda: tpdi(Q, idx))
    labels, _ = stage("peaks", lambda: density_peaks(rho, idx, D, tau=0.7))
    out["total"] = sum(out["time"].values())
    out["bcubed_f"] = bcubed_fscore(y, labels)
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[50_000, 200_000, 584_013, 1_740_301]
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(args.child)
        return
    # Compile the numba kernels once, outside the measured runs.
    subprocess.run(
        [sys.executable, __file__, "--child", "3000"], check=True, capture_output=True
    )
    rows = []
    header = " ".join(f"{s:>12s}" for s in STAGES)
    print(f"{'n':>10s} {header} {'total':>8s} {'BCubed F':>8s}  (s / peak GB)")
    for n in args.sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(f"{n:>10d} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        cells = " ".join(
            f"{row['time'][s]:6.1f}/{row['peak_gb'][s]:4.1f}" for s in STAGES
        )
        print(
            f"{n:>10d} {cells} {row['total']:8.1f} {row['bcubed_f']:8.4f}", flush=True
        )
    if len(rows) >= 2:
        n = np.log([r["n"] for r in rows])
        t = np.log([r["total"] for r in rows])
        print(f"growth exponent of the total time: {np.polyfit(n, t, 1)[0]:.2f}")


if __name__ == "__main__":
    main()
