"""The reader of a precomputed sparse distance graph
(``metric="precomputed"``)."""

import numpy as np
import scipy.sparse as sp


def graph_to_neighbors(G, n_neighbors, square):
    """Rows of a sparse distance graph as ``(indices, distances)`` arrays.

    Each row keeps its ``n_neighbors`` smallest stored distances. For a
    square (training) graph the sample itself is put in column 0 at distance
    0 whether or not it is stored, and counts towards ``n_neighbors``.
    """
    # A copy: sum_duplicates sorts the index arrays in place, and a
    # converted matrix may still share them with the caller's graph.
    G = sp.csr_matrix(G, dtype=np.float64, copy=True)
    G.sum_duplicates()
    n = G.shape[0]
    if not np.all(np.isfinite(G.data)) or (G.data < 0).any():
        raise ValueError(
            "The precomputed graph must hold finite non-negative distances."
        )
    if G.data.size and G.data.max() > 2.0 + 1e-6:
        raise ValueError(
            f"The precomputed graph holds distances up to {G.data.max():.4g}; "
            "cosine distances (1 - cos) lie in [0, 2]. Build it with "
            "metric='cosine'."
        )
    rows = np.repeat(np.arange(n), np.diff(G.indptr))
    cols, dist = G.indices, G.data
    wanted = n_neighbors
    if square:
        other = cols != rows
        rows, cols, dist = rows[other], cols[other], dist[other]
        wanted -= 1
    counts = np.bincount(rows, minlength=n)
    short = np.flatnonzero(counts < wanted)
    if short.size:
        raise ValueError(
            f"The precomputed graph has fewer than {wanted} neighbours (besides the "
            f"sample itself) in {short.size} row(s), e.g. row {short[0]} has "
            f"{counts[short[0]]}; build it with at least n_neighbors={wanted} or "
            f"lower k."
        )
    order = np.lexsort((cols, dist, rows))
    rows, cols, dist = rows[order], cols[order], dist[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(rows.size) - start[rows]
    keep = rank < wanted
    indices = cols[keep].reshape(n, wanted)
    distances = dist[keep].reshape(n, wanted)
    if square:
        indices = np.hstack([np.arange(n)[:, None], indices])
        distances = np.hstack([np.zeros((n, 1)), distances])
    return indices.astype(np.int32), distances
