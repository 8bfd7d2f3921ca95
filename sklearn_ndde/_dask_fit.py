"""``NDDeTPDiClustering.fit`` on a row-chunked dask array, stage by stage.

:func:`fit_dask` builds the kNN graph and hands it, as :class:`DaskStages`,
to :func:`._pipeline.run_stages`, which calls the stages in the same order
as on one machine. Every stage runs on the row blocks of ``X`` on the
current Dask client, with the functions of the single-machine path applied
to one block:

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
from contextlib import contextmanager

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
    _compute,
    _delayed,
    _duplicates,
    _histogram,
    _isolated,
    _likely_block_counts,
    _merged,
    _pairwise_sum,
    _recalibrated_flows,
    _rows_of,
    _shared_histograms,
    _tpdi_step,
    _transitions,
    _value_ranges,
    _wanted,
)
from ._dask_links import _link_saturated
from ._groups import GROUP_COLUMNS, closed_group_links, small_cluster_rows
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
    components_from_parents,
    rank_by_density,
)
from ._pipeline import (
    run_stages,
    sort_by_similarity,
)
from ._progress import log
from ._transition import row_softmax
from ._validation import DUPLICATE_GAP, clipped_k
from .similarity import CalibratedCosineSimilarity

#: Called with the name of each stage as it starts, and with "end" after the
#: last (benchmarks/dask_scale.py).
_stage_hook = None


@contextmanager
def _dask_stage(name, verbose):
    """One stage of the Dask ``fit``: calls ``_stage_hook`` as it starts
    and, when the estimator is verbose, writes its time, as the
    single-machine ``fit`` does."""
    if _stage_hook is not None:
        _stage_hook(name)
    start = time.perf_counter()
    yield
    if verbose:
        seconds = time.perf_counter() - start
        log(f"[NDDeTPDiClustering] {name} (Dask): {seconds:.2f} s")


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
    fitted = fit_dask(est, X, clipped_k(est.k, n, stacklevel=5))
    fitted["n_features_in_"] = int(X.shape[1])
    return fitted


def fit_dask(estimator, X, k):
    """The fitted attributes of ``estimator`` on the dask array ``X``."""
    rows, block_offsets = checked_blocks(X)
    blocks = _Blocks(np.diff(block_offsets))

    def stage(name):
        return _dask_stage(name, estimator.verbose)

    # The kNN graph: block against block, exact or IVF.
    with stage("kNN graph"):
        seed = check_random_state(estimator.random_state).randint(
            np.iinfo(np.int32).max
        )
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
    graph = DaskStages(estimator, blocks, rows, indices, cosines, k)
    del indices, cosines
    out = run_stages(estimator, graph, stage)
    if _stage_hook is not None:
        _stage_hook("end")  # the last stage's end, for benchmarks/dask_scale.py
    out["knn_recall_"] = recall
    # The user's rows (not unit rows: each task normalizes what it reads).
    out["_fit_X"] = X.rechunk({1: -1})
    return out


def _first_columns(block, width):
    """The first ``width`` columns of a block's kNN lists."""
    return block[:, :width]


class DaskStages:
    """The stages after the kNN graph on the row blocks of a Dask array:
    ``indices`` and ``cosines`` are lists of the blocks' delayed kNN lists,
    ``rows`` the blocks of the embeddings, ``blocks`` their offsets. The
    counterpart of :class:`._numpy_stages.NumpyStages`; every method runs
    per block on the workers and gathers ``n``-long vectors at most."""

    def __init__(self, est, blocks, rows, indices, cosines, k):
        self.est, self.blocks, self.rows, self.k = est, blocks, rows, k
        self.indices, self.cosines = indices, cosines
        self.offsets = [int(o) for o in blocks.offsets[:-1]]
        self.params = {
            "top": min(int(est.density_k), k),
            "density_sigma": est.density_sigma,
            "distance_sigma": est.distance_sigma,
        }

    def fit_similarity(self):
        """The calibration, from the cosine histogram summed over the
        blocks and random pairs of rows gathered to the client (as the
        single-machine path reads its unit rows)."""
        est, blocks, n = self.est, self.blocks, self.blocks.n
        ranges = _compute(
            *[
                _delayed(_value_ranges)(i, c, o)
                for i, c, o in zip(self.indices, self.cosines, self.offsets)
            ]
        )
        if sum(r[0][0] for r in ranges) == 0:
            raise ValueError("The kNN graph holds no pair of distinct samples.")
        # Near duplicates are left out unless nothing else is left.
        self.with_duplicates = sum(r[1][0] for r in ranges) > 0
        ranges = [r[int(self.with_duplicates)] for r in ranges]
        n_values = sum(r[0] for r in ranges)
        self.lo = min(r[1] for r in ranges)
        self.hi = max(r[2] for r in ranges)
        histograms = _compute(
            *[
                _delayed(_histogram)(i, c, o, self.with_duplicates, self.lo, self.hi)
                for i, c, o in zip(self.indices, self.cosines, self.offsets)
            ]
        )
        similarity = (
            CalibratedCosineSimilarity()
            if est.similarity is None
            else clone(est.similarity)
        )
        similarity._validate_params()
        sample = _histogram_quantiles(
            np.sum(histograms, axis=0),
            self.lo,
            self.hi,
            n_values,
            similarity.n_quantiles,
        )
        hashes = np.concatenate(
            _compute(*[_delayed(block_hashes)(block) for block in self.rows])
        )
        rows = self.rows
        background = background_level(
            random_pair_cosines(hashes, lambda ids: _unit(blocks.gather(rows, ids))),
            n,
            self.k,
        )
        similarity._fit_sample(sample, background)
        return similarity

    def pair_similarities(self, similarity):
        """Pair similarities, rows sorted by them, and both transition
        matrices, per block."""
        n = self.blocks.n
        parts = [
            _delayed(_transitions, nout=6)(i, c, similarity, self.params, n)
            for i, c in zip(self.indices, self.cosines)
        ]
        self.indices, self.s, self.cosines, self.p, self.q, self.shares = _persist_each(
            _persist(*parts), 6
        )

    def density(self):
        """The blocks' shares summed pairwise on the workers, one vector to
        the client (exact in any order: see the module docstring)."""
        (density,) = _compute(_pairwise_sum(self.shares))
        del self.shares  # the blocks' n-long shares, freed on the workers
        return density

    def tpdi(self):
        """Each block fetches its partners' transition rows once, one owner
        block after the other (a chain of tasks, so that a block never
        holds more than one owner's rows: when the rows are in no
        particular order, a block lists nearly every row of the data). In
        waves of as many blocks as the cluster runs tasks at once."""
        blocks, indices, q, n = self.blocks, self.indices, self.q, self.blocks.n
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
                    wanted = _delayed(_wanted)(listed, start, stop)
                    piece = _delayed(_rows_of)(
                        indices[j], q[j], self.offsets[j], wanted
                    )
                    out = step(indices[i], q[i], n, out, piece)
                batch.append(out)
            distances.extend(_persist(*batch))
        del self.q
        self.distances = distances

    def density_rank(self, density):
        """The rank on the client, from each row's neighbours' density."""
        around = _compute(*[_delayed(_around)(i, density) for i in self.indices])
        return rank_by_density(density, np.concatenate(around))

    def peaks_below_tau(self, rank):
        tau = self.est.tau
        return np.concatenate(
            _compute(
                *[
                    _delayed(_block_parents)(i, d, rank, tau, o)
                    for i, d, o in zip(self.indices, self.distances, self.offsets)
                ]
            )
        )

    def saturated_links(self, peaks, rank, similarity, confirm=None):
        """Saturated peaks, solved on the rows they reach in two steps."""
        if not self.est.link_saturated:
            return peaks.copy()
        return _link_saturated(
            self.blocks,
            self.rows,
            self.indices,
            self.cosines,
            peaks.copy(),
            rank,
            similarity,
            self.offsets,
            confirm,
        )

    def flow_merge(self, parents, labels):
        """The flow merge on the cluster flows summed on the workers."""
        if self.est.merge_threshold is None:
            return labels, parents
        n_clusters = int(labels.max()) + 1
        flows = [
            _delayed(_block_flows)(i, pb, o, labels, n_clusters)
            for i, pb, o in zip(self.indices, self.p, self.offsets)
        ]
        return _merged(self.est, parents, labels, flows)

    def refit(self, similarity, labels):
        """The calibration refitted to ``labels``: the fine histogram of
        the pairs, split by them, summed over the blocks."""
        counts = _compute(
            *[
                _delayed(_shared_histograms)(
                    i, c, o, self.with_duplicates, labels, self.lo, self.hi
                )
                for i, c, o in zip(self.indices, self.cosines, self.offsets)
            ]
        )
        return clone(similarity)._fit_shares(
            np.sum([c[0] for c in counts], axis=0),
            np.sum([c[1] for c in counts], axis=0),
            self.lo,
            self.hi,
        )

    def recalibrate(self, merge_calibration):
        self.merge_calibration = merge_calibration

    def isolated_links(self, parents, density, rank, similarity):
        """The peaks that no neighbour lists, linked per block."""
        parents = parents.copy()
        isolated = _compute(
            *[
                _delayed(_isolated)(
                    i,
                    c,
                    parents[o : o + size],
                    density,
                    rank,
                    o,
                    self.merge_calibration,
                    similarity,
                )
                for i, c, o, size in zip(
                    self.indices, self.cosines, self.offsets, self.blocks.sizes
                )
            ]
        )
        for linked_rows, targets in isolated:
            parents[linked_rows] = targets
        return parents

    def likely_counts(self, labels, targets):
        """The likely pairs under the refitted calibration from the clusters
        ``targets`` of ``labels``, counted per block and summed."""
        n_clusters = int(labels.max()) + 1
        counts = [
            _delayed(_likely_block_counts)(
                i, c, self.merge_calibration, o, labels, n_clusters, targets
            )
            for i, c, o in zip(self.indices, self.cosines, self.offsets)
        ]
        (total,) = _compute(_pairwise_sum(counts))
        return total

    def second_merge(self, parents):
        """The merge on the blocks' flows of the refitted similarities and
        their counts of likely pairs between clusters."""
        second = components_from_parents(parents)
        n_clusters = int(second.max()) + 1
        flows = [
            _delayed(_recalibrated_flows, nout=2)(
                i, c, self.merge_calibration, self.params, o, second, n_clusters
            )
            for i, c, o in zip(self.indices, self.cosines, self.offsets)
        ]
        return _merged(
            self.est,
            parents,
            second,
            [f for f, _ in flows],
            [connected for _, connected in flows],
        )

    def closed_groups(self, parents, labels, rank):
        """The closed groups on the client, from the lists of the small
        clusters' samples (gathered)."""
        rows = small_cluster_rows(labels)
        if rows.size == 0:
            return parents
        lists = [_delayed(_first_columns)(i, GROUP_COLUMNS) for i in self.indices]
        lists = self.blocks.gather(lists, rows)
        return closed_group_links(parents, labels, rank, rows, lists)

    def duplicate_links(self):
        found = _compute(
            *[
                _delayed(_duplicates)(i, c, o)
                for i, c, o in zip(self.indices, self.cosines, self.offsets)
            ]
        )
        return (
            np.concatenate([d[0] for d in found]),
            np.concatenate([d[1] for d in found]),
        )

    def unit_rows(self):
        """The unit rows of given sample ids, as a function: gathered from
        the blocks to the client."""
        return lambda ids: _unit(self.blocks.gather(self.rows, ids))

    def attributes(self, similarity, merge_calibration, density, labels, parents):
        import dask.array as da

        sizes, k = self.blocks.sizes, self.k
        chunks = (tuple(sizes),)

        def stacked(parts, dtype):
            return da.concatenate(
                [
                    da.from_delayed(part, (size, k), dtype)
                    for part, size in zip(parts, sizes)
                ]
            )

        return {
            "similarity_": similarity,
            "merge_calibration_": merge_calibration,
            "neighbors_": stacked(self.indices, np.int32),
            "pair_similarities_": stacked(self.s, np.float32),
            "density_": da.from_array(density, chunks=chunks),
            "tpdi_": stacked(self.distances, np.float32),
            "labels_": da.from_array(labels, chunks=chunks),
            "parents_": da.from_array(parents, chunks=chunks),
            "n_clusters_": int(labels.max()) + 1,
        }


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
