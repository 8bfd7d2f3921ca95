"""Baseline clusterers for the LFW benchmark, each over a parameter grid.

Every baseline gets the same inputs as NDDe (the embeddings, or the exact
cosine kNN graph) and is scored at each grid value; the benchmark reports
the best value, which is an upper bound on what a user would get without
labels.
"""

import numba
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
    n, k = indices.shape
    keep = (similarities > threshold) & (indices != np.arange(n)[:, None])
    rows = np.repeat(np.arange(n), k)[keep.ravel()]
    return _infomap_links(
        n,
        rows,
        indices.ravel()[keep.ravel()],
        similarities.ravel()[keep.ravel()],
        seed=seed,
    )


def _infomap_links(n, rows, cols, weights, seed=0, directed=False):
    """Infomap's two-level modules of the links ``rows -> cols``; every node
    without a link is a cluster of its own."""
    from infomap import Infomap

    im = Infomap(
        silent=True, two_level=True, directed=directed, seed=seed + 1, num_trials=1
    )
    for node in range(n):
        im.add_node(node)
    im.add_links(zip(rows.tolist(), cols.tolist(), np.asarray(weights).tolist()))
    im.run()
    labels = np.arange(n)
    for node, module in im.modules:
        labels[node] = module + n
    return labels


@numba.njit(cache=True)
def _nep_kernel(indices, P):
    n, k = indices.shape
    out = np.zeros((n, k))
    position = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        for c in range(k):
            position[indices[i, c]] = c
        for x in range(k):
            j = indices[i, x]
            total = 0.0
            for c in range(k):
                m = position[indices[j, c]]
                if m >= 0:
                    total += P[i, m] + P[j, c]
            out[i, x] = total / 2
        for c in range(k):
            position[indices[i, c]] = -1
    return out


def nep_similarity(indices, cosines, sigma=0.5):
    """FC-ES's neighbour-based edge probability of every kNN pair (Liu 2024,
    ``knn/nep_distance2.py`` of ``jumptoliujj/FC-ESER``): each row's softmax
    of ``-|x_i - x_j|^2 / sigma`` over its list (self included), and for
    the pair ``(i, j)`` half the summed transitions of ``i`` and of ``j``
    to the neighbours they share."""
    d2 = 2.0 - 2.0 * np.clip(np.asarray(cosines, dtype=np.float64), 0.0, 1.0)
    P = np.exp(-d2 / sigma)
    P /= P.sum(axis=1, keepdims=True)
    return _nep_kernel(np.ascontiguousarray(indices, dtype=np.int64), P)


def fc_es(indices, nep, theta, seed=0):
    """FC-ES (Liu 2024, ``clustering/clusters.py``): each sample links to its
    neighbours in cosine order while their NEP is at least ``theta`` and
    stops at the first that is not (early stopping); directed Infomap on
    the links weighted by NEP; a sample with no link of its own is a
    cluster alone."""
    n, k = indices.shape
    ok = (nep >= theta) | (indices == np.arange(n)[:, None])
    # Early stopping: only the unbroken run of qualifying neighbours from the
    # head of the list.
    run = np.cumprod(ok, axis=1).astype(bool)
    keep = run & (indices != np.arange(n)[:, None])
    rows = np.repeat(np.arange(n), k)[keep.ravel()]
    labels = _infomap_links(
        n,
        rows,
        indices.ravel()[keep.ravel()],
        nep.ravel()[keep.ravel()],
        seed=seed,
        directed=True,
    )
    alone = ~keep.any(axis=1)
    labels[alone] = 2 * n + np.flatnonzero(alone)
    return labels


def distance_grid(model):
    """The issue's grids of cosine-distance thresholds: 0.02-0.12 for dlib's
    tight cosines, 0.25-0.95 for the other models."""
    if model.startswith("dlib"):
        return np.round(np.arange(0.02, 0.12 + 1e-9, 0.005), 4)
    return np.round(np.arange(0.25, 0.95 + 1e-9, 0.025), 4)


#: FC-ES's thresholds on the NEP similarity.
THETA_GRID = np.round(np.arange(0.03, 0.60 + 1e-9, 0.015), 4)


def tuned_grid_scores(indices, cosines, y, model):
    """BCubed F of Infomap and Chinese whispers at every cosine-distance
    threshold of :func:`distance_grid`, and of FC-ES at every NEP threshold
    of :data:`THETA_GRID`, on the kNN graph: ``{method: (grid, scores)}``."""
    grid = distance_grid(model)
    scores = {}
    for method, cluster in [
        ("Infomap", infomap),
        ("Chinese whispers", chinese_whispers),
    ]:
        scores[method] = (
            grid,
            np.array(
                [bcubed_fscore(y, cluster(indices, cosines, 1.0 - t)) for t in grid]
            ),
        )
    nep = nep_similarity(indices, cosines)
    scores["FC-ES"] = (
        THETA_GRID,
        np.array(
            [bcubed_fscore(y, fc_es(indices, nep, theta)) for theta in THETA_GRID]
        ),
    )
    return scores


def best_tuned_baselines(indices, cosines, y, model):
    """Best BCubed F, with its threshold, of Infomap and Chinese whispers
    (cosine distance thresholds of :func:`distance_grid`) and of FC-ES
    (NEP thresholds :data:`THETA_GRID`) on the kNN graph, chosen on the
    labels ``y``."""
    return {
        method: max(zip(scores.tolist(), grid.tolist()))
        for method, (grid, scores) in tuned_grid_scores(
            indices, cosines, y, model
        ).items()
    }


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
