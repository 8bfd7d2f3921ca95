"""The kNN graph of a row-chunked dask array, on the current client.

Exact: each row block is searched against every block with the
single-machine engine (faiss's BLAS path, numpy without it), one block
after the other, keeping only the best ``k`` candidates per row between
steps; different blocks run in parallel on the workers. A task holds one
query block, one data block and ``(rows, 2 k)`` candidates, never an
``(n, k)`` array; each block travels once to each worker that searches it.

IVF: the single-machine index (cells, PQ fast-scan codes) trained on a
sample on the client; every row assigned to its cell on its own worker;
the cells cut into a few groups (``MIN_GROUPS``, one per ``GROUP_ROWS``
rows), each group's rows moved once into one index, so its inverted lists
are whole, as on one machine, rather than split into lists too short for
the fast scan; the queries, in pieces of ``QUERY_ROWS`` rows, searched
group after group, each group's task finding the piece's ``nprobe`` cells,
scanning those it owns and re-ranking its best candidates with the exact
cosine. Every task normalizes the rows it reads: the workers hold the
user's rows and no normalized copy.
"""

import os

import numpy as np

from ._calibration import (
    background_level,
    likely_floor,
    random_pair_cosines,
    row_hashes,
)
from ._knn import (
    _TRAIN_PER_LIST,
    EXACT_MAX_SAMPLES,
    RECALL_SAMPLE,
    _faiss,
    _faiss_threads,
    _ivf_index,
    _ivf_lists,
    _recall_of_likely,
    _sort_rows,
)
from ._recall import DEFAULT_RECALL
from ._validation import _normalize_rows

# The IVF search on blocks (measured at 584,013 faces: NOTES.md, tenth
# session). A query's neighbours crowd into the groups of its nearest cells,
# so each group re-ranks GROUP_CANDIDATES k candidates per query (half the
# single-machine REFINE_FACTOR k; fewer lost recall); hence few groups: at
# least MIN_GROUPS (when there are as many blocks), one per GROUP_ROWS rows.
GROUP_CANDIDATES = 4
MIN_GROUPS = 4
GROUP_ROWS = 1_000_000
# Query rows per search task (their nprobe cells are found in the task; at
# nprobe 1,000 a task of 8,192 rows took 0.37 GB more than it was given).
QUERY_ROWS = 4096


def _nprobe_steps(nlist):
    """The ``nprobe`` values tried, 8 up by factors of 1.5 to a quarter of
    ``nlist`` (past that the exact search is cheaper)."""
    steps = []
    nprobe = 8.0
    while round(nprobe) <= max(1, nlist // 4):
        steps.append(int(round(nprobe)))
        nprobe *= 1.5
    return steps or [1]


def _task_slots():
    """Tasks the current client runs at once (its workers' threads), or
    this machine's cores without a distributed client."""
    try:
        from distributed import default_client

        return max(1, sum(default_client().nthreads().values()))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def _worker_slots():
    """The address of the current client's workers, each once per thread
    (sorted), or None without a distributed client."""
    try:
        from distributed import default_client

        threads = default_client().nthreads()
    except (ImportError, ValueError):
        return None
    return [address for address in sorted(threads) for _ in range(threads[address])]


def _placed(slots, number):
    """An annotation that runs the tasks made inside it on the worker of
    slot ``number`` (round robin), when it is free; nothing without
    ``slots``."""
    import contextlib

    import dask

    if not slots:
        return contextlib.nullcontext()
    return dask.annotate(workers=[slots[number % len(slots)]], allow_other_workers=True)


def _persist(*objects):
    """Persist, and wait until done on a distributed client (so that each
    stage ends before the next starts, and can be timed)."""
    import dask

    objects = dask.persist(*objects)
    try:
        from distributed import default_client, futures_of, wait
    except ImportError:
        return objects
    try:
        default_client()
    except ValueError:  # no distributed client: the local scheduler computed
        return objects
    wait(futures_of(list(objects)))
    return objects


def is_dask_array(X):
    """Whether ``X`` is a dask array, without importing dask."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "chunks")


def _unit(block):
    """Unit rows of one block of ``X`` (the blocks hold the user's rows;
    every task normalizes the blocks it reads, so the workers never keep a
    second, normalized copy of the data)."""
    return _normalize_rows(block, allow_zero=True)


def block_hashes(block):
    """:func:`row_hashes` of a block's unit rows (as the single-machine path
    hashes its unit rows)."""
    return row_hashes(_unit(block))


def _check_block(block, offset):
    """Raise a ValueError naming the global row of the first NaN, infinity
    or zero row of one block."""
    block = np.asarray(block)
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise ValueError(
            f"X contains NaN or infinity (first at row {offset + np.argmax(bad)})."
        )
    zero = ~block.any(axis=1)
    if zero.any():
        raise ValueError(
            f"X has {int(zero.sum())} zero vector(s) in rows {offset} to "
            f"{offset + block.shape[0] - 1} (first at row {offset + np.argmax(zero)}); "
            "the cosine metric is undefined for them."
        )


def _top(ids, sims, k):
    """The ``k`` candidates of largest similarity per row (unordered)."""
    if ids.shape[1] <= k:
        return ids, sims
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return np.take_along_axis(ids, part, 1), np.take_along_axis(sims, part, 1)


def _search_block(Q, Y, offset, n_neighbors, best, n_jobs, raw_query=True):
    """Merge the nearest rows of data block ``Y`` (ids from ``offset``)
    into ``best``, the candidates of query block ``Q`` so far (``Q`` unit
    rows already when not ``raw_query``)."""
    Q = _unit(Q) if raw_query else Q
    Y = _unit(Y)
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


def _self_similarity(Q, raw_query=True):
    """Each row's cosine with itself (1 up to rounding), as the
    single-machine search writes it in the sample's own column."""
    Q = _unit(Q) if raw_query else Q
    return np.einsum("ij,ij->i", Q, Q)


def _finish_block(self_sims, offset, best):
    """Sorted rows of a query block, the sample itself in each (as the
    single-machine search makes them); ``self_sims`` from
    :func:`_self_similarity`, so that the block's rows need not be held
    until its search ends."""
    indices, sims = best
    if (indices < 0).any():
        raise RuntimeError(
            f"The IVF search found fewer than {indices.shape[1]} neighbours for "
            f"{int((indices < 0).any(axis=1).sum())} row(s); use method='exact'."
        )
    rows = offset + np.arange(indices.shape[0])
    missing = ~(indices == rows[:, None]).any(axis=1)
    indices[missing, -1] = rows[missing]
    self_col = indices == rows[:, None]
    sims[self_col] = self_sims
    np.clip(sims, -1.0, 1.0, out=sims)
    indices, sims = _sort_rows(indices, sims, rows)
    return indices.astype(np.int32), sims.astype(np.float32)


def _cells_of(blob, Y, n_jobs):
    """The IVF cell of each row of one block."""
    faiss = _faiss()
    index = faiss.deserialize_index(blob)
    with _faiss_threads(faiss, n_jobs):
        _, cells = index.quantizer.search(_unit(Y), 1)
    return cells[:, 0].astype(np.int32)


def _group_bounds(counts, n_groups):
    """Cut the cells ``0 .. nlist - 1`` into at most ``n_groups`` ranges
    holding about as many rows each (``counts``: rows per cell)."""
    total = np.cumsum(counts)
    cuts = np.searchsorted(total, total[-1] * np.arange(1, n_groups) / n_groups) + 1
    return np.unique(np.concatenate([[0], cuts, [counts.size]]))


def _block_part(Y, cells, offset, lo, hi):
    """The unit rows of one block in the cells ``lo .. hi - 1``, and their
    global ids (one task per block and group, made when the group is)."""
    part = np.flatnonzero((cells >= lo) & (cells < hi))
    return _unit(np.asarray(Y)[part]), offset + part


def _index_bytes(index):
    """Bytes a faiss index holds, for Dask's memory accounting."""
    size = getattr(index, "code_size", 4 * index.d)
    return int(index.ntotal * (size + 8))


def _count_faiss_memory():
    """Let Dask's memory manager count faiss indexes at their size (it sees
    them as a few bytes otherwise, and cannot spill in time)."""
    from dask.sizeof import sizeof

    sizeof.register(_faiss().Index, _index_bytes)


def _fill_group(blob, lo, hi, n_jobs, *parts):
    """One cell group: the trained index holding the rows of the cells
    ``lo .. hi - 1`` (local ids), those unit rows for the exact re-rank,
    and their global ids. The rows are copied once, into one array."""
    faiss = _faiss()
    _count_faiss_memory()
    index = faiss.deserialize_index(blob)
    ids = np.concatenate([part[1] for part in parts]).astype(np.int64)
    rows = np.concatenate([part[0] for part in parts])
    with _faiss_threads(faiss, n_jobs):
        index.add_with_ids(rows, np.arange(rows.shape[0], dtype=np.int64))
    return index, rows, ids, lo, hi


def _group_search(Q, group, nprobe, n_neighbors, n_candidates, best, n_jobs, raw_query):
    """Merge the best rows of one cell group into ``best``: the query rows'
    ``nprobe`` nearest cells are found (the group's quantizer holds every
    cell), those the group owns scanned (whole lists: every row of a cell
    is in one group), and ``n_candidates`` per row re-ranked with the exact
    cosine. The cells are found again in every group's task rather than
    sent along: ``rows x nprobe`` ids are larger than the rows themselves
    at large ``nprobe``."""
    Q = _unit(Q) if raw_query else Q
    faiss = _faiss()
    index, rows, ids, lo, hi = group
    if ids.size == 0:
        empty = np.empty((Q.shape[0], 0))
        return best or (empty.astype(np.int64), empty.astype(np.float32))
    index.nprobe = nprobe
    n_candidates = max(1, min(n_candidates, ids.size))
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    with _faiss_threads(faiss, n_jobs):
        coarse, probes = index.quantizer.search(Q, nprobe)
        probes[(probes < lo) | (probes >= hi)] = -1
        _, local = index.search_preassigned(Q, n_candidates, probes, coarse)
        del coarse, probes
        # The exact cosines of the candidates (-inf where none was found).
        local = np.ascontiguousarray(local, dtype=np.int64)
        sims = np.empty(local.shape, dtype=np.float32)
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(sims),
            faiss.swig_ptr(Q),
            faiss.swig_ptr(rows),
            faiss.swig_ptr(local),
            Q.shape[1],
            Q.shape[0],
            local.shape[1],
        )
    found = np.where(local >= 0, ids[np.maximum(local, 0)], -1)
    if best is not None:
        found = np.concatenate([best[0], found], axis=1)
        sims = np.concatenate([best[1], sims], axis=1)
    return _top(found, sims, n_neighbors)


def _exact_chain(Q, blocks, offsets, n_neighbors, n_jobs, first=None, raw_query=True):
    """Delayed best candidates of query block ``Q`` against every block."""
    import dask

    search = dask.delayed(_search_block, nout=2)
    order = list(range(len(blocks)))
    if first is not None:
        # The query's own block first: its rows hold the sample itself.
        order = [first] + [j for j in order if j != first]
    best = None
    for j in order:
        best = search(
            Q, blocks[j], int(offsets[j]), n_neighbors, best, n_jobs, raw_query
        )
    return best


def _slice(Q, start, stop):
    return Q[start:stop]


def _stack(*bests):
    return tuple(np.concatenate(parts) for parts in zip(*bests))


def _ivf_chain(Q, rows, groups, n_neighbors, nprobe, n_jobs, raw_query=True):
    """Delayed best candidates of the ``rows`` rows of query block ``Q``:
    pieces of ``QUERY_ROWS`` rows, each searched group after group; and
    the rows' delayed self similarities (from the same pieces)."""
    import dask

    search = dask.delayed(_group_search, nout=2)
    n_candidates = GROUP_CANDIDATES * n_neighbors
    pieces, selfs = [], []
    for start in range(0, rows, QUERY_ROWS):
        piece = Q
        if rows > QUERY_ROWS:
            piece = dask.delayed(_slice)(Q, start, min(rows, start + QUERY_ROWS))
        selfs.append(dask.delayed(_self_similarity)(piece, raw_query))
        best = None
        for group in groups:
            best = search(
                piece, group, nprobe, n_neighbors, n_candidates, best, n_jobs, raw_query
            )
        pieces.append(best)
    if len(pieces) == 1:
        return pieces[0], selfs[0]
    return dask.delayed(_stack, nout=2)(*pieces), dask.delayed(np.concatenate)(selfs)


def blocked_knn(blocks, offsets, n_neighbors, method, recall, seed, n_jobs):
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
        plan = _ivf_plan(blocks, offsets, n_neighbors, recall, seed, n_jobs)
    else:
        plan = None
    parts = []
    for i, Q in enumerate(blocks):
        if plan is None:
            best = _exact_chain(Q, blocks, offsets, n_neighbors, n_jobs, first=i)
            selfs = dask.delayed(_self_similarity)(Q)
        else:
            groups, nprobe, reached = plan
            rows = int(offsets[i + 1] - offsets[i])
            best, selfs = _ivf_chain(Q, rows, groups, n_neighbors, nprobe, n_jobs)
        parts.append(finish(selfs, int(offsets[i]), best))
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


def _ivf_plan(blocks, offsets, n_neighbors, recall, seed, n_jobs):
    """Train the IVF index on a sample, fill the cell groups, and widen
    ``nprobe`` until ``recall`` holds on ``RECALL_SAMPLE`` rows; returns
    ``(groups, nprobe, recall_reached)``, or None when more than a
    quarter of the cells would be needed (the exact search is cheaper)."""
    import dask

    faiss = _faiss()
    n = int(offsets[-1])
    rng = np.random.default_rng(seed)
    nlist = _ivf_lists(n)
    train = np.sort(rng.choice(n, size=min(n, _TRAIN_PER_LIST * nlist), replace=False))
    sample = np.sort(rng.choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    X_train = _unit(gather_rows(blocks, offsets, train))
    X_sample = _unit(gather_rows(blocks, offsets, sample))
    d = X_train.shape[1]
    index, ivf = _ivf_index(faiss, d, nlist, seed)
    with _faiss_threads(faiss, None):
        ivf.train(X_train)
    del X_train
    blob = faiss.serialize_index(ivf)
    del index, ivf
    groups = _cell_groups(blob, blocks, offsets, nlist, n_jobs)
    exact = dask.compute(
        _exact_chain(X_sample, blocks, offsets, n_neighbors, n_jobs, raw_query=False)
    )[0]
    exact_sims = -np.sort(-exact[1], axis=1)
    # The likely neighbours, as the single-machine search counts them.
    hashes = np.concatenate(
        dask.compute(*[dask.delayed(block_hashes)(Y) for Y in blocks])
    )
    background = background_level(
        random_pair_cosines(
            hashes, lambda ids: _unit(gather_rows(blocks, offsets, ids))
        ),
        n,
        n_neighbors,
    )
    floor = likely_floor(exact_sims, background)
    for nprobe in _nprobe_steps(nlist):
        found = dask.compute(
            _ivf_chain(
                X_sample,
                X_sample.shape[0],
                groups,
                n_neighbors,
                nprobe,
                n_jobs,
                raw_query=False,
            )[0]
        )[0]
        reached = _recall_of_likely(exact_sims, found[1], floor)
        if reached >= recall:
            return groups, nprobe, reached
    return None


def _cell_groups(blob, blocks, offsets, nlist, n_jobs):
    """Persisted cell groups: each row assigned to its cell on its block's
    worker, the cells cut into ranges of about equal rows (see MIN_GROUPS
    and GROUP_ROWS), and each range's rows, from every block, put in one
    index, so that its inverted lists are as whole as on one machine."""
    import dask

    cells = dask.persist(*[dask.delayed(_cells_of)(blob, Y, n_jobs) for Y in blocks])
    counts = dask.compute(
        *[dask.delayed(np.bincount)(c, minlength=nlist) for c in cells]
    )
    n = int(offsets[-1])
    n_groups = max(min(len(blocks), MIN_GROUPS), -(-n // GROUP_ROWS))
    bounds = _group_bounds(np.sum(counts, axis=0), n_groups)
    # The groups in waves of as many as the cluster runs at once, each
    # group's parts made with it: only the rows of groups being filled are
    # ever held twice.
    part = dask.delayed(_block_part)
    fill = dask.delayed(_fill_group)
    groups = []
    slots = _worker_slots()
    wave = _task_slots()
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    for first in range(0, len(ranges), wave):
        batch = []
        for number in range(first, min(len(ranges), first + wave)):
            lo, hi = ranges[number]
            parts = [
                part(Y, c, int(offset), lo, hi)
                for Y, c, offset in zip(blocks, cells, offsets[:-1])
            ]
            # Groups round robin over the workers' threads: left to the
            # scheduler, two groups were placed on one worker.
            with _placed(slots, number):
                batch.append(fill(blob, lo, hi, n_jobs, *parts))
        groups.extend(_persist(*batch))
    return groups


def checked_blocks(X):
    """The row blocks of the dask array ``X`` (all columns in each), as
    delayed arrays, and their offsets (``n + 1`` of them), after checking
    every block for NaN, infinity and zero rows on the workers."""
    import dask

    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}.")
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X has unknown chunk sizes; call X.compute_chunk_sizes() first."
        )
    X = X.rechunk({1: -1})
    offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
    blocks = X.to_delayed().ravel().tolist()
    dask.compute(
        *[
            dask.delayed(_check_block)(block, int(offset))
            for block, offset in zip(blocks, offsets[:-1])
        ]
    )
    return blocks, offsets


def dask_knn_graph(
    X, n_neighbors, method="auto", recall=DEFAULT_RECALL, seed=0, n_jobs=None
):
    """The cosine kNN graph of the dask array ``X``, and its recall.

    Returns ``(indices, similarities, recall)``, the first two as dask
    arrays with ``X``'s row chunks; see :func:`~sklearn_ndde.knn_graph`.
    """
    import dask.array as da

    blocks, offsets = checked_blocks(X)
    n = int(offsets[-1])
    if n_neighbors > n:
        raise ValueError(
            f"n_neighbors={n_neighbors} is larger than the number of samples ({n})."
        )
    threads = 1 if n_jobs is None else n_jobs
    parts, reached = blocked_knn(
        blocks, offsets, n_neighbors, method, recall, seed, threads
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
