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
def bhattacharyya_pairs(indptr, cols, roots, pairs, n_chunks):
    """``1 - sum_m roots_im * roots_jm`` for every ``j`` in ``pairs[i]``.

    ``indptr, cols, roots`` are the CSR arrays of the element-wise square
    root of a row-stochastic matrix. Row ``i`` is scattered once into a
    dense scratch vector; each of its ``k`` partner rows is then read
    against it, so the cost is O(n k^2) and the memory O(n) per thread.
    """
    n, k = pairs.shape
    out = np.empty((n, k), dtype=roots.dtype)
    step = (n + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        scratch = np.zeros(n, dtype=np.float64)
        for i in range(chunk * step, min(n, (chunk + 1) * step)):
            for p in range(indptr[i], indptr[i + 1]):
                scratch[cols[p]] = roots[p]
            for c in range(k):
                j = pairs[i, c]
                acc = 0.0
                for p in range(indptr[j], indptr[j + 1]):
                    acc += scratch[cols[p]] * roots[p]
                out[i, c] = min(1.0, max(0.0, 1.0 - acc))
            for p in range(indptr[i], indptr[i + 1]):
                scratch[cols[p]] = 0.0
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
