"""The exact kNN graph of a row-chunked dask array, on the current client.

Each row block is searched against every block with the single-machine
engine (faiss's BLAS path, numpy without it), one block after the other,
keeping only the best ``k`` candidates per row between steps; different
blocks run in parallel on the workers. A task holds one query block, one
data block and ``(rows, 2 k)`` candidates, never an ``(n, k)`` array; each
block travels once to each worker that searches against it.
"""

import numpy as np

from ._knn import _faiss, _faiss_threads, _normalize_rows, _sort_rows


def is_dask_array(X):
    """Whether ``X`` is a dask array, without importing dask."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "chunks")


def _unit_block(block, offset):
    """Unit rows of one block; NaN, infinity or a zero row raise a
    ValueError naming the row's global index."""
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise ValueError(
            f"X contains NaN or infinity (first at row {offset + np.argmax(bad)})."
        )
    unit = _normalize_rows(block, allow_zero=True)
    zero = ~unit.any(axis=1)
    if zero.any():
        raise ValueError(
            f"X has {int(zero.sum())} zero vector(s) in rows {offset} to "
            f"{offset + block.shape[0] - 1} (first at row {offset + np.argmax(zero)}); "
            "the cosine metric is undefined for them."
        )
    return unit


def _top(ids, sims, k):
    """The ``k`` candidates of largest similarity per row (unordered)."""
    if ids.shape[1] <= k:
        return ids, sims
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return np.take_along_axis(ids, part, 1), np.take_along_axis(sims, part, 1)


def _search_block(Q, Y, offset, n_neighbors, best, n_jobs):
    """Merge the nearest rows of data block ``Y`` (ids from ``offset``)
    into ``best``, the candidates of query block ``Q`` so far."""
    k = min(n_neighbors, Y.shape[0])
    faiss = _faiss()
    if faiss is not None:
        with _faiss_threads(faiss, n_jobs):
            sims, ids = faiss.knn(Q, Y, k, metric=faiss.METRIC_INNER_PRODUCT)
    else:
        S = Q @ Y.T
        ids = np.argpartition(-S, k - 1, axis=1)[:, :k]
        sims = np.take_along_axis(S, ids, 1)
    ids = ids.astype(np.int64) + offset
    if best is not None:
        ids = np.concatenate([best[0], ids], axis=1)
        sims = np.concatenate([best[1], sims], axis=1)
    return _top(ids, sims.astype(np.float32), n_neighbors)


def _finish_block(Q, offset, best):
    """Sorted rows of a query block, the sample itself in each (as the
    single-machine search makes them)."""
    indices, sims = best
    rows = offset + np.arange(Q.shape[0])
    missing = ~(indices == rows[:, None]).any(axis=1)
    indices[missing, -1] = rows[missing]
    self_col = indices == rows[:, None]
    sims[self_col] = np.einsum("ij,ij->i", Q, Q)
    np.clip(sims, -1.0, 1.0, out=sims)
    indices, sims = _sort_rows(indices, sims, rows)
    return indices.astype(np.int32), sims.astype(np.float32)


def dask_knn_graph(X, n_neighbors, n_jobs=None):
    """The exact cosine kNN graph of the dask array ``X``, lazily.

    Returns ``(indices, similarities)`` as dask arrays with ``X``'s row
    chunks; see :func:`~sklearn_ndde.knn_graph`.
    """
    import dask
    import dask.array as da

    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}.")
    n = X.shape[0]
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X has unknown chunk sizes; call X.compute_chunk_sizes() first."
        )
    if n_neighbors > n:
        raise ValueError(
            f"n_neighbors={n_neighbors} is larger than the number of samples ({n})."
        )
    threads = 1 if n_jobs is None else n_jobs
    X = X.rechunk({1: -1})
    offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(int)
    blocks = [
        dask.delayed(_unit_block)(block, int(offset))
        for block, offset in zip(X.to_delayed().ravel(), offsets[:-1])
    ]
    search = dask.delayed(_search_block, nout=2)
    finish = dask.delayed(_finish_block, nout=2)
    indices, sims = [], []
    for i, Q in enumerate(blocks):
        best = None
        # Start with the query's own block: its rows hold the sample itself.
        order = [i] + [j for j in range(len(blocks)) if j != i]
        for j in order:
            best = search(Q, blocks[j], int(offsets[j]), n_neighbors, best, threads)
        part = finish(Q, int(offsets[i]), best)
        rows = int(X.chunks[0][i])
        indices.append(da.from_delayed(part[0], (rows, n_neighbors), np.int32))
        sims.append(da.from_delayed(part[1], (rows, n_neighbors), np.float32))
    return da.concatenate(indices), da.concatenate(sims)
