"""``NDDeTPDiClustering.fit`` on a row-chunked dask array, stage by stage.

Every stage runs on the row blocks of ``X`` on the current Dask client,
with the functions of the single-machine path applied to one block:

- the kNN graph: :mod:`._knn_dask` (exact search, block against block);
- the calibration: the fine cosine histogram summed over the blocks, then
  the same quantiles and mixture (``CalibratedCosineSimilarity``);
- pair similarities and both transition matrices: row-local, per block;
- NDDe: the one-step density as a scatter-add per block, summed (the
  float32 probabilities add up exactly in float64, in any order);
- TPDi: each block fetches the transition rows of the neighbours it lists
  from the blocks that own them (one transfer per pair of blocks, not per
  edge) and runs the general TPDi kernel on its own rows;
- density peaks: the density rank from ``n`` floats gathered to the
  client, the nearest denser neighbour per block;
- saturated peaks: each block links its saturated peaks to the best
  denser sample in their own lists (:func:`denser_in_list`); the few with
  none, with the rows they reach in two steps, are solved on the client by
  :func:`link_saturated_peaks` itself;
- flow merge: the cluster flows summed pairwise on the workers, the
  rounds on the client; components with ``scipy.sparse.csgraph`` on ``n``
  integers;
- recalibration: the fine cosine histogram of the pairs, split by the
  first clustering, summed over the blocks; the refitted curve on the
  client; the merge again on the blocks' flows of its similarities and
  their counts of likely pairs between clusters.

No stage holds an ``(n, k)`` array on one worker or on the client: a block
holds its own rows, the rows of its neighbours and ``n``-long vectors.
"""

import time

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from ._calibration import (
    _histogram_quantiles,
    background_level,
    random_pair_cosines,
)
from ._dask_blocks import (
    _around,
    _block_flows,
    _block_parents,
    _block_tpdi,
    _calibrated,
    _compute,
    _delayed,
    _duplicates,
    _histogram,
    _isolated,
    _merged,
    _pairwise_sum,
    _recalibrated_flows,
    _rows_of,
    _saturated_in_list,
    _shared_histograms,
    _tpdi_step,
    _transitions,
    _value_ranges,
    _wanted,
)
from ._knn_dask import (
    _persist,
    _task_slots,
    _unit,
    block_hashes,
    blocked_knn,
    checked_blocks,
    gather_rows,
)
from ._peaks import (
    MIN_SHARED,
    components_from_parents,
    link_saturated_peaks,
    rank_by_density,
    shared_fraction,
)
from ._pipeline import (
    recalibrates,
    sort_by_similarity,
)
from ._progress import log
from ._transition import row_softmax
from ._validation import DUPLICATE_GAP, clipped_k
from .similarity import CalibratedCosineSimilarity

#: Called with the name of each stage as it starts (benchmarks/dask_scale.py).
_stage_hook = None


class _Stages:
    """Marks the start of each stage: calls ``_stage_hook`` and, when the
    estimator is verbose, writes the time of the stage just ended, as the
    single-machine ``fit`` does."""

    def __init__(self, verbose):
        self.verbose, self.name, self.start = verbose, None, None

    def __call__(self, name):
        now = time.perf_counter()
        if self.verbose and self.name is not None:
            log(f"[NDDeTPDiClustering] {self.name} (Dask): {now - self.start:.2f} s")
        self.name, self.start = name, now
        if _stage_hook is not None:
            _stage_hook(name)


# ---------------------------------------------------------- the driver


def _persist_each(tuples, count):
    """``count`` lists: the items of persisted delayed tuples, each item
    persisted under a key of its own (no copy), so that each can be freed
    on the workers once it is no longer used, rather than with the last of
    its tuple."""
    items = _persist(*[t[i] for t in tuples for i in range(count)])
    return [list(items[i::count]) for i in range(count)]


class _Blocks:
    """Row blocks of the data: their offsets, and which block owns an id."""

    def __init__(self, chunks):
        self.sizes = [int(c) for c in chunks]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n = int(self.offsets[-1])

    def __len__(self):
        return len(self.sizes)

    def gather(self, arrays, ids):
        """Rows ``ids`` (sorted, global) of a blocked array (a list of its
        blocks' delayed arrays, or a dask array), on the client."""
        if hasattr(arrays, "to_delayed"):
            arrays = arrays.to_delayed().ravel().tolist()
        return gather_rows(arrays, self.offsets, ids)


def fit_on_dask(est, X):
    """``fit`` on a row-chunked dask array, on the current Dask client."""
    unsupported = []
    if est.metric != "cosine":
        unsupported.append(f"metric={est.metric!r}")
    if est.similarity is not None and not isinstance(
        est.similarity, CalibratedCosineSimilarity
    ):
        unsupported.append(f"similarity={type(est.similarity).__name__}()")
    if est.knn_method == "pynndescent":
        unsupported.append("knn_method='pynndescent'")
    if est.density_iter != 1:
        unsupported.append(f"density_iter={est.density_iter!r}")
    if unsupported:
        raise ValueError(
            "On a dask array, fit runs the exact or IVF search, the "
            "calibrated similarity and the one-step density; not "
            + ", ".join(unsupported)
            + "."
        )
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}.")
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X has unknown chunk sizes; call X.compute_chunk_sizes() first."
        )
    n = int(X.shape[0])
    if n < 2:
        raise ValueError(f"X has {n} sample(s); clustering needs at least 2.")
    fitted = fit_dask(est, X, clipped_k(est.k, n, stacklevel=4))
    fitted["n_features_in_"] = int(X.shape[1])
    return fitted


def fit_dask(estimator, X, k):
    """The fitted attributes of ``estimator`` on the dask array ``X``."""
    import dask.array as da

    _stage = _Stages(estimator.verbose)
    rows, block_offsets = checked_blocks(X)
    blocks = _Blocks(np.diff(block_offsets))
    n = blocks.n
    offsets = [int(o) for o in blocks.offsets[:-1]]

    # 1. The kNN graph: block against block, exact or IVF.
    _stage("kNN graph")
    seed = check_random_state(estimator.random_state).randint(np.iinfo(np.int32).max)
    parts, recall = blocked_knn(
        rows,
        block_offsets,
        k,
        estimator.knn_method,
        estimator.knn_recall,
        seed,
        1 if estimator.n_jobs is None else estimator.n_jobs,
    )
    indices, cosines = _persist_each(_persist(*parts), 2)
    del parts

    # 2. The calibration, from the cosine histogram summed over the blocks.
    _stage("calibration")
    ranges = _compute(
        *[
            _delayed(_value_ranges)(i, c, o)
            for i, c, o in zip(indices, cosines, offsets)
        ]
    )
    if sum(r[0][0] for r in ranges) == 0:
        raise ValueError("The kNN graph holds no pair of distinct samples.")
    # Near duplicates are left out unless nothing else is left.
    with_duplicates = sum(r[1][0] for r in ranges) > 0
    ranges = [r[int(with_duplicates)] for r in ranges]
    n_values = sum(r[0] for r in ranges)
    lo = min(r[1] for r in ranges)
    hi = max(r[2] for r in ranges)
    histograms = _compute(
        *[
            _delayed(_histogram)(i, c, o, with_duplicates, lo, hi)
            for i, c, o in zip(indices, cosines, offsets)
        ]
    )
    similarity = (
        CalibratedCosineSimilarity()
        if estimator.similarity is None
        else clone(estimator.similarity)
    )
    similarity._validate_params()
    sample = _histogram_quantiles(
        np.sum(histograms, axis=0), lo, hi, n_values, similarity.n_quantiles
    )
    # Where unrelated samples sit in a list, from random pairs of rows
    # gathered to the client (as the single-machine path reads its unit rows).
    hashes = np.concatenate(
        _compute(*[_delayed(block_hashes)(block) for block in rows])
    )
    background = background_level(
        random_pair_cosines(hashes, lambda ids: _unit(blocks.gather(rows, ids))), n, k
    )
    similarity._fit_sample(sample, background)

    # 3. Pair similarities, transitions and the NDDe density.
    _stage("transitions and NDDe")
    params = {
        "top": min(int(estimator.density_k), k),
        "density_sigma": estimator.density_sigma,
        "distance_sigma": estimator.distance_sigma,
    }
    indices, s, cosines, p, q, shares = _persist_each(
        _persist(
            *[
                _delayed(_transitions, nout=6)(i, c, similarity, params, n)
                for i, c in zip(indices, cosines)
            ]
        ),
        6,
    )
    # The blocks' shares summed pairwise on the workers, one vector to the
    # client (exact in any order: see the module docstring).
    (density,) = _compute(_pairwise_sum(shares))
    del shares  # the blocks' n-long shares, freed on the workers

    # 4. TPDi: each block fetches its partners' transition rows once, one
    # owner block after the other (a chain of tasks, so that a block never
    # holds more than one owner's rows: when the rows are in no particular
    # order, a block lists nearly every row of the data). In waves of as
    # many blocks as the cluster runs tasks at once.
    _stage("TPDi")
    distances = []
    step = _delayed(_tpdi_step)
    wave = _task_slots()
    for first in range(0, len(blocks), wave):
        batch = []
        for i in range(first, min(len(blocks), first + wave)):
            listed = _delayed(np.unique)(indices[i])
            out = None
            # The block's own rows first (no transfer), then the others.
            for j in [i] + [j for j in range(len(blocks)) if j != i]:
                start, stop = blocks.offsets[j], blocks.offsets[j + 1]
                piece = _delayed(_rows_of)(
                    indices[j], q[j], offsets[j], _delayed(_wanted)(listed, start, stop)
                )
                out = step(indices[i], q[i], n, out, piece)
            batch.append(out)
        distances.extend(_persist(*batch))
    del q

    # 5. Density peaks: the rank on the client, the links per block.
    _stage("density peaks")
    around = np.concatenate(_compute(*[_delayed(_around)(i, density) for i in indices]))
    rank = rank_by_density(density, around)
    parents = np.concatenate(
        _compute(
            *[
                _delayed(_block_parents)(i, d, rank, estimator.tau, o)
                for i, d, o in zip(indices, distances, offsets)
            ]
        )
    )

    # 6. Saturated peaks, solved on the rows they reach in two steps.
    _stage("saturated peaks")
    peaks = parents
    if estimator.link_saturated:
        parents = _link_saturated(
            blocks, rows, indices, cosines, peaks.copy(), rank, similarity, offsets
        )

    # 7. The flow merge on the summed cluster flows.
    _stage("flow merge")
    linked = parents
    labels = first = components_from_parents(linked)
    if estimator.merge_threshold is not None:
        labels, parents = _merged(
            estimator,
            linked,
            first,
            [
                _delayed(_block_flows)(i, pb, o, first, int(first.max()) + 1)
                for i, pb, o in zip(indices, p, offsets)
            ],
        )

    # 8. The merge again, with the calibration refitted to the first
    # clustering (the fine histogram of the pairs, split by it); then near
    # duplicates.
    _stage("recalibration")
    merge_calibration = None
    if recalibrates(estimator, similarity):
        counts = _compute(
            *[
                _delayed(_shared_histograms)(i, c, o, with_duplicates, labels, lo, hi)
                for i, c, o in zip(indices, cosines, offsets)
            ]
        )
        refit = clone(similarity)._fit_shares(
            np.sum([c[0] for c in counts], axis=0),
            np.sum([c[1] for c in counts], axis=0),
            lo,
            hi,
        )
        # A curve of zeros: no pair of the graph shares a cluster.
        merge_calibration = refit if refit.curve_.any() else None
    if merge_calibration is not None:
        # The links again under the refitted similarities: the saturated
        # peaks, then the peaks that no neighbour lists (per block).
        relinked = peaks.copy()
        if estimator.link_saturated:
            relinked = _link_saturated(
                blocks,
                rows,
                indices,
                cosines,
                relinked,
                rank,
                merge_calibration,
                offsets,
            )
        isolated = _compute(
            *[
                _delayed(_isolated)(
                    i,
                    c,
                    relinked[o : o + size],
                    density,
                    rank,
                    o,
                    merge_calibration,
                    similarity,
                )
                for i, c, o, size in zip(indices, cosines, offsets, blocks.sizes)
            ]
        )
        for linked_rows, targets in isolated:
            relinked[linked_rows] = targets
        second = components_from_parents(relinked)
        flows = [
            _delayed(_recalibrated_flows, nout=2)(
                i, c, merge_calibration, params, o, second, int(second.max()) + 1
            )
            for i, c, o in zip(indices, cosines, offsets)
        ]
        labels, parents = _merged(
            estimator,
            relinked,
            second,
            [f for f, _ in flows],
            [connected for _, connected in flows],
        )
    duplicates = _compute(
        *[_delayed(_duplicates)(i, c, o) for i, c, o in zip(indices, cosines, offsets)]
    )
    links = (
        np.concatenate([d[0] for d in duplicates]),
        np.concatenate([d[1] for d in duplicates]),
    )
    if links[0].size:
        labels = components_from_parents(parents, links)

    _stage("end")
    chunks = (tuple(blocks.sizes),)

    def stacked(parts, dtype):
        return da.concatenate(
            [
                da.from_delayed(part, (size, k), dtype)
                for part, size in zip(parts, blocks.sizes)
            ]
        )

    return {
        "similarity_": similarity,
        "merge_calibration_": merge_calibration,
        "neighbors_": stacked(indices, np.int32),
        "pair_similarities_": stacked(s, np.float32),
        "density_": da.from_array(density, chunks=chunks),
        "tpdi_": stacked(distances, np.float32),
        "labels_": da.from_array(labels, chunks=chunks),
        "parents_": da.from_array(parents, chunks=chunks),
        "n_clusters_": int(labels.max()) + 1,
        "knn_recall_": recall,
        # The user's rows (not unit rows: each task normalizes what it reads).
        "_fit_X": X.rechunk({1: -1}),
    }


def _link_saturated(blocks, rows, indices, cosines, parents, rank, sim, offsets):
    """:func:`link_saturated_peaks` on Dask, under the similarity ``sim``
    (a calibration of the cosine). Each block finds its saturated peaks and
    the best denser sample in their own lists (most peaks have one); the
    client links those the calibration judges the same identity, and solves
    the rest, with the rows they reach in two kNN steps, gathered (a few per
    cent of the peaks: never an ``(n, k)`` array). A link needs the two
    lists to share ``min_shared`` of their samples, checked on the client
    on the gathered lists of the linked peaks and their candidates."""
    threshold = 0.5
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
    same[listed] = np.asarray(sim.calibrate(cosine[listed])) >= threshold
    parents[peaks[same]] = candidate[same]
    peaks = peaks[~listed]
    if peaks.size:
        _two_steps(blocks, rows, indices, cosines, parents, rank, sim, peaks)
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


def _two_steps(blocks, rows, indices, cosines, parents, rank, sim, peaks):
    """Links, in ``parents``, the saturated ``peaks`` with no denser sample
    in their own lists to the one :func:`link_saturated_peaks` finds two kNN
    steps away, on the rows they reach, gathered."""
    threshold = 0.5
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
    _, linked = link_saturated_peaks(
        local_parents,
        rank[universe].astype(np.float64),
        idx,
        sims,
        _unit(blocks.gather(rows, universe)),
        sim,
        threshold=threshold,
        min_shared=0.0,  # checked for every new link by _with_shared_lists
        cosines=cos,
    )
    at = local(universe, peaks)
    found = linked[at] >= 0
    parents[peaks[found]] = universe[linked[at][found]]


def predict_dask(estimator, Xq, query_zero, tie_tolerance):
    """``predict`` of an estimator fitted on a dask array, for the unit rows
    ``Xq`` (numpy): the queries are searched against the training blocks on
    the cluster, and only the rows of their neighbours come to the client."""
    from ._knn_dask import _exact_chain

    fit_X = estimator._fit_X
    blocks = _Blocks(fit_X.chunks[0])
    units = fit_X.to_delayed().ravel().tolist()
    k = estimator.neighbors_.shape[1]
    (best,) = _compute(_exact_chain(Xq, units, blocks.offsets, k, 1, raw_query=False))
    found, cosines = best
    order = np.lexsort((found, -cosines), axis=-1)
    indices = np.take_along_axis(found, order, 1)
    cosines = np.take_along_axis(cosines, order, 1).astype(np.float32)
    duplicate = (cosines[:, 0] >= 1.0 - DUPLICATE_GAP) & ~query_zero
    copy_of = indices[:, 0]
    s = np.clip(estimator.similarity_.calibrate(cosines), 0.0, 1.0).astype(np.float32)
    indices, s = sort_by_similarity(indices, s)
    # The training rows the queries list, with their own transition rows.
    ids = np.unique(indices)
    partners = (
        ids,
        blocks.gather(estimator.neighbors_, ids),
        np.sqrt(
            row_softmax(
                blocks.gather(estimator.pair_similarities_, ids),
                estimator.distance_sigma,
            ),
            dtype=np.float32,
        ),
    )
    rows = row_softmax(s, estimator.distance_sigma)
    dist = _block_tpdi(indices, rows, blocks.n, partners)
    nearest = dist.min(axis=1)
    column = np.argmax(dist <= nearest[:, None] + tie_tolerance, axis=1)
    chosen = indices[np.arange(indices.shape[0]), column]
    wanted = np.unique(np.concatenate([chosen, copy_of[duplicate]]))
    wanted_labels = blocks.gather(estimator.labels_, wanted)
    labels = wanted_labels[np.searchsorted(wanted, chosen)].astype(np.intp)
    labels = np.where(nearest < estimator.tau, labels, -1)
    labels[duplicate] = wanted_labels[np.searchsorted(wanted, copy_of[duplicate])]
    labels[query_zero] = -1
    return labels
