"""numba kernels of the O(n k^2) and O(n k) per-pair loops."""

from contextlib import contextmanager

import numba
import numpy as np


@contextmanager
def numba_threads(n_jobs):
    """Run numba's parallel loops on ``n_jobs`` threads (``None``: all)."""
    previous = numba.get_num_threads()
    if n_jobs is None or n_jobs == -1:
        wanted = numba.config.NUMBA_NUM_THREADS
    elif n_jobs < 0:
        wanted = max(1, numba.config.NUMBA_NUM_THREADS + 1 + n_jobs)
    else:
        wanted = min(n_jobs, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(previous)


@numba.njit(parallel=True, cache=True, nogil=True)
def bhattacharyya_pairs(
    a_indptr,
    a_cols,
    a_roots,
    pairs,
    order,
    n_chunks,
    b_indptr,
    b_cols,
    b_roots,
    n_cols,
    out,
):
    """``1 - sum_m a_im * b_jm`` for every ``j`` in ``pairs[i]``.

    ``a`` and ``b`` are the CSR arrays of the element-wise square roots of
    two row-stochastic matrices with ``n_cols`` columns (the same matrix for
    TPDi). Row ``i`` of ``a`` is scattered once into a dense scratch vector;
    each of its partner rows of ``b`` is then read against it, so the cost
    is O(n k^2) and the memory O(n_cols) per thread. Rows of ``a`` are
    visited in the sequence ``order`` (a permutation of its rows), split
    into ``n_chunks`` contiguous runs: when consecutive rows share partners,
    the partner rows of ``b`` are still in cache. Only the rows in ``order``
    are computed, into the same rows of ``out``, which is returned.
    """
    k = pairs.shape[1]
    n = order.size
    step = (n + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        scratch = np.zeros(n_cols, dtype=a_roots.dtype)
        for position in range(chunk * step, min(n, (chunk + 1) * step)):
            i = order[position]
            for p in range(a_indptr[i], a_indptr[i + 1]):
                scratch[a_cols[p]] = a_roots[p]
            for c in range(k):
                j = pairs[i, c]
                acc = 0.0
                for p in range(b_indptr[j], b_indptr[j + 1]):
                    acc += scratch[b_cols[p]] * b_roots[p]
                out[i, c] = min(1.0, max(0.0, 1.0 - acc))
            for p in range(a_indptr[i], a_indptr[i + 1]):
                scratch[a_cols[p]] = 0.0
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def nearest_denser(density, indices, distances):
    """Column of the closest neighbour with density >= own, or -1.

    Ties in distance go to the earlier column, as a stable sort would.
    """
    n, k = indices.shape
    out = np.full(n, -1, dtype=np.int64)
    for i in numba.prange(n):
        best = np.inf
        for c in range(k):
            j = indices[i, c]
            if j != i and density[j] >= density[i] and distances[i, c] < best:
                best = distances[i, c]
                out[i] = c
    return out


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def nearest_denser_two_hops(peaks, indices, density, Xn, n_chunks):
    """For each peak, the sample of highest cosine among the denser ones two
    kNN steps away (neighbours of neighbours), or -1; equal cosines go to the
    smaller id. ``Xn`` holds unit rows. Each of the ``n_chunks`` parallel
    chunks marks the samples it has seen, so that each cosine is computed
    once per peak.
    """
    n, k = indices.shape
    d = Xn.shape[1]
    out = np.full(peaks.size, -1, dtype=np.int64)
    size = (peaks.size + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        seen = np.full(n, -1, dtype=np.int32)
        for p in range(chunk * size, min(peaks.size, (chunk + 1) * size)):
            i = peaks[p]
            best = -1
            best_cos = -np.inf
            for a in range(k):
                m = indices[i, a]
                for b in range(k):
                    j = indices[m, b]
                    if seen[j] == p:
                        continue
                    seen[j] = p
                    if density[j] <= density[i]:
                        continue
                    c = 0.0
                    for f in range(d):
                        c += Xn[i, f] * Xn[j, f]
                    if c > best_cos or (c == best_cos and j < best):
                        best_cos = c
                        best = j
            out[p] = best
    return out
