"""The stages of the method after the kNN graph, in order, written once.

:func:`run_stages` calls them in order on a graph object that runs each
stage: :class:`._numpy_stages.NumpyStages` on arrays in memory,
:class:`._dask_fit.DaskStages` on the row blocks of a Dask array. Each
stage is one or a few public pure functions of its own module; the helpers
below are shared by both.
"""

import time
from contextlib import contextmanager

import numpy as np
from sklearn.base import clone

from ._calibration import same_above
from ._diagnostics import warn_if_one_random_cluster
from ._kernels import descending_order, take_rows
from ._merge import links_with_flow_back
from ._peaks import (
    ISOLATED_CLEARANCE,
    components_from_parents,
)
from ._progress import log, progress
from ._validation import DUPLICATE_GAP
from .similarity import CalibratedCosineSimilarity

# Rows per block of an in-place sort.
_SORT_BLOCK = 65536

STAGES = (
    "kNN graph",
    "pair similarity",
    "NDDe density",
    "TPDi distance",
    "density peaks",
    "flow merge",
    "recalibration",
)


def duplicate_links(indices, cosines, rows=None):
    """Links ``(a, b)`` between near-duplicates, to put them in one cluster.

    Pairs of the kNN graph at cosine 1 within float rounding
    (``DUPLICATE_GAP``), such as one photo encoded twice, are linked; exact
    copies never get here (``fit`` clusters one of each). ``rows`` are the
    sample ids of the rows (default ``0 .. n - 1``; a Dask block's own).
    """
    rows = np.arange(indices.shape[0]) if rows is None else rows
    near = cosines >= 1.0 - DUPLICATE_GAP
    near &= indices != rows[:, None]
    r, c = np.nonzero(near)
    return rows[r], indices[r, c]


def sort_by_similarity(indices, similarities, *aligned, in_place=False):
    """Each row by decreasing similarity; ``aligned`` arrays follow along.

    New arrays, or with ``in_place`` the given ones sorted in blocks of
    rows (no (n, k) array allocated)."""
    arrays = (indices, similarities, *aligned)
    if not in_place:
        order = descending_order(np.asarray(similarities))
        return tuple(take_rows(a, order) for a in arrays)
    for start in range(0, similarities.shape[0], _SORT_BLOCK):
        rows = slice(start, start + _SORT_BLOCK)
        order = descending_order(similarities[rows])
        for a in arrays:
            a[rows] = take_rows(a[rows], order)
    return arrays


def unconfirmed(refitted, first, cosines, similarity):
    """The similarity of a link that no flow back confirms: the smaller of
    the refitted and the first one, and 0 for a pair whose cosine is not
    ``ISOLATED_CLEARANCE`` scales above the calibration's background
    (where known)."""
    out = np.minimum(refitted, first)
    if getattr(similarity, "background_", None) is not None:
        ceiling = same_above(
            (similarity.background_, similarity.background_scale_),
            ISOLATED_CLEARANCE,
        )
        out[cosines < ceiling] = 0.0
    return out


def run_stages(est, graph, stage):
    """The stages after the kNN graph, in order: the one place that says
    what the method does after the search.

    ``graph`` holds the kNN graph and runs each stage on it: the whole
    arrays in memory (:class:`._numpy_stages.NumpyStages`) or their row
    blocks on a Dask cluster (:class:`._dask_fit.DaskStages`); ``est``
    holds the parameters. Each stage runs inside ``stage(name)``. Returns
    the fitted attributes.
    """
    with stage("pair similarity"):
        similarity = graph.fit_similarity()
        graph.pair_similarities(similarity)

    with stage("NDDe density"):
        density = graph.density()

    with stage("TPDi distance"):
        graph.tpdi()

    with stage("density peaks"):
        # The strict density order, once for every kind of link.
        rank = graph.density_rank(density)
        peaks = graph.peaks_below_tau(rank)
        parents = graph.saturated_links(peaks, rank, similarity)
        labels = components_from_parents(parents)

    with stage("flow merge"):
        labels, parents = graph.flow_merge(parents, labels)

    with stage("recalibration"):
        merge_calibration = None
        if recalibrates(est, similarity):
            refit = graph.refit(similarity, labels)
            # A curve of zeros: no pair of the graph shares a cluster.
            merge_calibration = refit if refit.curve_.any() else None
        if merge_calibration is not None:
            # The links again with the refitted similarities (the saturated
            # peaks, then the peaks that no neighbour lists); then the merge
            # over the density neighbours of the first (the first columns:
            # rows are sorted by the first similarity). A merge needs a pair
            # of the two clusters that is more likely one identity than not.
            graph.recalibrate(merge_calibration)
            # A link needs the first calibration's assent too (``confirmed``).
            relinked = graph.saturated_links(
                peaks, rank, merge_calibration, confirm=calibration_of(similarity)
            )
            # A link between two clusters of the first merge needs flow back.
            relinked = links_with_flow_back(
                relinked, peaks, labels, lambda t: graph.likely_counts(labels, t)
            )
            # A link that no flow back confirms needs both calibrations, and
            # a pair clear of the unrelated samples.
            relinked = graph.isolated_links(relinked, density, rank, similarity)
            labels, parents = graph.second_merge(relinked)
        if est.merge_threshold is not None:
            # Lone samples whose nearest neighbours list one another and
            # stay among them are one sparse identity (``_groups``).
            parents = graph.closed_groups(parents, labels, rank)
            labels = components_from_parents(parents)
        duplicates = graph.duplicate_links()
        if duplicates[0].size:
            labels = components_from_parents(parents, duplicates)

    unit_rows = graph.unit_rows()
    if unit_rows is not None:
        # One cluster no more alike than random pairs: strangers joined, or
        # one person (``_diagnostics``). The frames above: run_stages, the
        # path's fit (fit_stages or fit_dask), _fit or fit_on_dask, fit,
        # scikit-learn's wrapper, the caller.
        warn_if_one_random_cluster(unit_rows, labels, graph.k, stacklevel=6)

    return graph.attributes(
        similarity=similarity,
        merge_calibration=merge_calibration,
        density=density,
        labels=labels,
        parents=parents,
    )


def calibration_of(similarity):
    """``similarity`` where it is a calibration of the cosine (has
    ``calibrate``), else None."""
    return similarity if hasattr(similarity, "calibrate") else None


def recalibrates(est, similarity):
    """Whether the fit merges again with a calibration refitted to its
    first clustering (``recalibrate``): with the flow merge and a
    training-free similarity that has ``fit_labels``."""
    training_free = est.similarity is None or hasattr(est.similarity, "fit_neighbors")
    return (
        est.recalibrate
        and est.merge_threshold is not None
        and training_free
        and hasattr(similarity, "fit_labels")
    )


def fitted_similarity(est, indices, cosines, X):
    """The pair similarity fitted on the graph (a training-free one; the
    calibration also reads random pairs of the unit rows ``X``)."""
    if est.similarity is None:
        return CalibratedCosineSimilarity().fit_neighbors(indices, cosines, X=X)
    if isinstance(est.similarity, CalibratedCosineSimilarity):
        return clone(est.similarity).fit_neighbors(indices, cosines, X=X)
    if hasattr(est.similarity, "fit_neighbors"):
        return clone(est.similarity).fit_neighbors(indices, cosines)
    if est.metric == "precomputed":
        raise ValueError(
            f"{type(est.similarity).__name__} needs the embeddings, which "
            "metric='precomputed' does not give; use metric='cosine' or a "
            "training-free similarity."
        )
    return est.similarity


def pair_similarity(sim, X, indices, cosines, Y=None):
    if X is None or (hasattr(sim, "calibrate") and cosines is not None):
        s = sim.calibrate(cosines)
    else:
        s = sim.pair_similarity(X, indices, Y)
    s = np.asarray(s)
    if s.shape != indices.shape:
        raise ValueError(
            f"{type(sim).__name__}.pair_similarity returned shape {s.shape}, "
            f"expected {indices.shape}."
        )
    # Two reductions rather than (n, k) temporaries; a NaN fails both.
    lo, hi = (s.min(), s.max()) if s.size else (0.0, 0.0)
    if not (lo >= -1e-6 and hi <= 1 + 1e-6):
        raise ValueError(
            f"{type(sim).__name__}.pair_similarity must return values in [0, 1] "
            "(NaN included in the check)."
        )
    if lo < 0.0 or hi > 1.0:
        s = np.clip(s, 0.0, 1.0)
    return s.astype(np.float32, copy=False)


def stage_logger(verbose):
    """``with stage(name):`` shows the stage as a step of a progress bar."""
    bar = progress("NDDeTPDiClustering", len(STAGES), verbose, "stage", leave=True)

    @contextmanager
    def stage(name):
        bar.set_postfix_str(name)
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            bar.close()
            raise
        if verbose:
            log(f"[NDDeTPDiClustering] {name}: {time.perf_counter() - start:.2f} s")
        bar.update(1)
        if bar.n == len(STAGES):
            bar.close()

    return stage
