"""Baseline clusterers for the LFW benchmark, each over a parameter grid.

Every baseline gets the same inputs as NDDe (the embeddings, or the exact
cosine kNN graph) and is scored at each grid value; the benchmark reports
the best value, which is an upper bound on what a user would get without
labels.
"""

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering

from sklearn_ndde.metrics import bcubed_fscore, pairwise_fscore


def chinese_whispers(indices, similarities, threshold, n_iter=20, seed=0):
    """Chinese whispers on the kNN graph keeping edges with cosine > threshold."""
    n, k = indices.shape
    rng = np.random.default_rng(seed)
    keep = (similarities > threshold) & (indices != np.arange(n)[:, None])
    rows = np.repeat(np.arange(n), k)[keep.ravel()]
    cols = indices.ravel()[keep.ravel()]
    weights = similarities.ravel()[keep.ravel()].astype(np.float64)
    # Undirected adjacency lists.
    src = np.concatenate([rows, cols])
    dst = np.concatenate([cols, rows])
    w = np.concatenate([weights, weights])
    order = np.argsort(src, kind="stable")
    src, dst, w = src[order], dst[order], w[order]
    start = np.searchsorted(src, np.arange(n + 1))
    labels = np.arange(n)
    for _ in range(n_iter):
        changed = 0
        for i in rng.permutation(n):
            a, b = start[i], start[i + 1]
            if a == b:
                continue
            lab = labels[dst[a:b]]
            uniq, inv = np.unique(lab, return_inverse=True)
            best = uniq[np.argmax(np.bincount(inv, weights=w[a:b]))]
            if best != labels[i]:
                labels[i] = best
                changed += 1
        if changed == 0:
            break
    return labels


def infomap(indices, similarities, threshold, seed=0):
    """Infomap (PyPI ``infomap``) on the kNN graph weighted by cosine."""
    from infomap import Infomap

    n, k = indices.shape
    im = Infomap(silent=True, two_level=True, seed=seed + 1, num_trials=1)
    keep = (similarities > threshold) & (indices != np.arange(n)[:, None])
    rows = np.repeat(np.arange(n), k)[keep.ravel()]
    cols = indices.ravel()[keep.ravel()]
    for node in range(n):
        im.add_node(node)
    im.add_links(
        zip(rows.tolist(), cols.tolist(), similarities.ravel()[keep.ravel()].tolist())
    )
    im.run()
    labels = np.arange(n)
    for node, module in im.modules:
        labels[node] = module + n
    return labels


def threshold_grid(similarities):
    """24 cosine thresholds from the median to the 99.5th percentile of the
    kNN cosines (self pairs left out)."""
    lo, hi = np.quantile(similarities[:, 1:], [0.5, 0.995])
    return np.round(np.linspace(lo, hi, 24), 4)


def best_graph_baselines(indices, similarities, y):
    """Best BCubed F (with its threshold) of Infomap and Chinese whispers."""
    best = {}
    for method, cluster in [
        ("Infomap", infomap),
        ("Chinese whispers", chinese_whispers),
    ]:
        scores = [
            (bcubed_fscore(y, cluster(indices, similarities, t)), t)
            for t in threshold_grid(similarities)
        ]
        best[method] = max(scores)
    return best


def baseline_grid(X, indices, similarities):
    """Yield ``(method, parameter, labels)`` over each baseline's grid."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    thresholds = threshold_grid(similarities)
    for eps in np.round(1 - thresholds, 4):
        labels = DBSCAN(eps=eps, min_samples=2, metric="cosine").fit_predict(Xn)
        yield "DBSCAN", f"eps={eps}", labels
    for m in [2, 3, 4, 5, 8]:
        labels = HDBSCAN(min_cluster_size=m, min_samples=1, copy=True).fit_predict(Xn)
        yield "HDBSCAN", f"min_cluster_size={m}", labels
    for t in np.round(1 - thresholds, 4):
        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=t, metric="cosine", linkage="average"
        ).fit_predict(Xn)
        yield "Agglomerative (average)", f"distance_threshold={t}", labels
    for t in thresholds:
        yield (
            "Chinese whispers",
            f"threshold={t}",
            chinese_whispers(indices, similarities, t),
        )
    for t in thresholds:
        yield "Infomap", f"threshold={t}", infomap(indices, similarities, t)


def best_of_grid(X, indices, similarities, y):
    """Best BCubed F (with its pairwise F and parameter) of each baseline."""
    best = {}
    for method, param, labels in baseline_grid(X, indices, similarities):
        fb, fp = bcubed_fscore(y, labels), pairwise_fscore(y, labels)
        if method not in best or fb > best[method][0]:
            best[method] = (fb, fp, param)
    return best
