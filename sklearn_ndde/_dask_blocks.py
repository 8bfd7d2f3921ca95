"""The Dask path's per-block steps: each a function of one row block
(its rows' kNN lists, their offset, and what the stage gathered), run on
the workers by :func:`~._dask_fit.fit_dask`."""

import numpy as np

from ._calibration import (
    _cosine_histogram,
    _flat,
)
from ._kernels import kept_count_range
from ._merge import likely_counts, merge_on_flows, pair_flows
from ._peaks import (
    ISOLATED_DENSITY,
    ISOLATED_SIMILARITY,
    denser_in_list,
    isolated_links,
    links_below_tau,
)
from ._pipeline import (
    duplicate_links,
    sort_by_similarity,
    unconfirmed,
)
from ._tpdi_kernels import bhattacharyya_pairs
from ._transition import row_softmax
from ._validation import DUPLICATE_GAP
from .similarity._calibrated import shared_histograms


def _delayed(function, nout=None):
    import dask

    return dask.delayed(function, nout=nout, pure=True)


def _compute(*objects):
    import dask

    return dask.compute(*objects)


def _excluded(indices, cosines, offset, with_duplicates):
    """Pairs the calibration leaves out: a sample with itself, and near
    duplicates unless the whole graph is made of them."""
    rows = offset + np.arange(indices.shape[0])
    out = indices == rows[:, None]
    if with_duplicates:
        out |= cosines >= 1.0 - DUPLICATE_GAP
    return out


def _value_ranges(indices, cosines, offset):
    """``(count, min, max)`` of the cosines the calibration keeps, without
    and with the near duplicates left out."""
    out = []
    for with_duplicates in (False, True):
        values, exclude = _flat(
            cosines, _excluded(indices, cosines, offset, with_duplicates)
        )
        out.append(kept_count_range(values, exclude))
    return out


def _histogram(indices, cosines, offset, with_duplicates, lo, hi):
    exclude = _excluded(indices, cosines, offset, with_duplicates)
    return _cosine_histogram(cosines, lo, hi, exclude)


def _shared_histograms(indices, cosines, offset, with_duplicates, labels, lo, hi):
    """The block's :func:`shared_histograms`: its pairs' cosines, all and
    those in one cluster of ``labels``."""
    floor = 1.0 - DUPLICATE_GAP if with_duplicates else np.inf
    rows = offset + np.arange(indices.shape[0])
    values = np.ascontiguousarray(cosines, dtype=np.float32)
    return shared_histograms(indices, values, rows, labels, floor, lo, hi)


def _transitions(indices, cosines, similarity, params, n):
    """Pair similarities, rows by decreasing similarity, the density and
    distance transition rows, and this block's share of the density."""
    s = np.clip(similarity.calibrate(cosines), 0.0, 1.0).astype(np.float32)
    indices, s, cosines = sort_by_similarity(indices, s, cosines)
    top = params["top"]
    p = row_softmax(s[:, :top], params["density_sigma"])
    q = row_softmax(s, params["distance_sigma"])
    share = np.bincount(
        indices[:, :top].ravel(), weights=p.ravel().astype(np.float64), minlength=n
    )
    return indices, s, cosines, p, q, share


def _wanted(listed, lo, hi):
    """The ids in ``[lo, hi)`` of ``listed`` (the sorted ids a block lists)."""
    return listed[np.searchsorted(listed, lo) : np.searchsorted(listed, hi)]


def _rows_of(indices, q, offset, wanted):
    """The transition rows of ``wanted`` (ids of this block), as square
    roots (what the TPDi kernel reads)."""
    local = wanted - offset
    return wanted, indices[local], np.sqrt(q[local], dtype=np.float32)


def _tpdi_step(indices, q, n, out, fetched):
    """TPDi of the pairs of a block whose partner is among the rows
    ``fetched`` (from :func:`_rows_of`: one owner block's rows, in order of
    id), written into a copy of ``out`` (a new array of ones when None)."""
    ids, partner_cols, partner_roots = fetched
    rows, k = indices.shape
    out = np.ones((rows, k), dtype=np.float32) if out is None else out.copy()
    if ids.size == 0:
        return out
    index_dtype = np.int64 if n >= 2**31 - 1 else np.int32
    at = np.minimum(np.searchsorted(ids, indices), ids.size - 1)
    pairs = np.where(ids[at] == indices, at, -1).astype(index_dtype)
    return bhattacharyya_pairs(
        np.arange(0, rows * k + 1, k, dtype=np.int64),
        indices.astype(index_dtype).ravel(),
        np.sqrt(q, dtype=np.float32).ravel(),
        pairs,
        np.arange(rows, dtype=np.int64),
        1,
        np.arange(0, ids.size * k + 1, k, dtype=np.int64),
        partner_cols.astype(index_dtype, copy=False).ravel(),
        partner_roots.ravel(),
        n,
        out,
    )


def _block_tpdi(indices, q, n, *fetched):
    """TPDi of a block's pairs from its own rows and its partners' rows
    (``fetched``: from :func:`_rows_of`, each owner's rows once)."""
    out = None
    for piece in fetched:
        out = _tpdi_step(indices, q, n, out, piece)
    return out


def _around(indices, density):
    return density[indices].sum(axis=1)


def _block_parents(indices, distances, rank, tau, offset):
    """:func:`density_peaks`'s links of a block's rows (global ids)."""
    from ._kernels import nearest_denser

    # The kernel reads row i's rank at rank[i]: number the block's own rows
    # first, then every other id it lists.
    rows = offset + np.arange(indices.shape[0])
    others = np.setdiff1d(np.unique(indices), rows)
    ids = np.concatenate([rows, others])
    order = np.argsort(ids, kind="stable")
    local = order[np.searchsorted(ids[order], indices)]
    column = nearest_denser(rank[ids], local, distances)
    return links_below_tau(column, indices, distances, tau)


def _calibrated(calibration, cosines):
    """The similarities of ``calibration`` for ``cosines``, as the
    transitions read them."""
    return np.clip(calibration.calibrate(cosines), 0.0, 1.0).astype(np.float32)


def _saturated_in_list(indices, cosines, parents, rank, offset, threshold, sim):
    """The saturated peaks of a block under the similarity ``sim`` (see
    :func:`link_saturated_peaks`), with :func:`denser_in_list`'s candidate
    and its cosine for each."""
    s = _calibrated(sim, cosines)
    rows = offset + np.arange(indices.shape[0])
    own = indices == rows[:, None]
    saturated = ((s >= threshold) | own).all(axis=1) & ~own.all(axis=1)
    at = np.flatnonzero((parents < 0) & saturated)
    candidate, cosine = denser_in_list(rows[at], indices[at], cosines[at], rank)
    return rows[at], candidate, cosine


def _isolated(indices, cosines, parents, density, rank, offset, refit, first):
    """:func:`link_isolated_peaks`'s links of a block's rows (global ids),
    under the similarity the single-machine path gives them
    (:func:`~._pipeline.unconfirmed`: the refitted and the ``first`` calibration)."""
    own = density[offset : offset + parents.size]
    rows = offset + np.flatnonzero((parents < 0) & (own < ISOLATED_DENSITY))
    local = rows - offset
    cos = cosines[local]
    similarities = unconfirmed(
        _calibrated(refit, cos), _calibrated(first, cos), cos, first
    )
    return isolated_links(rows, indices[local], similarities, rank, ISOLATED_SIMILARITY)


def _block_flows(indices, p, offset, labels, n_clusters):
    """The cluster flows of a block's density transitions."""
    top = p.shape[1]
    rows = offset + np.repeat(np.arange(indices.shape[0]), top)
    return pair_flows(rows, indices[:, :top].ravel(), p.ravel(), labels, n_clusters)


def _likely_block_counts(
    indices, cosines, similarity, offset, labels, n_clusters, targets
):
    """:func:`likely_counts` of a block under the calibration
    ``similarity`` (every column, as the single-machine path), from the
    rows of the clusters ``targets``."""
    rows = targets[labels[offset : offset + indices.shape[0]]]
    calibrated = np.clip(similarity.calibrate(cosines[rows]), 0.0, 1.0)
    s = np.zeros(cosines.shape, dtype=calibrated.dtype)
    s[rows] = calibrated
    return likely_counts(indices, s, labels, n_clusters, targets, offset)


def _recalibrated_flows(
    indices, cosines, similarity, params, offset, labels, n_clusters
):
    """:func:`_block_flows` of the density transitions of ``similarity``
    over the same neighbours as the first (the ``top`` first columns), and
    the counts of their :func:`likely_pairs` between clusters."""
    top = params["top"]
    s = np.clip(similarity.calibrate(cosines[:, :top]), 0.0, 1.0)
    connected = likely_counts(indices[:, :top], s, labels, n_clusters, offset=offset)
    p = row_softmax(s.astype(np.float32), params["density_sigma"])
    return _block_flows(indices, p, offset, labels, n_clusters), connected


def _merged(estimator, linked, labels, flows, connected=None):
    """:func:`merge_on_flows` from the links ``linked`` (not modified), their
    clusters ``labels``, the blocks' delayed cluster ``flows`` and counts of
    ``connected`` pairs (None: no constraint), each summed pairwise on the
    workers (exact in any order, as the density): one matrix each comes to
    the client."""
    if connected is None:
        (F,) = _compute(_pairwise_sum(flows))
    else:
        F, connected = _compute(_pairwise_sum(flows), _pairwise_sum(connected))
        connected = connected.tocsr()
    return merge_on_flows(
        linked.copy(), labels, F.tocsr(), estimator.merge_threshold, 10, connected
    )


def _add(a, b):
    return a + b


def _pairwise_sum(parts):
    """The delayed sum of ``parts`` (arrays or sparse matrices), added in
    pairs on the workers (a tree of depth log2 of their number)."""
    add = _delayed(_add)
    while len(parts) > 1:
        parts = [add(a, b) for a, b in zip(parts[::2], parts[1::2])] + (
            parts[-1:] if len(parts) % 2 else []
        )
    return parts[0]


def _duplicates(indices, cosines, offset):
    return duplicate_links(indices, cosines, offset + np.arange(indices.shape[0]))
