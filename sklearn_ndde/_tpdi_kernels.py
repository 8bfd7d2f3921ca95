"""The TPDi kernels: the Bhattacharyya coefficient of pairs of transition
rows, on rows renumbered so that neighbourhoods sit together in memory."""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


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
    are computed, into the same rows of ``out``, which is returned; a
    partner ``-1`` is skipped (its entry of ``out`` is left as it is).
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
                if j < 0:  # a partner not in ``b`` (the Dask path's pieces)
                    continue
                acc = 0.0
                for p in range(b_indptr[j], b_indptr[j + 1]):
                    acc += scratch[b_cols[p]] * b_roots[p]
                out[i, c] = min(1.0, max(0.0, 1.0 - acc))
            for p in range(a_indptr[i], a_indptr[i + 1]):
                scratch[a_cols[p]] = 0.0
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def relabel_rows(cols, probabilities, order, k):
    """Renumbered rows of a transition matrix with ``k`` entries per row.

    Row ``r`` of the result is row ``order[r]`` of the input, with every
    column id ``m`` replaced by its position in ``order`` and every
    probability by its square root. Samples that ``order`` keeps together
    then have nearby ids and rows, which the TPDi kernels read far faster.
    Also returns the (n, k) output of the TPDi kernels, filled with -1.
    """
    new_cols, out = renumber_cols(cols, order, k, probabilities)
    roots = np.empty_like(probabilities)
    for r in numba.prange(order.size):
        source = order[r] * k
        for c in range(k):
            roots[r * k + c] = np.sqrt(probabilities[source + c])
    return new_cols, roots, out


@numba.njit(parallel=True, cache=True, nogil=True)
def renumber_cols(cols, order, k, like):
    """The column ids of :func:`relabel_rows` (a new array), and the TPDi
    output filled with -1 (of the dtype of ``like``)."""
    n = order.size
    new_id = np.empty(n, dtype=cols.dtype)
    for r in numba.prange(n):
        new_id[order[r]] = r
    new_cols = np.empty_like(cols)
    out = np.empty((n, k), dtype=like.dtype)
    for r in numba.prange(n):
        source = order[r] * k
        for c in range(k):
            new_cols[r * k + c] = new_id[cols[source + c]]
            out[r, c] = -1.0
    return new_cols, out


@numba.njit(cache=True, nogil=True)
def roots_in_order(probabilities, order):
    """The square roots of :func:`relabel_rows`, made in place: row ``r``
    of the (n, k) ``probabilities`` becomes the roots of its row
    ``order[r]`` (each cycle of the permutation followed with one row
    aside), so that no second (n, k) array is needed."""
    n, k = probabilities.shape
    for r in range(n):
        for c in range(k):
            probabilities[r, c] = np.sqrt(probabilities[r, c])
    done = np.zeros(n, dtype=np.bool_)
    aside = np.empty(k, dtype=probabilities.dtype)
    for start in range(n):
        if done[start]:
            continue
        aside[:] = probabilities[start]
        r = start
        while True:
            done[r] = True
            source = order[r]
            if source == start:
                probabilities[r] = aside
                break
            probabilities[r] = probabilities[source]
            r = source


@numba.njit(parallel=True, cache=True, nogil=True)
def tpdi_forward_pairs(cols, roots, order, start, stop, n_chunks, out):
    """TPDi of the pairs ``(r, j)`` with ``j >= r`` of renumbered rows
    ``start:stop``, also written to the mirror entry when row ``j`` lists
    ``r`` (TPDi is symmetric: a mutual pair is computed once).

    ``cols`` and ``roots`` hold ``k = out.shape[1]`` entries per row, as
    :func:`relabel_rows` makes them: the renumbered partners of each sample
    and the square roots of its transition probabilities. Entry ``c`` of
    renumbered row ``r`` is stored at ``out[order[r], c]``.
    """
    k = out.shape[1]
    size = (stop - start + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        scratch = np.zeros(out.shape[0], dtype=roots.dtype)
        for r in range(start + chunk * size, min(stop, start + (chunk + 1) * size)):
            row = r * k
            for p in range(row, row + k):
                scratch[cols[p]] = roots[p]
            for c in range(k):
                j = cols[row + c]
                if j < r:
                    continue
                acc = 0.0
                mirror = -1
                for p in range(j * k, j * k + k):
                    m = cols[p]
                    acc += scratch[m] * roots[p]
                    if m == r:
                        mirror = p - j * k
                value = min(1.0, max(0.0, 1.0 - acc))
                out[order[r], c] = value
                if mirror >= 0:
                    out[order[j], mirror] = value
            for p in range(row, row + k):
                scratch[cols[p]] = 0.0
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def tpdi_remaining_pairs(cols, roots, order, start, stop, n_chunks, out):
    """TPDi of the entries of renumbered rows ``start:stop`` that
    :func:`tpdi_forward_pairs` left negative (pairs ``(r, j)`` with
    ``j < r`` that row ``j`` does not list).

    These partners mostly lie in other identities, far away in memory: the
    rows of the next few are prefetched while one is computed.
    """
    k = out.shape[1]
    size = (stop - start + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        scratch = np.zeros(out.shape[0], dtype=roots.dtype)
        pending = np.empty(k, dtype=np.int64)
        for r in range(start + chunk * size, min(stop, start + (chunk + 1) * size)):
            i = order[r]
            row = r * k
            n_pending = 0
            for c in range(k):
                if out[i, c] < 0.0:
                    pending[n_pending] = c
                    n_pending += 1
            if n_pending == 0:
                continue
            for q in range(min(_PREFETCH_AHEAD, n_pending)):
                _prefetch_row(cols, roots, cols[row + pending[q]] * k, k)
            for p in range(row, row + k):
                scratch[cols[p]] = roots[p]
            for q in range(n_pending):
                if q + _PREFETCH_AHEAD < n_pending:
                    ahead = cols[row + pending[q + _PREFETCH_AHEAD]]
                    _prefetch_row(cols, roots, ahead * k, k)
                c = pending[q]
                j = cols[row + c]
                acc = 0.0
                for p in range(j * k, j * k + k):
                    acc += scratch[cols[p]] * roots[p]
                out[i, c] = min(1.0, max(0.0, 1.0 - acc))
            for p in range(row, row + k):
                scratch[cols[p]] = 0.0
    return out


_PREFETCH_AHEAD = 6


@numba.njit(inline="always")
def _prefetch_row(cols, roots, start, k):
    """Ask the CPU to start loading ``cols`` and ``roots[start:start + k]``."""
    for offset in range(0, k, 16):
        _prefetch(cols, start + offset)
        _prefetch(roots, start + offset)


@intrinsic
def _prefetch(typingctx, array, index):
    """LLVM's prefetch hint (read, keep in all cache levels) for
    ``array[index]``; no effect on results, and none where the CPU has no
    such instruction."""
    signature = types.void(array, index)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        position = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, data, [position], wraparound=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]),
            "llvm.prefetch.p0",
        )
        builder.call(
            function,
            [builder.bitcast(pointer, byte_pointer), int32(0), int32(3), int32(1)],
        )
        return context.get_dummy_value()

    return signature, codegen
