"""The exact kNN search against faiss.knn, in one process.

``knn_graph(method="exact")`` on synthetic 256-d faces (60,000 by default,
k = 80) against ``faiss.knn`` (inner product on the unit rows) called
directly, alternating, median of ``--repeats`` runs each; prints both times
and their ratio. The numpy fallback (no faiss) is timed once with
``--numpy``. Needs ``pip install faiss-cpu``.

    python benchmarks/knn_exact_speed.py [--n 60000] [--repeats 3] [--numpy]
"""

import argparse
import time

import faiss
import numpy as np

from sklearn_ndde import knn_graph
from sklearn_ndde._knn import _exact_knn_numpy
from sklearn_ndde._validation import _normalize_rows
from sklearn_ndde.datasets import make_face_embeddings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--numpy", action="store_true")
    args = parser.parse_args()
    X, _ = make_face_embeddings(args.n, max(1, args.n // 68), random_state=0)
    Xn = _normalize_rows(X)
    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        faiss.knn(Xn, Xn, args.k, metric=faiss.METRIC_INNER_PRODUCT)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        knn_graph(X, args.k, method="exact")
        ours.append(time.perf_counter() - start)
    a, b = np.median(ours), np.median(theirs)
    print(f"n = {args.n:,} x {X.shape[1]}, k = {args.k}, median of {args.repeats}:")
    print(f"  knn_graph(method='exact') {a:6.1f} s")
    print(f"  faiss.knn                 {b:6.1f} s")
    print(f"  ratio                     {a / b:6.2f}")
    if args.numpy:
        start = time.perf_counter()
        _exact_knn_numpy(Xn, args.k)
        print(f"  numpy fallback            {time.perf_counter() - start:6.1f} s")


if __name__ == "__main__":
    main()
