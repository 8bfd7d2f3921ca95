"""Recall of the approximate kNN graph against the exact one.

On ``make_face_embeddings(n, n // 68, dim=256)`` (default n = 100,000, the
size the scale issue asks for), builds the k = 80 graph with
``knn_graph(method="exact")`` and with ``method="pynndescent"`` and prints
the recall (the fraction of the exact k neighbours, the sample itself
included, that the approximate graph also finds), overall and over the
last 40 columns, with the time of each search.

    python benchmarks/knn_recall.py [--n 100000] [--k 80]
"""

import argparse
import time

import numpy as np

from sklearn_ndde import knn_graph
from sklearn_ndde.datasets import make_face_embeddings


def recall(exact, approx):
    """Mean over rows of |exact_i & approx_i| / k."""
    n, k = exact.shape
    rows = np.repeat(np.arange(n), k)
    key_exact = rows * n + exact.ravel()
    key_approx = rows * n + approx.ravel()
    return np.isin(key_exact, key_approx).reshape(n, k)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X, _ = make_face_embeddings(
        args.n, max(1, args.n // 68), dim=256, random_state=args.seed
    )
    times = {}
    graphs = {}
    for method in ["exact", "pynndescent"]:
        start = time.perf_counter()
        graphs[method], _ = knn_graph(X, args.k, method=method, random_state=args.seed)
        times[method] = time.perf_counter() - start
    hit = recall(graphs["exact"].astype(np.int64), graphs["pynndescent"])
    print(f"n = {args.n:,}, k = {args.k}, 256-d synthetic faces")
    print(f"  exact search        {times['exact']:7.1f} s")
    print(f"  pynndescent search  {times['pynndescent']:7.1f} s (incl. numba compile)")
    print(f"  recall@{args.k}           {hit.mean():.4f}")
    late = hit[:, args.k // 2 :].mean()
    print(f"  recall, columns {args.k // 2}-{args.k - 1}  {late:.4f}")
    print(f"  rows with recall < 0.9  {np.mean(hit.mean(axis=1) < 0.9):.4f}")


if __name__ == "__main__":
    main()
