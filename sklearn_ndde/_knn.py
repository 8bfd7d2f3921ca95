"""k-nearest-neighbour graphs under the cosine metric."""

import os
from contextlib import contextmanager

import numpy as np
from sklearn.utils import check_random_state

from ._knn_kernels import merge_found, rerank
from ._knn_refine import _rows_to_widen, _sort_rows, _timed, refine_graph
from ._knn_torch import _cuda_device, _exact_knn_torch
from ._memory import (
    _DIMS_PER_CODE,
    _EXACT_BLOCK_ELEMENTS,
    _IVF_BLOCK_ROWS,
    check_memory,
    ivf_sub_vectors,
    knn_bytes,
)
from ._progress import log, progress
from ._recall import _likely_cosine, _recall_at_k, _recall_of_likely
from ._validation import _normalize_rows

#: Above this many samples, ``method="auto"`` switches to the IVF search.
EXACT_MAX_SAMPLES = 30_000

#: Queries whose exact neighbours measure an approximate search's recall.
RECALL_SAMPLE = 1000

#: Candidates per neighbour that the Dask path's one-pass IVF search
#: re-ranks exactly.
REFINE_FACTOR = 8

# The single-machine IVF search's first pass: about 4 sqrt(n) cells, 8 of
# them probed per row, 2 candidates per neighbour re-ranked exactly; the
# refinement then finds what it missed (``NOTES.md``, nineteenth session).
_FIRST_PASS_ROOT = 4
_FIRST_NPROBE = 8
_FIRST_PASS_REFINE = 2
# The second pass: the _WIDE_SHARE of the rows least close to their cell's
# centroid, in _far_cells(nlist) cells, _WIDE_REFINE candidates per
# neighbour re-ranked (and so the widenings; 8 at 584K: 4 s slower).
_WIDE_SHARE = 0.08
_WIDE_ROOT = 2.77
_WIDE_REFINE = 4

# k-means iterations of the IVF cells (faiss's default is 10): what poorer
# cells miss is found again by the refinement (584,013 faces, the earlier
# two-pass search: training 27 s -> 11 s, BCubed F 1.0000 both).
_KMEANS_ITERATIONS = 5

# Training rows per IVF cell (faiss asks 39 and warns below; 20 measured
# the same recall at half the k-means time).
_TRAIN_PER_LIST = 20
#: Below this many samples the IVF search runs exactly instead: its
#: 4-bit codes need 16 x 39 training rows, and the exact search is as fast.
_IVF_MIN_SAMPLES = 1000

# Queries per faiss call (its buffers are tiles of fixed size).
_FAISS_QUERY_BLOCK = 16384


def _faiss():
    """The faiss module, or None where it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _exact_knn(Xn, n_neighbors, rows=None, verbose=False, n_jobs=None):
    """Exact search of the rows ``rows`` of ``Xn`` against all of it.

    Through faiss's BLAS path when faiss is installed (about 3x faster than
    the numpy blocks on 2 cores, ``benchmarks/knn_exact_speed.py``), else in
    numpy blocks. Either way the sample itself is in the result, even
    among more than ``n_neighbors`` exact duplicates.
    """
    faiss = _faiss()
    if faiss is not None:
        return _exact_knn_faiss(faiss, Xn, n_neighbors, rows, verbose, n_jobs)
    return _exact_knn_numpy(Xn, n_neighbors, rows, verbose)


@contextmanager
def _faiss_threads(faiss, n_jobs):
    """faiss's OpenMP threads set from ``n_jobs`` (None: as they are; no
    faiss: nothing to set)."""
    if faiss is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    if n_jobs is not None:
        wanted = n_jobs if n_jobs > 0 else (os.cpu_count() or 1) + 1 + n_jobs
        faiss.omp_set_num_threads(max(1, wanted))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _exact_knn_faiss(faiss, Xn, n_neighbors, rows, verbose, n_jobs):
    n = Xn.shape[0]
    rows = np.arange(n) if rows is None else rows
    Xn = np.ascontiguousarray(Xn, dtype=np.float32)
    indices = np.empty((rows.size, n_neighbors), dtype=np.int32)
    sims = np.empty((rows.size, n_neighbors), dtype=np.float32)
    # faiss works in its own fixed-size tiles, so large query blocks cost no
    # memory beyond their (block, k) results, and small ones are slow: 1,000
    # queries against 584,013 rows took 11.2 s in blocks of 114, 1.4 s at once.
    block = _FAISS_QUERY_BLOCK
    bar = progress("kNN (exact)", rows.size, verbose, unit="sample")
    with _faiss_threads(faiss, n_jobs), bar:
        for start in range(0, rows.size, block):
            sel = rows[start : start + block]
            found_sims, found = faiss.knn(
                Xn[sel], Xn, n_neighbors, metric=faiss.METRIC_INNER_PRODUCT
            )
            indices[start : start + sel.size] = found
            sims[start : start + sel.size] = found_sims
            bar.update(sel.size)
    # The sample itself belongs in its list; with more exact duplicates than
    # n_neighbors faiss may have returned only its copies.
    missing = np.flatnonzero(~(indices == rows[:, None]).any(axis=1))
    indices[missing, -1] = rows[missing]
    self_col = indices == rows[:, None]
    sims[self_col] = np.einsum("ij,ij->i", Xn[rows], Xn[rows])
    return indices, sims


def exact_knn_to(Xq, Y, n_neighbors, n_jobs=None):
    """The ``n_neighbors`` rows of unit ``Y`` nearest each unit row of ``Xq``.

    Returns their ids, nearest first (equal cosines by id), for
    ``NDDeTPDiClustering.predict``; faiss's BLAS path when installed.
    """
    faiss = _faiss()
    Xq = np.ascontiguousarray(Xq, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    indices = np.empty((Xq.shape[0], n_neighbors), dtype=np.int32)
    if faiss is not None:
        block = _FAISS_QUERY_BLOCK
    else:
        block = max(1, _EXACT_BLOCK_ELEMENTS // Y.shape[0])
    with _faiss_threads(faiss, n_jobs):
        for start in range(0, Xq.shape[0], block):
            part = Xq[start : start + block]
            if faiss is not None:
                vals, found = faiss.knn(
                    part, Y, n_neighbors, metric=faiss.METRIC_INNER_PRODUCT
                )
            else:
                S = part @ Y.T
                found = np.argpartition(-S, n_neighbors - 1, axis=1)[:, :n_neighbors]
                vals = np.take_along_axis(S, found, axis=1)
            order = np.lexsort((found, -vals), axis=-1)
            indices[start : start + part.shape[0]] = np.take_along_axis(found, order, 1)
    return indices


def _exact_knn_numpy(Xn, n_neighbors, rows=None, verbose=False):
    """Blocked exact search in numpy (the fallback without faiss)."""
    n = Xn.shape[0]
    rows = np.arange(n) if rows is None else rows
    block = max(1, _EXACT_BLOCK_ELEMENTS // n)
    indices = np.empty((rows.size, n_neighbors), dtype=np.int32)
    sims = np.empty((rows.size, n_neighbors), dtype=np.float32)
    bar = progress("kNN (exact)", rows.size, verbose, unit="sample")
    for start in range(0, rows.size, block):
        sel = rows[start : start + block]
        S = Xn[sel] @ Xn.T
        # The point itself always takes rank 0, even against exact duplicates.
        S[np.arange(sel.size), sel] = np.inf
        part = np.argpartition(-S, n_neighbors - 1, axis=1)[:, :n_neighbors]
        vals = np.take_along_axis(S, part, axis=1)
        indices[start : start + sel.size] = part
        sims[start : start + sel.size] = vals
        bar.update(sel.size)
    bar.close()
    self_col = indices == rows[:, None]
    sims[self_col] = np.einsum("ij,ij->i", Xn[rows], Xn[rows])
    return indices, sims


def _search_method(n, method, device):
    """The search ``method`` means for ``n`` samples, and the torch device
    of an exact search (None: the CPU); the estimator's memory estimate and
    :func:`knn_graph` both ask here."""
    # Up to EXACT_MAX_SAMPLES the CPU search takes about a second: "auto"
    # does not pay torch's import (1.6 s) to look for a GPU there.
    small = n <= EXACT_MAX_SAMPLES
    torch_device = None if device == "auto" and small else _cuda_device(device)
    if method == "auto":
        if small or torch_device is not None:
            method = "exact"
        elif _faiss() is not None:
            # At 1,740,301 synthetic faces ``fit`` took 310 s with the IVF
            # search, 1,068 s with pynndescent's (``NOTES.md``).
            method = "ivf"
        else:
            method = "pynndescent"
    return method, torch_device


def _recall_sample(Xn, n_neighbors, rng, n_jobs):
    """``RECALL_SAMPLE`` rows drawn with ``rng`` and their exact cosines."""
    n = Xn.shape[0]
    sample = np.sort(rng.choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    return sample, _exact_knn(Xn, n_neighbors, sample, n_jobs=n_jobs)[1]


def _cells_of_rows(faiss, ivf, n):
    """``(order, cells)`` of a filled IVF index of ``n`` rows: the row ids
    cell after cell, and each row's cell."""
    lists = ivf.invlists
    ids, sizes = [], np.zeros(ivf.nlist, dtype=np.int64)
    for c in range(ivf.nlist):
        sizes[c] = lists.list_size(c)
        if sizes[c]:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(c), int(sizes[c])).copy())
    order = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
    cells = np.empty(n, dtype=np.int64)
    cells[order] = np.repeat(np.arange(ivf.nlist), sizes)
    return order, cells


def _add_assigned(faiss, index, ivf, Xn, block=65536):
    """Fill the trained fast-scan ``index`` with the rows ``Xn``, each row
    compared with the cells' centres once: returns the filled index, its
    IVF part and ``(sims, cells)``, each row's ``ivf.nprobe`` nearest cells
    (nearest first), which the first pass searches without comparing again
    (``search_preassigned``). faiss's own ``add`` and ``search`` would each
    compare every row with every centre: n x nlist x d, which grows as
    n^1.5. An index that is not fast-scan (odd ``d``) is filled by
    ``add`` and its rows compared again. The rows are coded by an
    ``IndexIVFPQ`` sharing the index's centres and codebooks (its
    ``add_core`` takes the assignment) and converted to fast-scan."""
    n = Xn.shape[0]
    nprobe = ivf.nprobe
    sims = np.empty((n, nprobe), dtype=np.float32)
    cells = np.empty((n, nprobe), dtype=np.int64)
    fast = faiss.downcast_index(index)
    coder = None
    if isinstance(fast, faiss.IndexIVFPQFastScan):
        coder = faiss.IndexIVFPQ(
            ivf.quantizer, fast.d, fast.nlist, fast.pq.M, 4, fast.metric_type
        )
        coder.pq, coder.by_residual = fast.pq, fast.by_residual
        coder.is_trained = True
    for start in range(0, n, block):
        rows = slice(start, start + block)
        part = np.ascontiguousarray(Xn[rows])
        sims[rows], cells[rows] = ivf.quantizer.search(part, nprobe)
        if coder is not None:
            assign = np.ascontiguousarray(cells[rows, 0])
            coder.add_core(
                part.shape[0], faiss.swig_ptr(part), None, faiss.swig_ptr(assign)
            )
    if coder is None:
        index.add(Xn)
        return index, ivf, (sims, cells)
    filled = faiss.IndexIVFPQFastScan(coder)
    filled.nprobe = nprobe
    # The centres stay owned by the trained index, which must outlive this.
    filled.referenced_objects = [index]
    return filled, filled, (sims, cells)


def _ivf_lists(n_samples, per_root=8):
    """Cells of an IVF search for ``n_samples``: about ``per_root sqrt(n)``.

    The Dask path's one-pass search uses 8 (cells of about ``sqrt(n) / 8``
    samples, many scanned per query: at 200,000 synthetic 256-d faces,
    nlist 4,000 reached recall 0.966 in a third of the time nlist 1,788
    needed for 0.962); the single-machine search, whose refinement finds
    what the cells miss, uses 4 (:data:`_FIRST_PASS_ROOT`). At least
    ``_TRAIN_PER_LIST`` training samples per cell.
    """
    return int(max(1, min(per_root * np.sqrt(n_samples), n_samples // _TRAIN_PER_LIST)))


def _far_cells(nlist):
    """Far pass cells: _WIDE_ROOT sqrt(nlist), within [2 _FIRST_NPROBE, nlist]."""
    return min(nlist, max(2 * _FIRST_NPROBE, round(_WIDE_ROOT * np.sqrt(nlist))))


def _ivf_index(faiss, d, nlist, seed, k_factor=REFINE_FACTOR, dims_per_code=2):
    """The untrained IVF index: PQ fast-scan codes with an exact re-rank.

    Each row is coded on ``d / dims_per_code`` sub-vectors of 4 bits,
    scanned with SIMD lookups; the ``k_factor * k`` best candidates of a
    query are then re-ranked with the exact cosine, so the cosines returned
    are exact (``k_factor`` None: no re-rank, and no copy of the rows; the
    caller re-ranks with :func:`rerank`). At 584,013 synthetic 256-d faces
    4 bits per 2 dimensions reached recall 0.955 at about half the time of
    IVF-Flat's 0.957 (``benchmarks/knn_ivf.py``). A ``d`` that
    ``dims_per_code`` does not divide is coded on ``d / 2`` sub-vectors; an
    odd ``d`` falls back to IVF-Flat.
    """
    metric = faiss.METRIC_INNER_PRODUCT
    cells = f"IVF{nlist}"
    codes = ivf_sub_vectors(d, dims_per_code)
    if d % 2 == 0 and k_factor is None:
        index = faiss.index_factory(d, f"{cells},PQ{codes}x4fs", metric)
        ivf = faiss.extract_index_ivf(index)
    elif d % 2 == 0:
        index = faiss.index_factory(d, f"{cells},PQ{codes}x4fs,RFlat", metric)
        index.k_factor = k_factor
        ivf = faiss.extract_index_ivf(index)
    else:
        index = faiss.index_factory(d, f"{cells},Flat", metric)
        ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = int(seed)
    ivf.cp.spherical = True
    ivf.cp.min_points_per_centroid = _TRAIN_PER_LIST
    return index, ivf


def _ivf_knn(Xn, n_neighbors, recall, seed, n_jobs, verbose):
    """IVF search in two passes, then a neighbour-descent refinement,
    widened until a recall target holds.

    The cells are a spherical k-means of a sample of the rows. Every row
    is searched in the ``_FIRST_NPROBE`` cells nearest it, its candidates
    re-ranked exactly (``_FIRST_PASS_REFINE`` per neighbour); the
    ``_WIDE_SHARE`` of the rows least close to the centroid of their cell
    (those of people spread over many cells) are searched again in
    :func:`_far_cells` cells, which finds the pairs between the parts
    of a person that the cells split apart. Then :func:`refine_graph`
    offers each pair to its other end and meets each row with its
    neighbours' neighbours until nothing new turns up. The recall of the
    likely neighbours is measured on ``RECALL_SAMPLE`` rows against their
    exact lists; while it is under ``recall``, the rows where the sample's
    misses are (:func:`_rows_to_widen`) are searched in twice as many
    cells, merged in, and refined again. Past a quarter of the cells the
    exact BLAS search runs instead, so the target always holds. Returns
    ``(indices, sims, recall_reached)``, the last measured on the sample
    rows of the finished graph.
    """
    faiss = _faiss()
    if faiss is None:
        raise ImportError(
            "method='ivf' needs faiss: pip install faiss-cpu (or use "
            "method='pynndescent')."
        )
    n, d = Xn.shape
    if n < _IVF_MIN_SAMPLES or recall >= 1.0:
        # Too few rows to train the cells and the codes (faiss warns below
        # 39 training rows per centroid), and the exact search is as fast;
        # or every likely neighbour asked, which only the exact search
        # guarantees beyond the sampled rows.
        indices, sims = _exact_knn(Xn, n_neighbors, verbose=verbose, n_jobs=n_jobs)
        return indices, sims, 1.0
    rng = np.random.default_rng(seed)
    nlist = _ivf_lists(n, _FIRST_PASS_ROOT)
    with _timed(f"exact lists of {min(n, RECALL_SAMPLE):,} rows", verbose):
        sample, exact_sims = _recall_sample(Xn, n_neighbors, rng, n_jobs)
        floor = _likely_cosine(Xn, exact_sims, n_neighbors)
    with _faiss_threads(faiss, n_jobs):
        index, ivf = _ivf_index(faiss, d, nlist, seed, None, _DIMS_PER_CODE)
        ivf.cp.niter = _KMEANS_ITERATIONS
        train = np.sort(
            rng.choice(n, size=min(n, _TRAIN_PER_LIST * nlist), replace=False)
        )
        with _timed(f"{nlist:,} cells trained on {train.size:,} rows", verbose):
            index.train(Xn[train])
        ivf.nprobe = _FIRST_NPROBE
        with _timed(f"{n:,} rows assigned to their {_FIRST_NPROBE} cells", verbose):
            index, ivf, coarse = _add_assigned(faiss, index, ivf, Xn)
            order = np.argsort(coarse[1][:, 0], kind="stable")
            closeness = coarse[0][:, 0].copy()
        indices, sims = _search_by_cell(
            faiss,
            index,
            ivf,
            Xn,
            n_neighbors,
            order,
            verbose,
            _FIRST_PASS_REFINE,
            coarse,
        )
        del coarse
        _search_short_rows(Xn, indices, sims, n_jobs)
        indices, sims = _sort_rows(indices, sims)
        # The rows least close to their centroid, searched again in many
        # cells: the pairs that join the parts of a person the cells split
        # apart, which the refinement cannot find from either part.
        ivf.nprobe = _far_cells(nlist)
        far = order[closeness[order] <= np.quantile(closeness, _WIDE_SHARE)]
        _search_and_merge(index, ivf, Xn, far, indices, sims, verbose)
        indices, sims = refine_graph(
            Xn, indices, sims, floor, n_jobs, verbose, order=order
        )
        reached = _recall_of_likely(exact_sims, sims[sample], floor)
        while reached < recall:
            ivf.nprobe *= 2
            if ivf.nprobe > max(1, nlist // 4):
                del index, ivf
                indices, sims = _exact_knn(
                    Xn, n_neighbors, verbose=verbose, n_jobs=n_jobs
                )
                return indices, sims, 1.0
            rows = _rows_to_widen(
                order, closeness, sample, exact_sims, sims, floor, recall
            )
            previous = indices.copy()
            _search_and_merge(index, ivf, Xn, rows, indices, sims, verbose)
            indices, sims = refine_graph(
                Xn, indices, sims, floor, n_jobs, verbose, previous, order
            )
            reached = _recall_of_likely(exact_sims, sims[sample], floor)
    del index, ivf
    if verbose:
        log(
            f"kNN (IVF): recall {reached:.3f} of the sample rows' likely "
            f"neighbours (cosine >= {floor:.3f}), "
            f"{_recall_at_k(exact_sims, sims[sample]):.3f} of all {n_neighbors}"
        )
    return indices, sims, reached


def _search_and_merge(index, ivf, Xn, rows, indices, sims, verbose):
    """Search ``rows`` again at the index's ``nprobe`` (``_WIDE_REFINE``
    candidates per neighbour re-ranked) and merge what they find into
    their rows of the graph ``indices``, ``sims``, in place."""
    with _timed(f"{rows.size:,} rows searched at nprobe {ivf.nprobe}", verbose):
        found_sims, found = _search_rows(
            index, ivf, Xn, rows, indices.shape[1], factor=_WIDE_REFINE
        )
        merge_found(indices, sims, rows, found, found_sims)


def _search_rows(
    index, ivf, Xn, rows, n_neighbors, verbose=False, factor=None, into=None,
    coarse=None,
):  # fmt: skip
    """``(sims, indices)`` of ``rows`` (ids in cell order) in the filled IVF
    ``index`` at its ``nprobe``. With ``factor``, the index returns
    ``factor * n_neighbors`` candidates (scored by its codes) and
    :func:`rerank` keeps the best by exact cosine. With ``into``, a pair
    of (n, k) arrays ``(sims, indices)``, the rows are written there
    instead, block by block. With ``coarse`` (from :func:`_add_assigned`),
    the rows' cells are not searched again."""
    out = into
    if into is None:
        out = (
            np.empty((rows.size, n_neighbors), dtype=np.float32),
            np.empty((rows.size, n_neighbors), dtype=np.int32),
        )
    wanted = n_neighbors if factor is None else factor * n_neighbors
    bar = progress(f"kNN (IVF, nprobe {ivf.nprobe})", rows.size, verbose, unit="sample")
    with bar:
        for start in range(0, rows.size, _IVF_BLOCK_ROWS):
            part = slice(start, start + _IVF_BLOCK_ROWS)
            queries = np.ascontiguousarray(Xn[rows[part]])
            if coarse is None:
                found = index.search(queries, wanted)
            else:
                cells = [np.ascontiguousarray(a[rows[part]]) for a in coarse]
                found = index.search_preassigned(queries, wanted, cells[1], cells[0])
            # Each row's place in the output: its id in ``into``, else its
            # position in ``rows``.
            at = rows[part] if into is not None else np.arange(rows.size)[part]
            if factor is None:
                out[0][at], out[1][at] = found
            else:
                rerank(Xn, rows[part], found[1], n_neighbors, out, at)
            bar.update(queries.shape[0])
    return None if into is not None else out


def _search_by_cell(
    faiss, index, ivf, Xn, n_neighbors, order=None, verbose=False, factor=None,
    coarse=None,
):  # fmt: skip
    """Every row's neighbours in the filled IVF ``index`` at its ``nprobe``
    (``factor``, ``coarse``: as :func:`_search_rows`).

    The rows are searched cell by cell (``order``, from
    :func:`_cells_of_rows` when not given): consecutive queries probe
    mostly the same cells and re-rank mostly the same candidates, which
    stay in the caches (a fifth less time at 584,013 faces).
    """
    n = Xn.shape[0]
    if order is None:
        order = _cells_of_rows(faiss, ivf, n)[0]
    indices = np.empty((n, n_neighbors), dtype=np.int32)
    sims = np.empty((n, n_neighbors), dtype=np.float32)
    with _timed(f"{n:,} rows searched at nprobe {ivf.nprobe}", verbose):
        _search_rows(
            index, ivf, Xn, order, n_neighbors, verbose, factor, (sims, indices), coarse
        )
    return indices, sims


def _search_short_rows(Xn, indices, sims, n_jobs=None):
    """Search exactly, in place, the rows of an approximate graph whose
    probed cells held fewer than k samples (faiss's -1) or that missed the
    sample itself (more exact copies than k); set each self cosine."""
    rows = np.arange(Xn.shape[0])
    redo = np.flatnonzero(
        (indices < 0).any(axis=1) | ~(indices == rows[:, None]).any(axis=1)
    )
    if redo.size:
        indices[redo], sims[redo] = _exact_knn(
            Xn, indices.shape[1], redo, n_jobs=n_jobs
        )
    sims[indices == rows[:, None]] = np.einsum("ij,ij->i", Xn, Xn)


def _measured_recall(Xn, n_neighbors, indices, sims, seed, n_jobs):
    """Recall of the likely neighbours of a finished graph, on
    ``RECALL_SAMPLE`` rows (exact search)."""
    rng = np.random.default_rng(seed)
    sample, exact_sims = _recall_sample(Xn, n_neighbors, rng, n_jobs)
    floor = _likely_cosine(Xn, exact_sims, n_neighbors)
    return _recall_of_likely(exact_sims, sims[sample], floor)


def _pynndescent_knn(Xn, n_neighbors, random_state, n_jobs):
    from pynndescent import NNDescent

    n = Xn.shape[0]
    # One spare neighbour, so that self plus k - 1 others survive when the
    # search did not return the point itself.
    index = NNDescent(
        Xn,
        n_neighbors=min(n_neighbors + 1, n),
        metric="dot",
        random_state=random_state,
        n_jobs=-1 if n_jobs is None else n_jobs,
        compressed=True,
    )
    found, _ = index.neighbor_graph
    found = found.astype(np.int64)
    self_ids = np.arange(n)[:, None]
    # Drop the point itself and pynndescent's -1 placeholders, then put the
    # point itself in front.
    valid = (found >= 0) & (found != self_ids)
    order = np.argsort(~valid, axis=1, kind="stable")
    found = np.take_along_axis(found, order, axis=1)
    n_valid = valid.sum(axis=1)
    indices = np.concatenate([self_ids, found[:, : n_neighbors - 1]], axis=1)
    short = np.flatnonzero(n_valid < n_neighbors - 1)
    if short.size:
        indices[short] = _exact_knn(Xn, n_neighbors, short)[0]
    # Imported here: the similarity package itself builds on this module.
    from .similarity._base import pair_cosines

    indices = indices.astype(np.int32)
    return indices, pair_cosines(Xn, indices)


def search_numpy(
    X, n_neighbors, method, recall, random_state, n_jobs, device, verbose, return_recall
):
    """:func:`~sklearn_ndde.knn_graph` on an in-memory array (its
    parameters, validated)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}.")
    n = X.shape[0]
    n_neighbors = int(n_neighbors)
    if n_neighbors > n:
        raise ValueError(
            f"n_neighbors={n_neighbors} is larger than the number of samples ({n})."
        )
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    method, torch_device = _search_method(n, method, device)
    if n_neighbors >= n - 1:
        method = "exact"
    Xn = _normalize_rows(X)
    check_memory(
        knn_bytes(n, X.shape[1], n_neighbors, method, not np.may_share_memory(X, Xn)),
        f"knn_graph on {n} samples with n_neighbors={n_neighbors}",
    )
    reached = 1.0
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    if method == "exact" and torch_device is not None:
        indices, sims = _exact_knn_torch(Xn, n_neighbors, torch_device, verbose)
    elif method == "exact":
        indices, sims = _exact_knn(Xn, n_neighbors, verbose=verbose, n_jobs=n_jobs)
    elif method == "ivf":
        indices, sims, reached = _ivf_knn(
            Xn, n_neighbors, float(recall), seed, n_jobs, verbose
        )
    else:
        with progress("kNN (pynndescent)", 1, verbose, unit="graph") as bar:
            indices, sims = _pynndescent_knn(Xn, n_neighbors, seed, n_jobs)
            bar.update(1)
        if return_recall:
            reached = _measured_recall(Xn, n_neighbors, indices, sims, seed, n_jobs)
    np.clip(sims, -1.0, 1.0, out=sims)
    indices, sims = _sort_rows(indices, sims)
    if return_recall:
        return indices, sims, reached
    return indices, sims
