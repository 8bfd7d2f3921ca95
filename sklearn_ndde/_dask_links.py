"""The saturated peaks' links on a Dask array: found per block, solved on
the client on the few rows they reach in two kNN steps."""

import numpy as np

from ._calibration import LIKELY
from ._dask_blocks import (
    _calibrated,
    _compute,
    _delayed,
    _saturated_in_list,
)
from ._knn_dask import (
    _unit,
)
from ._peaks import (
    MIN_SHARED,
    checked_saturated_links,
    confirmed,
    shared_fraction,
)


def _link_saturated(
    blocks, rows, indices, cosines, parents, rank, sim, offsets, confirm=None
):
    """:func:`link_saturated_peaks` on Dask, under the similarity ``sim``
    (a calibration of the cosine), each link confirmed by ``confirm`` (see
    :func:`._peaks.confirmed`). Each block finds its saturated peaks and
    the best denser sample in their own lists (most peaks have one); the
    client links those the calibration judges the same identity, and solves
    the rest, with the rows they reach in two kNN steps, gathered (a few per
    cent of the peaks: never an ``(n, k)`` array). A link needs the two
    lists to share ``min_shared`` of their samples, checked on the client
    on the gathered lists of the linked peaks and their candidates."""
    threshold = LIKELY
    before = parents
    found = _compute(
        *[
            _delayed(_saturated_in_list)(
                i, c, parents[o : o + size], rank, o, threshold, sim
            )
            for i, c, o, size in zip(indices, cosines, offsets, blocks.sizes)
        ]
    )
    peaks = np.concatenate([f[0] for f in found])
    candidate = np.concatenate([f[1] for f in found])
    cosine = np.concatenate([f[2] for f in found])
    parents = parents.copy()
    listed = candidate >= 0
    same = listed.copy()
    same[listed] = confirmed(sim, confirm, cosine[listed], threshold)
    parents[peaks[same]] = candidate[same]
    peaks = peaks[~listed]
    if peaks.size:
        _two_steps(blocks, rows, indices, cosines, parents, rank, sim, peaks, confirm)
    return _with_shared_lists(blocks, indices, before, parents)


def _with_shared_lists(blocks, indices, before, parents):
    """``parents`` without the new links (those ``before`` lacks) whose two
    kNN lists share less than :func:`link_saturated_peaks`'s
    ``min_shared``."""
    new = np.flatnonzero((before < 0) & (parents >= 0))
    if new.size == 0:
        return parents
    ids = np.unique(np.concatenate([new, parents[new]]))
    lists = blocks.gather(indices, ids)
    at = np.searchsorted(ids, new)
    to = np.searchsorted(ids, parents[new])
    apart = shared_fraction(lists[at], lists[to]) < MIN_SHARED
    parents[new[apart]] = -1
    return parents


def _two_steps(blocks, rows, indices, cosines, parents, rank, sim, peaks, confirm):
    """Links, in ``parents``, the saturated ``peaks`` with no denser sample
    in their own lists to the one :func:`link_saturated_peaks` finds two kNN
    steps away, on the rows they reach, gathered."""
    threshold = LIKELY
    peak_rows = blocks.gather(indices, peaks)
    first = np.unique(peak_rows)
    first_rows = blocks.gather(indices, first)
    universe = np.unique(np.concatenate([peaks, first, first_rows.ravel()]))
    m, k = universe.size, peak_rows.shape[1]
    local = np.searchsorted
    # Rows that are not read keep themselves as their only neighbour.
    idx = np.repeat(np.arange(m)[:, None], k, axis=1)
    idx[local(universe, first)] = local(universe, first_rows)
    idx[local(universe, peaks)] = local(universe, peak_rows)
    cos = np.full((m, k), -1.0, dtype=np.float32)
    cos[local(universe, peaks)] = blocks.gather(cosines, peaks)
    sims = np.zeros((m, k), dtype=np.float32)
    sims[local(universe, peaks)] = _calibrated(sim, cos[local(universe, peaks)])
    local_parents = np.zeros(m, dtype=np.intp)
    local_parents[:] = -1
    # Only these peaks may link (none has a denser sample in its own list,
    # so each looks two steps away); every other row is a root that is not
    # saturated (its only neighbour is itself).
    _, linked = checked_saturated_links(
        local_parents,
        rank[universe].astype(np.float64),
        idx,
        sims,
        _unit(blocks.gather(rows, universe)),
        sim,
        threshold=threshold,
        min_shared=0.0,  # checked for every new link by _with_shared_lists
        cosines=cos,
        n_jobs=None,
        confirm=confirm,
    )
    at = local(universe, peaks)
    found = linked[at] >= 0
    parents[peaks[found]] = universe[linked[at][found]]
