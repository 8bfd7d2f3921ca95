"""The exact kNN graph of a row-chunked dask array, on the current client.

Each row block is searched against every block with the single-machine
engine (faiss's BLAS path, numpy without it), one block after the other,
keeping only the best ``k`` candidates per row between steps; different
blocks run in parallel on the workers. A task holds one query block, one
data block and ``(rows, 2 k)`` candidates, never an ``(n, k)`` array; each
block travels once to each worker that searches against it.
"""

import numpy as np

from ._knn import (
    _TRAIN_PER_LIST,
    EXACT_MAX_SAMPLES,
    RECALL_SAMPLE,
    REFINE_FACTOR,
    _faiss,
    _faiss_threads,
    _ivf_index,
    _ivf_lists,
    _normalize_rows,
    _nprobe_steps,
    _recall_at_k,
    _sort_rows,
)


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
    if (indices < 0).any():
        raise RuntimeError(
            f"The IVF search found fewer than {indices.shape[1]} neighbours for "
            f"{int((indices < 0).any(axis=1).sum())} row(s); use method='exact'."
        )
    rows = offset + np.arange(Q.shape[0])
    missing = ~(indices == rows[:, None]).any(axis=1)
    indices[missing, -1] = rows[missing]
    self_col = indices == rows[:, None]
    sims[self_col] = np.einsum("ij,ij->i", Q, Q)
    np.clip(sims, -1.0, 1.0, out=sims)
    indices, sims = _sort_rows(indices, sims, rows)
    return indices.astype(np.int32), sims.astype(np.float32)


def _fill_index(blob, Y, offset, n_jobs):
    """The trained empty IVF index ``blob`` holding the rows of one block."""
    faiss = _faiss()
    index = faiss.deserialize_index(blob)
    with _faiss_threads(faiss, n_jobs):
        index.add_with_ids(Y, offset + np.arange(Y.shape[0], dtype=np.int64))
    return index


def _assign(blob, Q, nprobe, n_jobs):
    """The ``nprobe`` cells of each query row (searched once per block)."""
    faiss = _faiss()
    index = faiss.deserialize_index(blob)
    with _faiss_threads(faiss, n_jobs):
        cells, ids = index.quantizer.search(Q, nprobe)
    return ids, cells


def _ivf_search_block(
    Q, assigned, index, Y, offset, n_neighbors, n_candidates, best, n_jobs
):
    """Merge the best rows of data block ``Y`` into ``best``: its IVF index
    proposes ``n_candidates`` per query in the preassigned cells, which are
    re-ranked with the exact cosine (the block's rows are here)."""
    faiss = _faiss()
    ids, cells = assigned
    index.nprobe = ids.shape[1]
    with _faiss_threads(faiss, n_jobs):
        _, found = index.search_preassigned(Q, n_candidates, ids, cells)
    valid = found >= 0
    local = np.ascontiguousarray(np.where(valid, found - offset, 0), dtype=np.int64)
    sims = np.empty(found.shape, dtype=np.float32)
    flat = faiss.IndexFlatIP(Y.shape[1])
    flat.add(Y)
    with _faiss_threads(faiss, n_jobs):
        flat.compute_distance_subset(
            Q.shape[0],
            faiss.swig_ptr(np.ascontiguousarray(Q)),
            local.shape[1],
            faiss.swig_ptr(sims),
            faiss.swig_ptr(local),
        )
    sims[~valid] = -np.inf
    found = found.astype(np.int64)
    if best is not None:
        found = np.concatenate([best[0], found], axis=1)
        sims = np.concatenate([best[1], sims], axis=1)
    return _top(found, sims, n_neighbors)


def _exact_chain(Q, units, offsets, n_neighbors, n_jobs, first=None):
    """Delayed best candidates of query block ``Q`` against every block."""
    import dask

    search = dask.delayed(_search_block, nout=2)
    order = list(range(len(units)))
    if first is not None:
        # The query's own block first: its rows hold the sample itself.
        order = [first] + [j for j in order if j != first]
    best = None
    for j in order:
        best = search(Q, units[j], int(offsets[j]), n_neighbors, best, n_jobs)
    return best


def _ivf_chain(Q, blob, indexes, units, offsets, n, n_neighbors, nprobe, n_jobs):
    import dask

    assigned = dask.delayed(_assign, nout=2)(blob, Q, nprobe, n_jobs)
    search = dask.delayed(_ivf_search_block, nout=2)
    best = None
    for j, (index, Y) in enumerate(zip(indexes, units)):
        size = int(offsets[j + 1] - offsets[j])
        # Each block proposes its share of the single-machine re-rank, and a
        # quarter more (the recall calibration widens nprobe if that is short).
        share = -(-5 * REFINE_FACTOR * n_neighbors * size // (4 * n))
        n_candidates = max(n_neighbors, share)
        n_candidates = min(n_candidates, size)
        best = search(
            Q,
            assigned,
            index,
            Y,
            int(offsets[j]),
            n_neighbors,
            n_candidates,
            best,
            n_jobs,
        )
    return best


def blocked_knn(units, offsets, n_neighbors, method, recall, seed, n_jobs):
    """Delayed ``(indices, similarities)`` of each row block, and the recall
    (exact search: 1.0; IVF: calibrated on ``RECALL_SAMPLE`` rows)."""
    import dask

    n = int(offsets[-1])
    finish = dask.delayed(_finish_block, nout=2)
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_SAMPLES else "ivf"
    if method == "ivf" and _faiss() is None:
        raise ImportError("method='ivf' needs faiss: pip install faiss-cpu.")
    reached = 1.0
    if method == "ivf":
        plan = _ivf_plan(units, offsets, n_neighbors, recall, seed, n_jobs)
    else:
        plan = None
    parts = []
    for i, Q in enumerate(units):
        if plan is None:
            best = _exact_chain(Q, units, offsets, n_neighbors, n_jobs, first=i)
        else:
            blob, indexes, nprobe, reached = plan
            best = _ivf_chain(
                Q, blob, indexes, units, offsets, n, n_neighbors, nprobe, n_jobs
            )
        parts.append(finish(Q, int(offsets[i]), best))
    return parts, reached


def _take(array, local):
    return array[local]


def gather_rows(blocks, offsets, ids):
    """Rows ``ids`` (sorted, global) of a row-blocked array, given as its
    blocks' delayed arrays and ``offsets``, on the client."""
    import dask

    cuts = np.searchsorted(ids, offsets[1:-1])
    parts = [
        dask.delayed(_take)(blocks[b], part - offsets[b])
        for b, part in enumerate(np.split(ids, cuts))
        if part.size
    ]
    return np.concatenate(dask.compute(*parts))


def _ivf_plan(units, offsets, n_neighbors, recall, seed, n_jobs):
    """Train the IVF index on a sample, fill one per block, and widen
    ``nprobe`` until ``recall`` holds on ``RECALL_SAMPLE`` rows; returns
    ``(blob, indexes, nprobe, recall_reached)``, or None when more than a
    quarter of the cells would be needed (the exact search is cheaper)."""
    import dask

    faiss = _faiss()
    n = int(offsets[-1])
    rng = np.random.default_rng(seed)
    nlist = _ivf_lists(n)
    train = np.sort(rng.choice(n, size=min(n, _TRAIN_PER_LIST * nlist), replace=False))
    sample = np.sort(rng.choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    X_train = gather_rows(units, offsets, train)
    X_sample = gather_rows(units, offsets, sample)
    d = X_train.shape[1]
    index, ivf = _ivf_index(faiss, d, nlist, seed)
    with _faiss_threads(faiss, None):
        ivf.train(X_train)
    del X_train
    blob = faiss.serialize_index(ivf)
    del index, ivf
    indexes = dask.persist(
        *[
            dask.delayed(_fill_index)(blob, Y, int(offsets[j]), n_jobs)
            for j, Y in enumerate(units)
        ]
    )
    exact = dask.compute(_exact_chain(X_sample, units, offsets, n_neighbors, n_jobs))[0]
    exact_sims = -np.sort(-exact[1], axis=1)
    for nprobe in _nprobe_steps(nlist):
        found = dask.compute(
            _ivf_chain(
                X_sample, blob, indexes, units, offsets, n, n_neighbors, nprobe, n_jobs
            )
        )[0]
        reached = _recall_at_k(exact_sims, found[1])
        if reached >= recall:
            return blob, indexes, nprobe, reached
    return None


def unit_blocks(X):
    """Persisted unit rows of each row block of the dask array ``X``, and
    the blocks' offsets (``n + 1`` of them)."""
    import dask

    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}.")
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X has unknown chunk sizes; call X.compute_chunk_sizes() first."
        )
    X = X.rechunk({1: -1})
    offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
    units = [
        dask.delayed(_unit_block)(block, int(offset))
        for block, offset in zip(X.to_delayed().ravel(), offsets[:-1])
    ]
    return list(dask.persist(*units)), offsets


def dask_knn_graph(X, n_neighbors, method="auto", recall=0.95, seed=0, n_jobs=None):
    """The cosine kNN graph of the dask array ``X``, and its recall.

    Returns ``(indices, similarities, recall)``, the first two as dask
    arrays with ``X``'s row chunks; see :func:`~sklearn_ndde.knn_graph`.
    """
    import dask.array as da

    units, offsets = unit_blocks(X)
    n = int(offsets[-1])
    if n_neighbors > n:
        raise ValueError(
            f"n_neighbors={n_neighbors} is larger than the number of samples ({n})."
        )
    threads = 1 if n_jobs is None else n_jobs
    parts, reached = blocked_knn(
        units, offsets, n_neighbors, method, recall, seed, threads
    )
    sizes = np.diff(offsets)
    indices = [
        da.from_delayed(part[0], (int(rows), n_neighbors), np.int32)
        for part, rows in zip(parts, sizes)
    ]
    sims = [
        da.from_delayed(part[1], (int(rows), n_neighbors), np.float32)
        for part, rows in zip(parts, sizes)
    ]
    return da.concatenate(indices), da.concatenate(sims), reached
