"""numba kernels of the O(n k^2) and O(n k) per-pair loops."""

from contextlib import contextmanager

import numba
import numpy as np


@contextmanager
def numba_threads(n_jobs):
    """Run numba's parallel loops on ``n_jobs`` threads (``None``: all).

    Also turns a Ctrl-C into a plain :class:`KeyboardInterrupt`. The
    kernels run without the GIL, so Python notices a SIGINT only when a
    kernel returns, and then reports it as ``SystemError: CPUDispatcher(...)
    returned a result with an exception set`` (the interrupt as its cause);
    callers also run long kernels in slices, so that this comes promptly.
    """
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
    except SystemError as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    finally:
        numba.set_num_threads(previous)


@numba.njit(parallel=True, cache=True, nogil=True)
def mirror_mean(values, indices):
    """Mean of the two entries of each pair listed from both of its ends.

    For a kNN graph ``indices`` of shape (n, k) whose rows are the samples
    themselves, ``out[i, c] = (values[i, c] + values[j, m]) / 2`` where
    ``j = indices[i, c]`` and ``indices[j, m] == i``; ``values[i, c]`` where
    row ``j`` does not list ``i``. O(n k^2) comparisons.
    """
    n, k = indices.shape
    out = values.copy()
    for i in numba.prange(n):
        for c in range(k):
            j = indices[i, c]
            for m in range(k):
                if indices[j, m] == i:
                    out[i, c] = 0.5 * (values[i, c] + values[j, m])
                    break
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def nearest_denser(rank, indices, distances):
    """Column of the closest neighbour ranked above the sample, or -1.

    ``rank`` orders the samples strictly (see ``density_rank``), so the
    links form a forest: every cluster has one root. Ties in distance go to
    the earlier column, as a stable sort would.
    """
    n, k = indices.shape
    out = np.full(n, -1, dtype=np.int64)
    for i in numba.prange(n):
        best = np.inf
        for c in range(k):
            j = indices[i, c]
            if rank[j] > rank[i] and distances[i, c] < best:
                best = distances[i, c]
                out[i] = c
    return out


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def nearest_denser_two_hops(peaks, indices, rank, Xn, n_chunks):
    """For each peak, the sample of highest cosine among those ranked above it
    (``density_rank``) two kNN steps away (neighbours of neighbours), or -1;
    equal cosines go to the smaller id. ``Xn`` holds unit rows. Each of the
    ``n_chunks`` parallel chunks marks the samples it has seen, so that each
    cosine is computed once per peak.
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
                    if rank[j] <= rank[i]:
                        continue
                    c = 0.0
                    for f in range(d):
                        c += Xn[i, f] * Xn[j, f]
                    if c > best_cos or (c == best_cos and j < best):
                        best_cos = c
                        best = j
            out[p] = best
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def interp_uniform(values, lo, step, curve, out):
    """``np.interp(values, grid, curve)`` for the uniform grid ``lo + step *
    arange(curve.size)``, into ``out`` (flat arrays): one pass, in parallel.
    Values beyond the grid take the end values; NaN stays NaN."""
    last = curve.size - 1
    for i in numba.prange(values.size):
        t = (np.float64(values[i]) - lo) / step
        if t != t:
            out[i] = np.nan
        elif t <= 0:
            out[i] = curve[0]
        elif t >= last:
            out[i] = curve[last]
        else:
            j = int(t)
            out[i] = curve[j] + (t - j) * (curve[j + 1] - curve[j])


@numba.njit(parallel=True, cache=True, nogil=True)
def kept_range(indices, values, rows, floor, n_chunks):
    """``(count, min, max)`` of the pairs' ``values`` that a calibration
    keeps: not a row's own sample (``rows``: the sample id of each row),
    and below ``floor`` (pass ``inf`` to keep the near duplicates)."""
    n, k = indices.shape
    counts = np.zeros(n_chunks, dtype=np.int64)
    lows = np.full(n_chunks, np.inf)
    highs = np.full(n_chunks, -np.inf)
    for chunk in numba.prange(n_chunks):
        # Local sums: the chunks' slots share a cache line, and writing
        # them at every pair made the threads fight over it (2.4 s at
        # 584,013 x 80, now 0.04 s).
        count = 0
        low = np.inf
        high = -np.inf
        for i in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            for c in range(k):
                v = values[i, c]
                if indices[i, c] == rows[i] or v >= floor:
                    continue
                count += 1
                low = min(low, v)
                high = max(high, v)
        counts[chunk], lows[chunk], highs[chunk] = count, low, high
    return counts.sum(), lows.min(), highs.max()


@numba.njit(parallel=True, cache=True, nogil=True)
def pair_histograms(indices, values, rows, labels, floor, lo, scale, n_bins, n_chunks):
    """Counts of the kept pairs (as :func:`kept_range`) in ``n_bins`` bins of
    ``(value - lo) * scale`` (float32, truncated, clipped), all of them and
    those whose two samples share a label: one pass, in parallel."""
    n, k = indices.shape
    total = np.zeros((n_chunks, n_bins), dtype=np.int64)
    shared = np.zeros((n_chunks, n_bins), dtype=np.int64)
    for chunk in numba.prange(n_chunks):
        for i in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            own = labels[rows[i]]
            for c in range(k):
                v = values[i, c]
                j = indices[i, c]
                if j == rows[i] or v >= floor:
                    continue
                b = np.int32((v - lo) * scale)
                b = min(max(b, 0), n_bins - 1)
                total[chunk, b] += 1
                if labels[j] == own:
                    shared[chunk, b] += 1
    return total.sum(axis=0), shared.sum(axis=0)


@numba.njit(cache=True, nogil=True)
def split_pair_sums(rows, cols, mass, labels, n_clusters, width):
    """The masses of the pairs ``rows[e] -> cols[e]`` by cluster: summed per
    cluster where both samples share one (float64, in the order of the
    pairs), and listed as ``(a, b, mass)`` where they do not. With
    ``width > 0`` the row of pair ``e`` is ``e // width`` (a CSR matrix
    with ``width`` entries a row) and ``rows`` is not read. One pass to
    count, one to fill, no temporary of the pairs' size."""
    inside = np.zeros(n_clusters)
    n_across = 0
    for e in range(cols.size):
        a = labels[e // width] if width > 0 else labels[rows[e]]
        if a == labels[cols[e]]:
            inside[a] += mass[e]
        else:
            n_across += 1
    a_ids = np.empty(n_across, dtype=labels.dtype)
    b_ids = np.empty(n_across, dtype=labels.dtype)
    across = np.empty(n_across)
    q = 0
    for e in range(cols.size):
        a = labels[e // width] if width > 0 else labels[rows[e]]
        b = labels[cols[e]]
        if a != b:
            a_ids[q] = a
            b_ids[q] = b
            across[q] = mass[e]
            q += 1
    return inside, a_ids, b_ids, across


@numba.njit(cache=True, nogil=True)
def kept_count_range(values, exclude):
    """``(count, min, max)`` of the flat ``values`` where ``exclude`` is
    False (``exclude`` empty: all of them), as float64; ``(0, inf, -inf)``
    when none is kept."""
    count = 0
    lo = np.inf
    hi = -np.inf
    for e in range(values.size):
        if exclude.size and exclude[e]:
            continue
        x = np.float64(values[e])
        count += 1
        lo = min(lo, x)
        hi = max(hi, x)
    return count, lo, hi


@numba.njit(parallel=True, cache=True, nogil=True)
def kept_histogram(values, exclude, lo, hi, edges, n_chunks):
    """``np.histogram(values[~exclude], range=(lo, hi), bins=edges.size - 1)``
    of the flat ``values`` (all in ``[lo, hi]``), with numpy's own bin
    arithmetic (``edges``: its ``np.linspace(lo, hi, bins + 1)``), so the
    counts are the same; no copy of the values."""
    n_bins = edges.size - 1
    counts = np.zeros((n_chunks, n_bins), dtype=np.int64)
    size = (values.size + n_chunks - 1) // n_chunks
    denom = hi - lo
    for chunk in numba.prange(n_chunks):
        for e in range(chunk * size, min(values.size, (chunk + 1) * size)):
            if exclude.size and exclude[e]:
                continue
            x = np.float64(values[e])
            i = int(((x - lo) / denom) * n_bins)
            if i == n_bins:
                i -= 1
            if x < edges[i]:
                i -= 1
            if x >= edges[i + 1] and i != n_bins - 1:
                i += 1
            counts[chunk, i] += 1
    return counts.sum(axis=0)


@numba.njit(parallel=True, cache=True, nogil=True)
def descending_order(values):
    """Per row, the stable order of decreasing ``values``: what
    ``np.argsort(-values, axis=1, kind="stable")`` gives, with a row that
    is already in order (as a kNN graph's mostly are) only checked."""
    n, k = values.shape
    order = np.empty((n, k), dtype=np.int32)
    for i in numba.prange(n):
        ordered = True
        for c in range(k - 1):
            if not values[i, c] >= values[i, c + 1]:
                ordered = False
                break
        if ordered:
            for c in range(k):
                order[i, c] = c
        else:
            order[i] = np.argsort(-values[i], kind="mergesort")
    return order


@numba.njit(cache=True, nogil=True)
def pairs_at_least(indices, values, threshold, offset):
    """``(rows, cols)`` of the entries of the lists ``indices`` (of the rows
    ``offset``, ``offset + 1``, ...) whose ``values`` are at least
    ``threshold``, in row-major order (``np.nonzero``'s)."""
    n, k = indices.shape
    count = 0
    for i in range(n):
        for c in range(k):
            if values[i, c] >= threshold:
                count += 1
    rows = np.empty(count, dtype=np.int64)
    cols = np.empty(count, dtype=indices.dtype)
    q = 0
    for i in range(n):
        for c in range(k):
            if values[i, c] >= threshold:
                rows[q] = offset + i
                cols[q] = indices[i, c]
                q += 1
    return rows, cols


@numba.njit(parallel=True, cache=True, nogil=True)
def first_others(lists, rows, m):
    """The first ``m`` ids of each list other than the row's own sample
    (``rows``), padded with -1."""
    r, k = lists.shape
    out = np.full((r, m), -1, dtype=np.int64)
    for i in numba.prange(r):
        c = 0
        for p in range(k):
            if c == m:
                break
            if lists[i, p] != rows[i]:
                out[i, c] = lists[i, p]
                c += 1
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def mutual_partners(top, rows, local):
    """For each entry of the lists ``top`` (positions in ``rows``), the
    position ``j > i`` of the listed sample when it lists row ``i`` back,
    else -1; ``local`` maps a sample id to its position, -1 for samples not
    in ``rows``. Each mutual pair appears once, from its smaller end."""
    r, m = top.shape
    out = np.full((r, m), -1, dtype=np.int64)
    for i in numba.prange(r):
        for c in range(m):
            if top[i, c] < 0:
                continue
            j = local[top[i, c]]
            if j <= i:
                continue
            for q in range(m):
                if top[j, q] == rows[i]:
                    out[i, c] = j
                    break
    return out


@numba.njit(cache=True, nogil=True)
def propagate_labels(indptr, adjacent, key, n_iter):
    """Label propagation on a graph (CSR ``indptr``, ``adjacent``): every
    node starts with its own label and takes, each round and all at once,
    the label most frequent among itself and its neighbours, ties to the
    label whose first node has the smallest ``key``; at most ``n_iter``
    rounds, fewer once nothing changes. Returns a label per node (a node
    id)."""
    n = indptr.size - 1
    label = np.arange(n)
    new = label.copy()
    for _ in range(n_iter):
        changed = False
        for i in range(n):
            start, stop = indptr[i], indptr[i + 1]
            best = label[i]
            best_count = 0
            for p in range(start - 1, stop):
                candidate = label[i] if p < start else label[adjacent[p]]
                count = 0
                for q in range(start - 1, stop):
                    other = label[i] if q < start else label[adjacent[q]]
                    if other == candidate:
                        count += 1
                if count > best_count or (
                    count == best_count and key[candidate] < key[best]
                ):
                    best = candidate
                    best_count = count
            new[i] = best
            changed |= best != label[i]
        label[:] = new
        if not changed:
            break
    return label


@numba.njit(parallel=True, cache=True, nogil=True)
def inside_counts(top, local, group):
    """For each row of ``top``, how many of its listed samples are rows of
    the same ``group`` (``local``: a sample's position, or -1)."""
    r, m = top.shape
    out = np.zeros(r)
    for i in numba.prange(r):
        for c in range(m):
            if top[i, c] >= 0:
                j = local[top[i, c]]
                if j >= 0 and group[j] == group[i]:
                    out[i] += 1
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def take_rows(values, order):
    """``values[i, order[i, c]]`` at ``[i, c]``: ``np.take_along_axis`` on
    axis 1, without its broadcast index arrays (3-10x faster on a kNN
    graph's (n, k) arrays)."""
    n, k = order.shape
    out = np.empty((n, k), dtype=values.dtype)
    for i in numba.prange(n):
        for c in range(k):
            out[i, c] = values[i, order[i, c]]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def around_density(density, indices):
    """The summed density of each row's listed samples (itself included)."""
    n, k = indices.shape
    out = np.zeros(n)
    for i in numba.prange(n):
        total = 0.0
        for c in range(k):
            total += density[indices[i, c]]
        out[i] = total
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _saturated_rows(indices, similarities, threshold):
    """Rows whose every listed sample but the row's own has a similarity of
    at least ``threshold``, and that list some other sample."""
    n, k = indices.shape
    out = np.zeros(n, dtype=np.bool_)
    for i in numba.prange(n):
        others = 0
        ok = True
        for c in range(k):
            if indices[i, c] == i:
                continue
            others += 1
            if not similarities[i, c] >= threshold:
                ok = False
                break
        out[i] = ok and others > 0
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def shared_counts(a, b, n_ids, n_chunks):
    """For each row, how many ids of ``a[row]`` ``b[row]`` holds too (ids
    distinct within a row and below ``n_ids``; negative ids count as none).

    Each chunk of rows marks the ids of ``a[row]`` with the row's number in
    a scratch array of ``n_ids`` and looks up those of ``b[row]``: k steps a
    row, and no reset between rows."""
    m = a.shape[0]
    out = np.zeros(m, dtype=np.int64)
    size = (m + n_chunks - 1) // n_chunks
    for chunk in numba.prange(n_chunks):
        mark = np.full(n_ids, -1, dtype=np.int64)
        for r in range(chunk * size, min(m, (chunk + 1) * size)):
            for c in range(a.shape[1]):
                if a[r, c] >= 0:
                    mark[a[r, c]] = r
            count = 0
            for c in range(b.shape[1]):
                if b[r, c] >= 0 and mark[b[r, c]] == r:
                    count += 1
            out[r] = count
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def denser_candidates(rows, indices, cosines, rank):
    """For each of ``rows``, the listed sample of highest cosine among those
    that rank above it, ties to the smaller id (-1 and ``-inf`` where none
    does); ``indices``, ``cosines``: the rows' lists."""
    m, k = indices.shape
    candidate = np.full(m, -1, dtype=np.int64)
    best = np.full(m, -np.inf, dtype=np.float32)
    for r in numba.prange(m):
        own = rank[rows[r]]
        found = -1
        top = -np.inf
        for c in range(k):
            j = indices[r, c]
            if rank[j] > own:
                x = cosines[r, c]
                if found < 0 or x > top or (x == top and j < found):
                    found = j
                    top = x
        candidate[r] = found
        best[r] = top
    return candidate, best
