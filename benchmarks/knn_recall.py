"""The default neighbour search, judged by what the clustering needs.

On ``make_face_embeddings(n, n // 68, dim=256, random_state=4)`` (default
n = 584,013, the size of MS1M part1), builds the exact k = 80 graph (cached
in ``--cache``: it takes minutes), clusters it with the estimator's stages
after the graph (``_numpy_stages.cluster_graph``, the defaults),
then for each recall target runs the default search (``knn_graph``, faiss
IVF above 30,000 samples) and prints its time, the recall it measured on
its 1,000 sampled rows, its recall over every row against the exact graph
(of the likely neighbours, the pairs the clustering acts on, and of all
80), and the BCubed F of its partition next to the exact graph's.

The likely neighbours are the exact neighbours whose calibrated similarity
(the estimator's calibration, fitted on the whole exact graph) is at least
0.5. ``--nprobe 8,61,137,205`` also builds the default index once and
searches every row (in cell order, as ``knn_graph`` does) at each fixed
``nprobe``, printing the same figures.

    python benchmarks/knn_recall.py [--n 584013] [--targets 0.99]
        [--nprobe 8,61,137,205] [--cache DIR]
"""

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde._knn import (
    _TRAIN_PER_LIST,
    _faiss,
    _ivf_index,
    _ivf_lists,
    _search_by_cell,
    _search_short_rows,
    _sort_rows,
)
from sklearn_ndde._numpy_stages import cluster_graph
from sklearn_ndde._recall import _recall_at_k, _recall_of_likely
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore
from sklearn_ndde.similarity import CalibratedCosineSimilarity


def exact_graph(X, k, cache):
    """The exact graph of ``X``, read from ``cache`` when it is there."""
    if cache.exists():
        data = np.load(cache)
        return data["indices"], data["cosines"], None
    start = time.perf_counter()
    indices, cosines = knn_graph(X, k, method="exact", verbose=True)
    seconds = time.perf_counter() - start
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, indices=indices, cosines=cosines)
    return indices, cosines, seconds


def partition_f(indices, cosines, X, y):
    """BCubed F of the defaults' stages after the graph on this graph."""
    out = cluster_graph(
        NDDeTPDiClustering(), indices, cosines, X, X, lambda name: nullcontext()
    )
    return bcubed_fscore(y, out["labels_"]), int(out["n_clusters_"])


def fixed_nprobe(X, k, probes):
    """Yield ``(nprobe, seconds, indices, cosines)``: the default IVF index,
    trained and filled once, searched at each fixed ``nprobe``."""
    faiss = _faiss()
    n, d = X.shape
    nlist = _ivf_lists(n)
    index, ivf = _ivf_index(faiss, d, nlist, 0)
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(n, size=min(n, _TRAIN_PER_LIST * nlist), replace=False))
    start = time.perf_counter()
    index.train(X[train])
    index.add(X)
    seconds = time.perf_counter() - start
    print(f"index of {nlist:,} cells trained and filled in {seconds:.1f} s")
    print("nprobe  search s  likely (all rows)  all 80  BCubed F  gap")
    for nprobe in probes:
        ivf.nprobe = nprobe
        start = time.perf_counter()
        indices, cosines = _search_by_cell(faiss, index, ivf, X, k)
        seconds = time.perf_counter() - start
        # As knn_graph does: rows short of k results, or missing themselves,
        # are searched exactly.
        _search_short_rows(X, indices, cosines)
        yield nprobe, seconds, *_sort_rows(indices, cosines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=584_013)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--targets",
        default="0.99",
        help="comma-separated recall targets of the likely neighbours",
    )
    parser.add_argument(
        "--nprobe", default="", help="comma-separated fixed nprobe values to sweep"
    )
    parser.add_argument(
        "--cache",
        default=str(Path.home() / ".cache" / "sklearn-ndde-benchmarks"),
        help="folder of the cached exact graphs",
    )
    args = parser.parse_args()
    X, y = make_face_embeddings(
        args.n, max(1, args.n // 68), dim=256, random_state=args.seed
    )
    X = X.astype(np.float32)
    cache = Path(args.cache) / f"exact_{args.n}_{args.k}_{args.seed}.npz"
    indices, cosines, seconds = exact_graph(X, args.k, cache)
    took = "cached" if seconds is None else f"{seconds:.0f} s"
    print(f"n = {args.n:,}, k = {args.k}, 256-d synthetic faces (exact graph: {took})")
    calibration = CalibratedCosineSimilarity().fit_neighbors(indices, cosines, X=X)
    likely = np.flatnonzero(calibration.curve_ >= 0.5)
    floor = float(calibration.grid_[likely[0]]) if likely.size else np.inf
    same = y[indices[:, 1:]] == y[:, None]
    print(
        f"likely neighbours: cosine >= {floor:.3f}; "
        f"{np.mean(cosines[:, 1:] >= floor):.3f} of the exact lists, "
        f"{same.mean():.3f} of them the same identity"
    )
    f_exact, c_exact = partition_f(indices, cosines, X, y)
    print(f"exact graph: BCubed F {f_exact:.4f} ({c_exact:,} clusters)")
    header = "target  search s  measured  likely (all rows)  all 80  BCubed F  gap"
    print(header)
    for target in [float(t) for t in args.targets.split(",")]:
        start = time.perf_counter()
        found, found_cos, measured = knn_graph(
            X, args.k, recall=target, random_state=0, return_recall=True
        )
        seconds = time.perf_counter() - start
        f, _ = partition_f(found, found_cos, X, y)
        print(
            f"{target:6.3f}  {seconds:8.1f}  {measured:8.3f}  "
            f"{_recall_of_likely(cosines, found_cos, floor):17.3f}  "
            f"{_recall_at_k(cosines, found_cos):6.3f}  {f:8.4f}  {f - f_exact:+.4f}"
        )
    if args.nprobe:
        probes = [int(p) for p in args.nprobe.split(",")]
        for nprobe, seconds, found, found_cos in fixed_nprobe(X, args.k, probes):
            f, _ = partition_f(found, found_cos, X, y)
            print(
                f"{nprobe:6d}  {seconds:8.1f}  "
                f"{_recall_of_likely(cosines, found_cos, floor):17.3f}  "
                f"{_recall_at_k(cosines, found_cos):6.3f}  {f:8.4f}  "
                f"{f - f_exact:+.4f}"
            )


if __name__ == "__main__":
    main()
