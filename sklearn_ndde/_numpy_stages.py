"""The stages after the kNN graph on one machine: the whole arrays in
memory, each stage one or two of the public pure functions.

:func:`._pipeline.run_stages` says in which order; :class:`NumpyStages`
says how, over numpy and ``scipy.sparse`` arrays. Its Dask counterpart is
:class:`._dask_fit.DaskStages`.
"""

import numpy as np
from sklearn.base import clone

from ._density import ndde_density
from ._groups import GROUP_COLUMNS, closed_group_links, small_cluster_rows
from ._kernels import nearest_denser
from ._knn import _search_method
from ._memory import check_memory, fit_bytes
from ._merge import likely_connectivity, likely_counts, merge_by_flow
from ._neighbors import knn_graph
from ._peaks import density_rank, isolated_peak_links, links_below_tau, saturated_links
from ._pipeline import (
    duplicate_links,
    fitted_similarity,
    pair_similarity,
    run_stages,
    sort_by_similarity,
    stage_logger,
    unconfirmed,
)
from ._precomputed import graph_to_neighbors
from ._progress import log
from ._tpdi import tpdi_of_sorted_graph
from ._transition import transition_matrix
from ._validation import clipped_k


class NumpyStages:
    """The kNN graph ``indices``, ``cosines`` of the estimator ``est``, with
    the embeddings ``X`` (for a learned similarity) and their unit rows
    ``Xn`` (None when the graph was precomputed), and the stages on it.
    With ``own_graph`` the graph's arrays are sorted in place (the fit's
    own search made them); otherwise they are left as they are."""

    def __init__(self, est, indices, cosines, X, Xn, own_graph=False):
        self.est, self.X, self.Xn = est, X, Xn
        self.indices, self.cosines = indices, cosines
        self.own_graph = own_graph
        self.k = indices.shape[1]
        self.top = min(int(est.density_k), self.k)

    def fit_similarity(self):
        return fitted_similarity(self.est, self.indices, self.cosines, self.Xn)

    def pair_similarities(self, similarity):
        """The first pair similarities; each row is then sorted by them."""
        s = pair_similarity(similarity, self.X, self.indices, self.cosines)
        self.indices, self.s, self.cosines = sort_by_similarity(
            self.indices, s, self.cosines, in_place=self.own_graph
        )

    def density(self):
        self.P = transition_matrix(
            self.indices, self.s, sigma=self.est.density_sigma, top=self.top
        )
        return ndde_density(self.P, n_iter=self.est.density_iter)

    def tpdi(self):
        # tpdi(transition_matrix(...)) without a second (n, k) array.
        self.distances = tpdi_of_sorted_graph(
            self.indices,
            self.s,
            self.est.distance_sigma,
            n_jobs=self.est.n_jobs,
            verbose=self.est.verbose,
        )

    def density_rank(self, density):
        return density_rank(density, self.indices)

    def peaks_below_tau(self, rank):
        nearest = nearest_denser(rank, self.indices, self.distances)
        return links_below_tau(nearest, self.indices, self.distances, self.est.tau)

    def saturated_links(self, peaks, rank, similarity, confirm=None):
        """``peaks`` with the saturated peaks linked under ``similarity``
        (the first one, or the refitted one after :meth:`recalibrate`, each
        link then confirmed by ``confirm``), as a new array."""
        if not self.est.link_saturated or self.Xn is None:
            return peaks.copy()
        first = similarity is not getattr(self, "merge_calibration", None)
        return saturated_links(
            peaks.copy(),
            self.indices,
            self.s if first else self.refitted,
            self.Xn,
            similarity,
            rank,
            cosines=self.cosines,
            n_jobs=self.est.n_jobs,
            confirm=confirm,
        )

    def flow_merge(self, parents, labels):
        if self.est.merge_threshold is not None:
            labels, parents = merge_by_flow(
                parents, self.P, threshold=self.est.merge_threshold
            )
        del self.P
        return labels, parents

    def refit(self, similarity, labels):
        return clone(similarity).fit_labels(self.indices, self.cosines, labels)

    def recalibrate(self, merge_calibration):
        self.merge_calibration = merge_calibration
        self.refitted = merge_calibration.calibrate(self.cosines)

    def likely_counts(self, labels, targets):
        """The likely pairs under the refitted calibration from the clusters
        ``targets`` of ``labels`` (:func:`._merge.likely_counts`)."""
        return likely_counts(
            self.indices, self.refitted, labels, int(labels.max()) + 1, targets
        )

    def isolated_links(self, parents, density, rank, similarity):
        def sims(rows):
            return unconfirmed(
                self.refitted[rows], self.s[rows], self.cosines[rows], similarity
            )

        return isolated_peak_links(parents, density, self.indices, sims, rank)

    def second_merge(self, parents):
        indices, refitted = self.indices[:, : self.top], self.refitted[:, : self.top]
        del self.refitted
        P = transition_matrix(indices, refitted, sigma=self.est.density_sigma)
        return merge_by_flow(
            parents,
            P,
            threshold=self.est.merge_threshold,
            connectivity=likely_connectivity(indices, refitted),
        )

    def closed_groups(self, parents, labels, rank):
        rows = small_cluster_rows(labels)
        lists = self.indices[rows, :GROUP_COLUMNS]
        return closed_group_links(parents, labels, rank, rows, lists)

    def duplicate_links(self):
        return duplicate_links(self.indices, self.cosines)

    def unit_rows(self):
        """The unit rows of given sample ids, as a function (None without
        embeddings: a precomputed graph)."""
        return None if self.Xn is None else self.Xn.__getitem__

    def attributes(self, similarity, merge_calibration, density, labels, parents):
        return {
            "similarity_": similarity,
            "merge_calibration_": merge_calibration,
            "neighbors_": self.indices,
            "pair_similarities_": self.s,
            "density_": density,
            "tpdi_": self.distances,
            "labels_": labels,
            "parents_": parents,
            "n_clusters_": int(labels.max()) + 1,
        }


def fit_stages(est, X, Xn, n_rows=None):
    """The stages on validated ``X`` (``Xn``: its unit rows, or None;
    ``n_rows``: the rows of the user's data, copies included)."""
    precomputed = est.metric == "precomputed"
    n = X.shape[0]
    k = clipped_k(est.k, n, stacklevel=6, n_rows=n_rows)
    method = est.knn_method
    if method == "auto" and not precomputed:
        method, _ = _search_method(n, method, est.device)
    # Unit float32 rows are used as they are: then no copy of them.
    rows_copied = Xn is not None and not np.may_share_memory(X, Xn)
    check_memory(
        fit_bytes(n, 0 if precomputed else X.shape[1], k, method, rows_copied),
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

    graph = NumpyStages(
        est, indices, cosines, None if precomputed else X, Xn, own_graph=True
    )
    # The stages replace the graph's arrays (sorted, then trimmed): no
    # reference here may keep the first ones alive.
    del indices, cosines
    out.update(run_stages(est, graph, stage))
    out["n_features_in_"] = est.n_features_in_
    if hasattr(est, "feature_names_in_"):
        out["feature_names_in_"] = est.feature_names_in_
    return out


def cluster_graph(est, indices, cosines, X, Xn, stage):
    """Every stage after the kNN graph (``indices``, ``cosines``; ``X``:
    the embeddings for a learned similarity, ``Xn`` their unit rows, or
    None) on one machine, each inside ``stage(name)``; returns the fitted
    attributes. ``benchmarks/speed_after_knn.py`` times them through this
    function."""
    return run_stages(est, NumpyStages(est, indices, cosines, X, Xn), stage)
