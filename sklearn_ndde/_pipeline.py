"""The stages of the method, in order, on one machine.

:func:`fit_stages` builds the kNN graph and hands it to
:func:`cluster_graph`, which runs every stage after it (each a public pure
function of its own module) and returns the fitted attributes of
:class:`~sklearn_ndde.NDDeTPDiClustering`, whose parameters ``est`` holds.
The Dask path (:mod:`._dask_fit`) runs the same stages on row blocks and
shares the helpers below.
"""

import time
from contextlib import contextmanager

import numpy as np
from sklearn.base import clone

from ._calibration import same_above
from ._density import ndde_density
from ._kernels import nearest_denser
from ._knn import _search_method
from ._memory import check_memory, fit_bytes
from ._merge import likely_connectivity, merge_by_flow
from ._neighbors import knn_graph
from ._peaks import (
    ISOLATED_CLEARANCE,
    components_from_parents,
    density_rank,
    isolated_peak_links,
    links_below_tau,
    saturated_links,
)
from ._precomputed import graph_to_neighbors
from ._progress import log, progress
from ._tpdi import tpdi
from ._transition import transition_matrix
from ._validation import DUPLICATE_GAP, clipped_k
from .similarity import CalibratedCosineSimilarity

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


def sort_by_similarity(indices, similarities, *aligned):
    """Each row by decreasing similarity; ``aligned`` arrays follow along."""
    order = np.argsort(-similarities, axis=1, kind="stable")
    return tuple(
        np.take_along_axis(a, order, axis=1) for a in (indices, similarities, *aligned)
    )


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


def fit_stages(est, X, Xn, n_rows=None):
    """The stages on validated ``X`` (``Xn``: its unit rows, or None;
    ``n_rows``: the rows of the user's data, copies included)."""
    precomputed = est.metric == "precomputed"
    n = X.shape[0]
    k = clipped_k(est.k, n, stacklevel=5, n_rows=n_rows)
    method = est.knn_method
    if method == "auto" and not precomputed:
        method, _ = _search_method(n, method, est.device)
    check_memory(
        fit_bytes(n, 0 if precomputed else X.shape[1], k, method),
        f"NDDeTPDiClustering.fit on {n} samples with k={k}",
    )
    out = {}
    stage = stage_logger(est.verbose)

    with stage("kNN graph"):
        if precomputed:
            indices, distances = graph_to_neighbors(X, k, square=True)
            cosines = (1.0 - distances).astype(np.float32)
            out["_fit_X"] = None
            out["knn_recall_"] = None
        else:
            indices, cosines, out["knn_recall_"] = knn_graph(
                Xn,
                k,
                method=est.knn_method,
                recall=est.knn_recall,
                random_state=est.random_state,
                n_jobs=est.n_jobs,
                device=est.device,
                verbose=est.verbose,
                return_recall=True,
            )
            out["_fit_X"] = Xn
            if est.verbose:
                log(
                    "[NDDeTPDiClustering] kNN recall of the likely neighbours: "
                    f"{out['knn_recall_']:.3f}"
                )

    out.update(
        cluster_graph(
            est, indices, cosines, None if precomputed else X, out["_fit_X"], stage
        )
    )
    out["n_features_in_"] = est.n_features_in_
    if hasattr(est, "feature_names_in_"):
        out["feature_names_in_"] = est.feature_names_in_
    return out


def cluster_graph(est, indices, cosines, X, Xn, stage):
    """Every stage after the kNN graph (``indices``, ``cosines``; ``X``:
    the embeddings for a learned similarity, ``Xn`` their unit rows, or
    None), each inside ``stage(name)``; returns the fitted attributes.
    ``benchmarks/speed_after_knn.py`` times them through this method."""
    k = indices.shape[1]
    with stage("pair similarity"):
        similarity = fitted_similarity(est, indices, cosines, Xn)
        s = pair_similarity(similarity, X, indices, cosines)
        indices, s, cosines = sort_by_similarity(indices, s, cosines)

    with stage("NDDe density"):
        P = transition_matrix(
            indices, s, sigma=est.density_sigma, top=min(int(est.density_k), k)
        )
        density = ndde_density(P, n_iter=est.density_iter)

    with stage("TPDi distance"):
        Q = transition_matrix(indices, s, sigma=est.distance_sigma)
        distances = tpdi(Q, indices, n_jobs=est.n_jobs, verbose=est.verbose)
        del Q

    with stage("density peaks"):
        # The strict density order, once for every kind of link.
        rank = density_rank(density, indices)
        peaks = links_below_tau(
            nearest_denser(rank, indices, distances), indices, distances, est.tau
        )
        parents = _saturated_links(
            est, peaks, rank, indices, s, Xn, similarity, cosines
        )
        labels = components_from_parents(parents)

    with stage("flow merge"):
        if est.merge_threshold is not None:
            labels, parents = merge_by_flow(parents, P, threshold=est.merge_threshold)
        del P

    with stage("recalibration"):
        merge_calibration = None
        if recalibrates(est, similarity):
            refit = clone(similarity).fit_labels(indices, cosines, labels)
            # A curve of zeros: no pair of the graph shares a cluster.
            merge_calibration = refit if refit.curve_.any() else None
        if merge_calibration is not None:
            # The links again with the refitted similarities (the
            # saturated peaks, then the peaks that no neighbour lists);
            # then the merge over the density neighbours of the first
            # (the first columns: rows are sorted by the first
            # similarity). A merge needs a pair of the two clusters that
            # is more likely one identity than not.
            refitted = merge_calibration.calibrate(cosines)
            relinked = _saturated_links(
                est, peaks, rank, indices, refitted, Xn, merge_calibration, cosines
            )
            # A link that no flow back confirms needs both calibrations,
            # and a pair clear of the unrelated samples.
            relinked = isolated_peak_links(
                relinked,
                density,
                indices,
                unconfirmed(refitted, s, cosines, similarity),
                rank,
            )
            top = min(int(est.density_k), k)
            refitted = refitted[:, :top]
            P = transition_matrix(indices[:, :top], refitted, sigma=est.density_sigma)
            labels, parents = merge_by_flow(
                relinked,
                P,
                threshold=est.merge_threshold,
                connectivity=likely_connectivity(indices[:, :top], refitted),
            )
            del P, refitted
        duplicates = duplicate_links(indices, cosines)
        if duplicates[0].size:
            labels = components_from_parents(parents, duplicates)

    return {
        "similarity_": similarity,
        "merge_calibration_": merge_calibration,
        "neighbors_": indices,
        "pair_similarities_": s,
        "density_": density,
        "tpdi_": distances,
        "labels_": labels,
        "parents_": parents,
        "n_clusters_": int(labels.max()) + 1,
    }


def _saturated_links(est, peaks, rank, indices, s, Xn, similarity, cosines):
    """The density peaks' links ``peaks`` with the saturated peaks
    linked under the similarities ``s`` of ``similarity`` (with
    ``link_saturated`` and the unit rows ``Xn`` at hand), as a new
    array; ``rank``: the strict density order."""
    if not est.link_saturated or Xn is None:
        return peaks.copy()
    return saturated_links(
        peaks.copy(),
        indices,
        s,
        Xn,
        similarity,
        rank,
        cosines=cosines,
        n_jobs=est.n_jobs,
    )


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
    if not np.all((s >= -1e-6) & (s <= 1 + 1e-6)):
        raise ValueError(
            f"{type(sim).__name__}.pair_similarity must return values in [0, 1] "
            "(NaN included in the check)."
        )
    return np.clip(s, 0.0, 1.0).astype(np.float32, copy=False)


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
