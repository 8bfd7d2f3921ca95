"""TPDi: transition-probability distance between two samples (step 5)."""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.utils._param_validation import validate_params

from ._calibration import LIKELY
from ._kernels import numba_threads
from ._progress import progress
from ._tpdi_kernels import (
    bhattacharyya_pairs,
    relabel_rows,
    renumber_cols,
    roots_in_order,
    tpdi_forward_pairs,
    tpdi_remaining_pairs,
)
from ._transition import row_softmax
from ._validation import N_JOBS_CONSTRAINT, check_transition

# The fewest samples a progress-bar update stands for.
_PROGRESS_STEP = 65536
# Samples per kernel call otherwise: about a quarter of a second at k = 80
# (scaled down by (80 / k)^2 above that).
_INTERRUPT_STEP = 32768
# The fewest samples per kernel call, however large k is.
_MIN_STEP = 256


@validate_params(
    {
        "Q": ["sparse matrix"],
        "indices": ["array-like"],
        "n_jobs": N_JOBS_CONSTRAINT,
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def tpdi(Q, indices, *, n_jobs=None, verbose=False):
    """Transition-probability distance on every kNN pair.

    ``TPDi(i, j) = 1 - sum_m sqrt(q_im * q_jm)``: one minus the Bhattacharyya
    coefficient of the transition rows of ``i`` and ``j``. Two samples are
    close when their neighbourhoods are alike, which holds inside a sparse
    identity as well as inside a dense one.

    Parameters
    ----------
    Q : sparse matrix of shape (n_samples, n_samples)
        Row-stochastic distance transition matrix, as from
        :func:`transition_matrix` with ``sigma=0.05``.
    indices : array-like of shape (n_samples, n_neighbors)
        The pairs to measure: ``(i, indices[i, c])``.
    n_jobs : int, default=None
        Threads (``None`` means all). Time O(n k^2), memory O(nk).
    verbose : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    distances : ndarray of shape (n_samples, n_neighbors)
        In [0, 1], aligned with ``indices``; 0 for identical rows, symmetric
        in ``(i, j)`` up to rounding. float32 when ``Q`` is float32, else
        float64.

    References
    ----------
    Y. Chen et al., "On Mitigating Hard Clusters for Face Clustering",
    ECCV 2022, Section 3.3.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sklearn_ndde import tpdi
    >>> Q = sp.csr_matrix(np.array([[0.5, 0.5, 0.0],
    ...                             [0.5, 0.5, 0.0],
    ...                             [0.0, 0.0, 1.0]]))
    >>> tpdi(Q, np.array([[0, 1], [1, 0], [2, 1]]))
    array([[0., 0.],
           [0., 0.],
           [0., 1.]])
    """
    Q = check_transition(Q, name="Q")
    indices = np.asarray(indices)
    n = Q.shape[0]
    if indices.ndim != 2 or indices.shape[0] != n:
        raise ValueError(
            f"indices must have shape (n_samples={n}, n_neighbors), got "
            f"{indices.shape}."
        )
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {indices.dtype}.")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"indices must lie in [0, {n - 1}].")
    dtype = np.float32 if Q.dtype == np.float32 else np.float64
    index_dtype = np.int64 if n >= 2**31 - 1 else np.int32
    indptr = Q.indptr.astype(np.int64, copy=False)
    cols = Q.indices.astype(index_dtype, copy=False)
    pairs = indices.astype(index_dtype, copy=False)
    order = locality_order(indices)
    k = indices.shape[1]
    step = _kernel_step(n, k, verbose)
    if k > 0 and _rows_are_pairs(indptr, cols, pairs):
        # Q built from these same pairs, as the estimator builds it.
        return _tpdi_of_own_pairs(
            cols, Q.data.astype(dtype, copy=False), order, k, n_jobs, verbose, step
        )
    roots = np.sqrt(Q.data.astype(dtype, copy=False))
    out = np.empty(indices.shape, dtype=dtype)
    with (
        numba_threads(n_jobs) as threads,
        progress("TPDi", n, verbose, unit="sample") as bar,
    ):
        for start in range(0, n, step):
            rows = order[start : start + step]
            bhattacharyya_pairs(
                indptr,
                cols,
                roots,
                pairs,
                rows,
                max(1, min(rows.size, 4 * threads)),
                indptr,
                cols,
                roots,
                n,
                out,
            )
            bar.update(rows.size)
    return out


def _kernel_step(n, k, verbose):
    """Samples per kernel call: slices of the visiting order, so that a
    progress bar can move and a Ctrl-C is noticed within a slice (a
    fraction of a second); a sample costs k^2 steps, so the slices shrink
    as k grows."""
    step = max(_PROGRESS_STEP, -(-n // 100)) if verbose else _INTERRUPT_STEP
    return max(_MIN_STEP, int(step * min(1.0, (80 / max(k, 1)) ** 2)))


def _rows_are_pairs(indptr, cols, pairs):
    """Whether row ``i`` of the CSR arrays lists exactly ``pairs[i]``."""
    n, k = pairs.shape
    return np.array_equal(indptr, np.arange(0, n * k + 1, k)) and np.array_equal(
        cols, pairs.ravel()
    )


def tpdi_of_sorted_graph(indices, similarities, sigma, *, n_jobs=None, verbose=False):
    """``tpdi(transition_matrix(indices, similarities, sigma=sigma),
    indices)`` for rows already by decreasing similarity (as the estimator
    keeps them), with one (n, k) array fewer: the transition rows are made
    here and turned into their square roots in place."""
    indices = np.asarray(indices)
    k = indices.shape[1]
    order = locality_order(indices, similarities=similarities)
    probabilities = row_softmax(similarities, sigma)
    roots_in_order(probabilities, order)
    cols, out = renumber_cols(indices.ravel(), order, k, probabilities)
    return _own_pairs(cols, probabilities.ravel(), order, out, n_jobs, verbose)


def _tpdi_of_own_pairs(cols, probabilities, order, k, n_jobs, verbose, step):
    """TPDi when row ``i`` of Q lists exactly the pairs of ``i``.

    The rows are renumbered in ``order`` first, so that a sample's
    neighbours have nearby ids and rows (``relabel_rows``); each mutual
    pair is computed once (``tpdi_forward_pairs``), the other pairs after
    (``tpdi_remaining_pairs``). About 30 % faster than the general path on
    a face kNN graph, where 70 % of the pairs are mutual
    (``benchmarks/speed_after_knn.py``; ``NOTES.md``).
    """
    cols, roots, out = relabel_rows(cols, probabilities, order, k)
    return _own_pairs(cols, roots, order, out, n_jobs, verbose, step)


def _own_pairs(cols, roots, order, out, n_jobs, verbose, step=None):
    """The TPDi kernels over rows renumbered in ``order`` (see
    :func:`_tpdi_of_own_pairs`), into ``out``."""
    n, k = out.shape
    step = _kernel_step(n, k, verbose) if step is None else step
    with (
        numba_threads(n_jobs) as threads,
        progress("TPDi", 2 * n, verbose, unit="sample") as bar,
    ):
        for kernel in (tpdi_forward_pairs, tpdi_remaining_pairs):
            for start in range(0, n, step):
                stop = min(n, start + step)
                n_chunks = max(1, min(stop - start, 4 * threads))
                kernel(cols, roots, order, start, stop, n_chunks, out)
                bar.update(stop - start)
    return out


def locality_order(indices, n_columns=4, similarities=None, floor=LIKELY):
    """A visiting order of the samples that keeps neighbourhoods together.

    Samples are grouped by the connected components of the graph of their
    first ``n_columns`` neighbours (for a kNN graph: the sample itself and
    its three nearest neighbours), which mostly follow identities. With
    ``similarities``, only the pairs whose similarity is at least
    ``floor`` link: on a large graph each pair of two people among the first
    neighbours joins two groups (at 5,206,761 synthetic faces, one sample
    in 122 has another person among its first three, and the groups made
    one of 3.3 million samples; with the floor, one in 526 and at most
    3,999 samples a group; TPDi's kernels 72 s -> 27 s). TPDi
    visits samples in this order, so the transition rows it reads for one
    sample are still in cache for the next, which matters when samples are
    stored in no particular order (``benchmarks/speed_after_knn.py --layout
    shuffled`` or ``faces``; the comparison with the plain order is in
    ``NOTES.md``). The results do not depend on the order.

    Parameters
    ----------
    indices : ndarray of shape (n_samples, n_neighbors)
        Neighbour ids in [0, n_samples), nearest first.
    n_columns : int, default=4
        How many leading columns of ``indices`` define the grouping graph.
    similarities : ndarray of shape (n_samples, n_neighbors), default=None
        The pairs' similarities, aligned with ``indices``.
    floor : float, default=0.5
        With ``similarities``: the least similarity of a linking pair.

    Returns
    -------
    order : ndarray of shape (n_samples,), dtype int64
        A permutation of ``range(n_samples)``; ties keep the input order.
    """
    n = indices.shape[0]
    width = min(n_columns, indices.shape[1])
    if n == 0 or width == 0:
        return np.arange(n, dtype=np.int64)
    heads = np.repeat(np.arange(n), width)
    tails = np.asarray(indices)[:, :width].ravel()
    if similarities is not None:
        linked = (np.asarray(similarities)[:, :width] >= floor).ravel()
        heads, tails = heads[linked], tails[linked]
    # Built from new arrays: the caller's ``indices`` are never touched.
    graph = sp.csr_matrix(
        (np.ones(heads.size, dtype=np.int8), (heads, tails)), shape=(n, n)
    )
    _, component = connected_components(graph, directed=True, connection="weak")
    return np.argsort(component, kind="stable").astype(np.int64, copy=False)
