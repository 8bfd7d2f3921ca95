"""NDDeTPDiClustering: the estimator over the pure functions."""

import numbers
import time
import warnings
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context, clone
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._calibration import same_above
from ._density import ndde_density
from ._kernels import bhattacharyya_pairs, nearest_denser, numba_threads
from ._knn import _search_method, exact_knn_to, knn_graph
from ._knn_dask import is_dask_array
from ._memory import check_memory, fit_bytes
from ._merge import likely_connectivity, merge_by_flow
from ._peaks import (
    ISOLATED_CLEARANCE,
    components_from_parents,
    density_rank,
    isolated_peak_links,
    links_below_tau,
    saturated_links,
)
from ._progress import log, progress
from ._tpdi import tpdi
from ._transition import row_softmax, transition_matrix
from ._validation import DUPLICATE_GAP, N_JOBS_CONSTRAINT, _normalize_rows
from .similarity import CalibratedCosineSimilarity


def _graph_to_neighbors(G, n_neighbors, square):
    """Rows of a sparse distance graph as ``(indices, distances)`` arrays.

    Each row keeps its ``n_neighbors`` smallest stored distances. For a
    square (training) graph the sample itself is put in column 0 at distance
    0 whether or not it is stored, and counts towards ``n_neighbors``.
    """
    # A copy: sum_duplicates sorts the index arrays in place, and a
    # converted matrix may still share them with the caller's graph.
    G = sp.csr_matrix(G, dtype=np.float64, copy=True)
    G.sum_duplicates()
    n = G.shape[0]
    if not np.all(np.isfinite(G.data)) or (G.data < 0).any():
        raise ValueError(
            "The precomputed graph must hold finite non-negative distances."
        )
    if G.data.size and G.data.max() > 2.0 + 1e-6:
        raise ValueError(
            f"The precomputed graph holds distances up to {G.data.max():.4g}; "
            "cosine distances (1 - cos) lie in [0, 2]. Build it with "
            "metric='cosine'."
        )
    rows = np.repeat(np.arange(n), np.diff(G.indptr))
    cols, dist = G.indices, G.data
    wanted = n_neighbors
    if square:
        other = cols != rows
        rows, cols, dist = rows[other], cols[other], dist[other]
        wanted -= 1
    counts = np.bincount(rows, minlength=n)
    short = np.flatnonzero(counts < wanted)
    if short.size:
        raise ValueError(
            f"The precomputed graph has fewer than {wanted} neighbours (besides the "
            f"sample itself) in {short.size} row(s), e.g. row {short[0]} has "
            f"{counts[short[0]]}; build it with at least n_neighbors={wanted} or "
            f"lower k."
        )
    order = np.lexsort((cols, dist, rows))
    rows, cols, dist = rows[order], cols[order], dist[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(rows.size) - start[rows]
    keep = rank < wanted
    indices = cols[keep].reshape(n, wanted)
    distances = dist[keep].reshape(n, wanted)
    if square:
        indices = np.hstack([np.arange(n)[:, None], indices])
        distances = np.hstack([np.zeros((n, 1)), distances])
    return indices.astype(np.int32), distances


# TPDi values this close count as equal in predict (float32 rounding).
_TIE_TOLERANCE = 1e-6

_STAGES = (
    "kNN graph",
    "pair similarity",
    "NDDe density",
    "TPDi distance",
    "density peaks",
    "flow merge",
    "recalibration",
)
_FITTED_ATTRIBUTES = (
    "_fit_X",
    "_fit_distinct",
    "similarity_",
    "merge_calibration_",
    "neighbors_",
    "pair_similarities_",
    "density_",
    "tpdi_",
    "labels_",
    "parents_",
    "n_clusters_",
    "knn_recall_",
    "n_features_in_",
    "feature_names_in_",
)


def _duplicate_links(indices, cosines, rows=None):
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


def _sort_by_similarity(indices, similarities, *aligned):
    """Each row by decreasing similarity; ``aligned`` arrays follow along."""
    order = np.argsort(-similarities, axis=1, kind="stable")
    return tuple(
        np.take_along_axis(a, order, axis=1) for a in (indices, similarities, *aligned)
    )


class NDDeTPDiClustering(ClusterMixin, BaseEstimator):
    """Density-peak clustering with NDDe density and TPDi distance.

    The method of Chen et al. (ECCV 2022) for grouping face embeddings by
    identity, built to keep small and sparse identities whole. It needs no
    labels and no training:

    1. a cosine kNN graph (:func:`knn_graph`);
    2. a same-identity probability for every kNN pair (``similarity``;
       by default :class:`~sklearn_ndde.similarity.CalibratedCosineSimilarity`,
       fitted on the data's own graph), each row re-ordered by it;
    3. two row-softmax transition matrices (:func:`transition_matrix`);
    4. NDDe, a density with mean 1 in every cluster whatever its size
       (:func:`ndde_density`);
    5. TPDi, a distance between transition rows (:func:`tpdi`);
    6. each sample linked to its TPDi-nearest neighbour of higher-or-equal
       density when closer than ``tau``; clusters are the connected
       components of the links (:func:`density_peaks`);
    7. with ``link_saturated``, peaks inside identities larger than ``k``
       linked on to a denser sample (:func:`link_saturated_peaks`);
    8. with ``merge_threshold``, clusters that exchange much of the density
       flow both ways merged (:func:`merge_by_flow`);
    9. with ``recalibrate``, the training-free calibration refitted to how
       often the graph's pairs share a cluster after step 8
       (:meth:`~sklearn_ndde.similarity.CalibratedCosineSimilarity.fit_labels`);
       the links of steps 6-7 made again from the density peaks with the
       refitted similarities, plus a link for each peak that hardly any
       neighbour lists to a very alike denser neighbour
       (:func:`link_isolated_peaks`); and the merge of step 8 made again
       from those links, with the flows of the refitted similarities; two
       clusters merge only when some density pair between them is more
       likely one identity than not (refitted similarity at least 0.5).

    Every intermediate result is kept as a fitted attribute, so a user can
    re-run the last steps with another ``tau``::

        _, peaks = density_peaks(est.density_, est.neighbors_, est.tpdi_, tau=0.5)
        # The second pass, with the calibration refitted to the first
        # clustering (recalibrate): the links, then the merge over the
        # density neighbours, which needs a pair of the two clusters more
        # likely one identity than not (without recalibrate:
        # link_saturated_peaks with est.pair_similarities_ and
        # est.similarity_, then merge_by_flow(parents, P) with the P of
        # est.pair_similarities_).
        cal = est.merge_calibration_
        s = cal.pair_similarity(X, est.neighbors_)
        _, parents = link_saturated_peaks(
            peaks, est.density_, est.neighbors_, s, X, cal)
        _, parents = link_isolated_peaks(parents, est.density_, est.neighbors_, s)
        top, s = est.neighbors_[:, :est.density_k], s[:, :est.density_k]
        P = transition_matrix(top, s, sigma=est.density_sigma)
        likely = knn_to_graph(top, s >= 0.5)  # from sklearn_ndde.io
        labels, parents = merge_by_flow(parents, P, connectivity=likely)

    Parameters
    ----------
    k : int, default=80
        Neighbours per sample, the sample itself included (the paper's k).
        Clipped, with a warning, to the number of samples.
    tau : float in (0, 1], default=0.3
        Largest TPDi of a link, and of a new sample's match in
        :meth:`predict`. The paper uses 0.7 with its links alone; with the
        flow merge after them, a stricter 0.3 makes purer fragments for the
        merge to join (chosen on the LFW training identities, both embedding
        models, four identity-size regimes). Lower it for purer, smaller
        clusters.
    similarity : object, default=None
        Pair similarity with a ``pair_similarity(X, indices, Y=None)``
        method (see :class:`~sklearn_ndde.similarity.PairSimilarity`).
        ``None`` means a
        :class:`~sklearn_ndde.similarity.CalibratedCosineSimilarity`.
        A training-free similarity (one with ``fit_neighbors``) is cloned and
        fitted on each data set's graph; any other, such as a trained learned
        model, is used as it is and never modified.
    density_k : int, default=20
        Neighbours (by similarity, the sample itself included) of the
        density transition matrix.
    density_sigma : float, default=0.5
        Softmax temperature of the density transition matrix.
    distance_sigma : float, default=0.05
        Softmax temperature of the distance (TPDi) transition matrix.
    density_iter : int or None, default=1
        ``n_iter`` of :func:`ndde_density`: 1 is the authors' one-step
        density, more (or None, until converged) the paper's full diffusion.
    link_saturated : bool, default=True
        Link each peak whose whole kNN list is judged its own identity
        (pair similarity >= 0.5) to a denser sample two steps away
        (:func:`link_saturated_peaks`). TPDi cannot see past the k-th
        neighbour, so without this an identity with many more than ``k``
        samples splits into several clusters. False gives the paper's rule
        alone. Needs the embeddings: ``metric="precomputed"`` skips it.
    merge_threshold : float > 0 or None, default=0.18
        Merge the clusters that exchange much of the NDDe density flow in
        both directions (:func:`merge_by_flow`): in identities whose faces
        vary a lot, TPDi leaves fragments that the flow joins back. Lower
        merges more; None gives the links alone (the paper's rule with
        ``link_saturated=False`` and ``tau=0.7``).
    recalibrate : bool, default=True
        Make the links and the flow merge a second time, with the
        calibration refitted to the first clustering: the share of the
        graph's pairs that it puts in one cluster, as a non-decreasing
        function of the cosine (``merge_calibration_``). The mixture of the
        first calibration must guess the shape of the same-identity
        cosines, and misses the lower half of a weak embedding model's (an
        ArcFace MobileFaceNet's run from 0.3 to 0.9); a pure first
        clustering sees them. From the density peaks of ``tau`` (the
        density, TPDi and peaks keep the first calibration), the saturated
        peaks are linked again under the refitted similarities, each peak
        that hardly any neighbour lists links to a denser neighbour when
        that pair is very likely one identity (:func:`link_isolated_peaks`:
        the faces at the edge of an identity much larger than the density
        neighbourhood receive no flow back), and two clusters merge only
        when some density pair between them has a refitted similarity of
        at least 0.5: the flow of a lone face goes to its neighbours however
        unlike them it is, the refitted probability says whether any is
        likely the same person. Applies with the flow merge and a
        training-free similarity that has ``fit_labels`` (the default one),
        and when some pair of the first clustering shares a cluster.
    knn_method : {"auto", "exact", "ivf", "pynndescent"}, default="auto"
        Neighbour search, see :func:`knn_graph`: exact up to 30,000
        samples, faiss's IVF search calibrated to ``knn_recall`` up to
        1,000,000, pynndescent above.
    knn_recall : float in (0, 1], default=0.99
        Recall target of the IVF search: the share of the likely
        neighbours (exact neighbours whose calibrated similarity is at
        least 0.5, the pairs the clustering acts on) it must find,
        measured at run time on 1,000 sampled rows (``knn_recall_``).
        Higher is slower and closer to the exact graph
        (``benchmarks/knn_recall.py``).
    metric : {"cosine", "precomputed"}, default="cosine"
        ``"precomputed"`` takes ``X`` as a sparse (n_samples, n_samples) graph
        of cosine distances (``1 - cos``), as made by
        ``KNeighborsTransformer(mode="distance", metric="cosine")``, with at
        least ``k - 1`` neighbours per row besides the sample itself.
    n_jobs : int, default=None
        Threads of the neighbour search and the TPDi kernel (None: all).
    device : str, default="auto"
        Where the exact neighbour search runs (see :func:`knn_graph`):
        ``"auto"`` uses, above 30,000 samples, a CUDA GPU through torch when
        there is one (and then searches exactly at any size), else the CPU;
        ``"cpu"``; or a torch device such as ``"cuda:1"``.
    random_state : int, RandomState instance or None, default=None
        Seed of the approximate neighbour search; the rest is deterministic.
    verbose : int, default=0
        Print the time of each stage to stderr when > 0.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each sample, consecutive from 0.
    n_clusters_ : int
        Number of clusters, singletons included.
    knn_recall_ : float or None
        Recall of the kNN graph: 1.0 for an exact search, else the share of
        the likely neighbours found on 1,000 sampled rows (see
        ``knn_recall``); None for a precomputed graph.
    neighbors_ : ndarray of shape (n_samples, k)
        Neighbour ids of each sample, by decreasing pair similarity.
    pair_similarities_ : ndarray of shape (n_samples, k)
        Pair similarity aligned with ``neighbors_``.
    density_ : ndarray of shape (n_samples,)
        NDDe density of each sample. Exact copies of a sample (the same unit
        vector) are clustered once: each repeats its original's density,
        neighbours, similarities and TPDi, links to it (``parents_``) and
        shares its cluster, so copies change nothing else in the partition.
        Without copies or zero rows the densities sum to n_samples.
    tpdi_ : ndarray of shape (n_samples, k)
        TPDi distance aligned with ``neighbors_``.
    parents_ : ndarray of shape (n_samples,)
        The sample each one links to, -1 for roots. The links form a forest
        with exactly one root per cluster: a density peak, or the root of
        a cluster that no merge joined to another. (Exact duplicates are
        put in one cluster on top of these links.)
    similarity_ : object
        The pair similarity that was used (the fitted clone for a
        training-free one).
    merge_calibration_ : CalibratedCosineSimilarity or None
        The calibration refitted to the first clustering, whose
        similarities made the links again, weighted the second flow merge
        and chose the pairs that may join two clusters (``recalibrate``);
        None when there was none.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when they are all strings.

    See Also
    --------
    knn_graph, transition_matrix, ndde_density, tpdi, density_peaks :
        The steps, as functions.
    sklearn.cluster.HDBSCAN : Density-based clustering without the size
        invariance.

    Notes
    -----
    Time O(n k^2) after the neighbour search, memory O(nk). :meth:`predict`
    keeps the training embeddings (``n_samples * n_features`` floats).

    References
    ----------
    Y. Chen, Z. Zhong et al., "On Mitigating Hard Clusters for Face
    Clustering", ECCV 2022, arXiv:2207.11895.

    Examples
    --------
    >>> from sklearn_ndde import NDDeTPDiClustering
    >>> from sklearn_ndde.datasets import make_face_embeddings
    >>> from sklearn_ndde.metrics import bcubed_fscore
    >>> X, y = make_face_embeddings(2000, 200, dim=64, spread=(0.4, 1.0),
    ...                             random_state=0)
    >>> est = NDDeTPDiClustering(k=30).fit(X)
    >>> bool(bcubed_fscore(y, est.labels_) > 0.95)
    True
    >>> bool((est.predict(X[:5]) == est.labels_[:5]).all())
    True
    """

    _parameter_constraints = {
        "k": [Interval(numbers.Integral, 2, None, closed="left")],
        "tau": [Interval(numbers.Real, 0, 1, closed="right")],
        "similarity": [HasMethods(["pair_similarity"]), None],
        "density_k": [Interval(numbers.Integral, 1, None, closed="left")],
        "density_sigma": [Interval(numbers.Real, 0, None, closed="neither")],
        "distance_sigma": [Interval(numbers.Real, 0, None, closed="neither")],
        "density_iter": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "link_saturated": ["boolean"],
        "merge_threshold": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "recalibrate": ["boolean"],
        "knn_method": [StrOptions({"auto", "exact", "ivf", "pynndescent"})],
        "knn_recall": [Interval(numbers.Real, 0, 1, closed="right")],
        "metric": [StrOptions({"cosine", "precomputed"})],
        "n_jobs": N_JOBS_CONSTRAINT,
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        k=80,
        tau=0.3,
        *,
        similarity=None,
        density_k=20,
        density_sigma=0.5,
        distance_sigma=0.05,
        density_iter=1,
        link_saturated=True,
        merge_threshold=0.18,
        recalibrate=True,
        knn_method="auto",
        knn_recall=0.99,
        metric="cosine",
        n_jobs=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.k = k
        self.tau = tau
        self.similarity = similarity
        self.density_k = density_k
        self.density_sigma = density_sigma
        self.distance_sigma = distance_sigma
        self.density_iter = density_iter
        self.link_saturated = link_saturated
        self.merge_threshold = merge_threshold
        self.recalibrate = recalibrate
        self.knn_method = knn_method
        self.knn_recall = knn_recall
        self.metric = metric
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Cluster ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples)
            Embeddings, or a sparse distance graph if
            ``metric="precomputed"``.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # Forget any previous fit first: an error or Ctrl-C below must leave
        # the estimator unfitted, never half-fitted.
        self._forget_fit()
        try:
            if is_dask_array(X):
                fitted = self._fit_dask(X)
            else:
                fitted = self._fit(X)
        except BaseException:
            self._forget_fit()
            raise
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _validate_params(self):
        # Forget any previous fit before the parameters are checked: a refit
        # that fails validation leaves the estimator unfitted, as any other
        # failed fit does.
        self._forget_fit()
        super()._validate_params()
        flags = [
            name
            for name in (
                "k",
                "tau",
                "density_k",
                "density_sigma",
                "distance_sigma",
                "density_iter",
                "merge_threshold",
                "knn_recall",
            )
            if isinstance(getattr(self, name), (bool, np.bool_))
        ]
        if flags:
            raise InvalidParameterError(
                f"The {flags[0]!r} parameter of {type(self).__name__} must be a "
                f"number, not the bool {getattr(self, flags[0])!r}."
            )
        # (The default density_k under a small k is clipped without a word.)
        if self.density_k > self.k and self.density_k != 20:
            warnings.warn(
                f"density_k={self.density_k} is larger than k={self.k}; the "
                f"density uses the k={self.k} neighbours there are.",
                UserWarning,
                stacklevel=4,
            )

    def _clipped_k(self, n, stacklevel, n_rows=None):
        """``k`` as a Python integer (numpy ones overflow in products), at
        most ``n``, with a warning when clipped (``stacklevel`` counted from
        the caller of this method); ``n_rows``: the rows of ``X`` when ``n``
        counts its distinct ones."""
        k = int(self.k)
        if k > n:
            what = (
                f"the number of samples ({n})"
                if n_rows is None or n_rows == n
                else f"the number of distinct samples ({n} of {n_rows} rows: "
                "exact copies are clustered once)"
            )
            warnings.warn(
                f"k={k} is larger than {what}; using k={n}.",
                UserWarning,
                stacklevel=stacklevel,
            )
            k = n
        return k

    def _predict_dask(self, X):
        """``predict`` after a fit on a dask array (queries in memory)."""
        from ._dask_fit import predict_dask

        if is_dask_array(X):
            X = X.compute()
        X = self._validate_input(X, reset=False)
        Xq, query_zero = _unit_rows_warning_zeros(X, "so they get -1", stacklevel=4)
        if query_zero.any():
            Xq[query_zero, 0] = 1.0
        return predict_dask(self, Xq, query_zero, _TIE_TOLERANCE)

    def _fit_dask(self, X):
        """``fit`` on a row-chunked dask array, on the current Dask client."""
        from ._dask_fit import fit_dask

        unsupported = []
        if self.metric != "cosine":
            unsupported.append(f"metric={self.metric!r}")
        if self.similarity is not None and not isinstance(
            self.similarity, CalibratedCosineSimilarity
        ):
            unsupported.append(f"similarity={type(self.similarity).__name__}()")
        if self.knn_method == "pynndescent":
            unsupported.append("knn_method='pynndescent'")
        if self.density_iter != 1:
            unsupported.append(f"density_iter={self.density_iter!r}")
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
        fitted = fit_dask(self, X, self._clipped_k(n, stacklevel=4))
        fitted["n_features_in_"] = int(X.shape[1])
        return fitted

    def _forget_fit(self):
        for name in _FITTED_ATTRIBUTES:
            self.__dict__.pop(name, None)

    def _fit(self, X):
        """Run every stage; return the fitted attributes without setting them."""
        precomputed = self.metric == "precomputed"
        if isinstance(self.similarity, type):
            name = self.similarity.__name__
            raise TypeError(
                f"similarity must be an instance, such as {name}(), not the class "
                f"{name}."
            )
        X = self._validate_input(X, reset=True)
        if precomputed and X.shape[0] != X.shape[1]:
            raise ValueError(
                f"With metric='precomputed', X must be a square graph, got shape "
                f"{X.shape}."
            )
        if precomputed:
            return self._fit_stages(X, None)
        Xn, zero = _unit_rows_warning_zeros(
            X, "so each is a cluster of its own", stacklevel=5
        )
        original = _originals(Xn, zero)
        keep = np.flatnonzero(original == np.arange(original.size))
        if keep.size < 2:
            # One vector, repeated: cluster the copies themselves.
            keep = np.flatnonzero(~zero)
            original[keep] = keep
        if keep.size < 2:
            raise ValueError(
                f"X has {keep.size} non-zero row(s); clustering needs at least 2 "
                "under the cosine metric."
            )
        if keep.size == original.size:
            return self._fit_stages(X, Xn)
        return _spread_to_all_rows(
            self._fit_stages(X[keep], Xn[keep], n_rows=original.size),
            keep,
            original,
            Xn,
        )

    def _fit_stages(self, X, Xn, n_rows=None):
        """The stages on validated ``X`` (``Xn``: its unit rows, or None;
        ``n_rows``: the rows of the user's data, copies included)."""
        precomputed = self.metric == "precomputed"
        n = X.shape[0]
        k = self._clipped_k(n, stacklevel=5, n_rows=n_rows)
        method = self.knn_method
        if method == "auto" and not precomputed:
            method, _ = _search_method(n, method, self.device)
        check_memory(
            fit_bytes(n, 0 if precomputed else X.shape[1], k, method),
            f"NDDeTPDiClustering.fit on {n} samples with k={k}",
        )
        out = {}
        stage = self._stage_logger()

        with stage("kNN graph"):
            if precomputed:
                indices, distances = _graph_to_neighbors(X, k, square=True)
                cosines = (1.0 - distances).astype(np.float32)
                out["_fit_X"] = None
                out["knn_recall_"] = None
            else:
                indices, cosines, out["knn_recall_"] = knn_graph(
                    Xn,
                    k,
                    method=self.knn_method,
                    recall=self.knn_recall,
                    random_state=self.random_state,
                    n_jobs=self.n_jobs,
                    device=self.device,
                    verbose=self.verbose,
                    return_recall=True,
                )
                out["_fit_X"] = Xn
                if self.verbose:
                    log(
                        "[NDDeTPDiClustering] kNN recall of the likely neighbours: "
                        f"{out['knn_recall_']:.3f}"
                    )

        out.update(
            self._cluster_graph(
                indices, cosines, None if precomputed else X, out["_fit_X"], stage
            )
        )
        out["n_features_in_"] = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            out["feature_names_in_"] = self.feature_names_in_
        return out

    def _cluster_graph(self, indices, cosines, X, Xn, stage):
        """Every stage after the kNN graph (``indices``, ``cosines``; ``X``:
        the embeddings for a learned similarity, ``Xn`` their unit rows, or
        None), each inside ``stage(name)``; returns the fitted attributes.
        ``benchmarks/speed_after_knn.py`` times them through this method."""
        k = indices.shape[1]
        with stage("pair similarity"):
            similarity = self._fitted_similarity(indices, cosines, Xn)
            s = self._pair_similarity(similarity, X, indices, cosines)
            indices, s, cosines = _sort_by_similarity(indices, s, cosines)

        with stage("NDDe density"):
            P = transition_matrix(
                indices, s, sigma=self.density_sigma, top=min(int(self.density_k), k)
            )
            density = ndde_density(P, n_iter=self.density_iter)

        with stage("TPDi distance"):
            Q = transition_matrix(indices, s, sigma=self.distance_sigma)
            distances = tpdi(Q, indices, n_jobs=self.n_jobs, verbose=self.verbose)
            del Q

        with stage("density peaks"):
            # The strict density order, once for every kind of link.
            rank = density_rank(density, indices)
            peaks = links_below_tau(
                nearest_denser(rank, indices, distances), indices, distances, self.tau
            )
            parents = self._saturated_links(
                peaks, rank, indices, s, Xn, similarity, cosines
            )
            labels = components_from_parents(parents)

        with stage("flow merge"):
            if self.merge_threshold is not None:
                labels, parents = merge_by_flow(
                    parents, P, threshold=self.merge_threshold
                )
            del P

        with stage("recalibration"):
            merge_calibration = None
            if self._recalibrates(similarity):
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
                relinked = self._saturated_links(
                    peaks, rank, indices, refitted, Xn, merge_calibration, cosines
                )
                # A link that no flow back confirms needs both calibrations,
                # and a pair clear of the unrelated samples.
                relinked = isolated_peak_links(
                    relinked,
                    density,
                    indices,
                    _unconfirmed(refitted, s, cosines, similarity),
                    rank,
                )
                top = min(int(self.density_k), k)
                refitted = refitted[:, :top]
                P = transition_matrix(
                    indices[:, :top], refitted, sigma=self.density_sigma
                )
                labels, parents = merge_by_flow(
                    relinked,
                    P,
                    threshold=self.merge_threshold,
                    connectivity=likely_connectivity(indices[:, :top], refitted),
                )
                del P, refitted
            duplicates = _duplicate_links(indices, cosines)
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

    def _saturated_links(self, peaks, rank, indices, s, Xn, similarity, cosines):
        """The density peaks' links ``peaks`` with the saturated peaks
        linked under the similarities ``s`` of ``similarity`` (with
        ``link_saturated`` and the unit rows ``Xn`` at hand), as a new
        array; ``rank``: the strict density order."""
        if not self.link_saturated or Xn is None:
            return peaks.copy()
        return saturated_links(
            peaks.copy(),
            indices,
            s,
            Xn,
            similarity,
            rank,
            cosines=cosines,
            n_jobs=self.n_jobs,
        )

    def _recalibrates(self, similarity):
        """Whether the fit merges again with a calibration refitted to its
        first clustering (``recalibrate``): with the flow merge and a
        training-free similarity that has ``fit_labels``."""
        training_free = self.similarity is None or hasattr(
            self.similarity, "fit_neighbors"
        )
        return (
            self.recalibrate
            and self.merge_threshold is not None
            and training_free
            and hasattr(similarity, "fit_labels")
        )

    def predict(self, X):
        """Assign new samples to the fitted clusters.

        A new sample takes its ``k`` nearest training samples as neighbours
        and gets its transition row and TPDi distances from them by the same
        formulas. No training sample transitions to it, so it receives no
        NDDe density and every neighbour is denser: it joins the cluster of
        its TPDi-nearest training neighbour when that distance is below
        ``tau``, and gets -1 otherwise. A copy of a training sample (cosine
        within 1e-5 of 1) takes that sample's cluster, as exact duplicates
        do in :meth:`fit`, so a training sample passed again gets its own
        label back.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_queries, n_features) or \
                (n_queries, n_samples_fit)
            Embeddings, or with ``metric="precomputed"`` a sparse graph of
            cosine distances to the training samples (as made by
            ``KNeighborsTransformer.transform``).

        Returns
        -------
        labels : ndarray of shape (n_queries,)
            Cluster of each sample, -1 when none is within ``tau``.
        """
        check_is_fitted(self, "labels_")
        if is_dask_array(self.labels_):
            return self._predict_dask(X)
        precomputed = self.metric == "precomputed"
        X = self._validate_input(X, reset=False)
        n_fit, k = self.neighbors_.shape
        if precomputed:
            if X.shape[1] != n_fit:
                raise ValueError(
                    f"With metric='precomputed', X must have one column per training "
                    f"sample ({n_fit}), got {X.shape[1]}."
                )
            indices, distances = _graph_to_neighbors(X, k, square=False)
            duplicate = distances[:, 0] <= DUPLICATE_GAP
            s = self._pair_similarity(
                self.similarity_, None, indices, (1.0 - distances).astype(np.float32)
            )
        else:
            Xq, query_zero = _unit_rows_warning_zeros(X, "so they get -1", stacklevel=3)
            if query_zero.any():
                # Any unit row keeps the similarity defined; the label is -1.
                Xq[query_zero, 0] = 1.0
            # Zero rows of the training data match nothing either, and an
            # exact copy stands for its original only once, as in fit.
            distinct = getattr(self, "_fit_distinct", None)
            candidates = (
                np.arange(n_fit) if distinct is None else np.flatnonzero(distinct)
            )
            Y = self._fit_X if candidates.size == n_fit else self._fit_X[candidates]
            indices = exact_knn_to(Xq, Y, k, n_jobs=self.n_jobs)
            s = self._pair_similarity(self.similarity_, Xq, indices, None, Y=Y)
            if candidates.size < n_fit:
                indices = candidates[indices]
            duplicate = np.einsum("ij,ij->i", Xq, self._fit_X[indices[:, 0]]) >= (
                1.0 - DUPLICATE_GAP
            )
            duplicate &= ~query_zero
        # An exact copy of a training sample takes its cluster, as in fit.
        copy_of = indices[:, 0]
        indices, s = _sort_by_similarity(indices, s)
        Q = transition_matrix(
            self.neighbors_, self.pair_similarities_, sigma=self.distance_sigma
        )
        rows = row_softmax(s.astype(Q.dtype), self.distance_sigma)
        m = indices.shape[0]
        with numba_threads(self.n_jobs) as threads:
            dist = bhattacharyya_pairs(
                np.arange(0, m * k + 1, k, dtype=np.int64),
                indices.astype(np.int32).ravel(),
                np.sqrt(rows).ravel(),
                indices.astype(np.int32),
                np.argsort(indices[:, 0], kind="stable"),
                max(1, min(m, 4 * threads)),
                Q.indptr.astype(np.int64),
                Q.indices.astype(np.int32),
                np.sqrt(Q.data),
                n_fit,
                np.empty((m, k), dtype=Q.dtype),
            )
        # Distances equal up to float rounding are ties, won by the earlier
        # (more similar) column: a training point queried again finds itself.
        nearest = dist.min(axis=1)
        column = np.argmax(dist <= nearest[:, None] + _TIE_TOLERANCE, axis=1)
        labels = self.labels_[indices[np.arange(m), column]]
        labels = np.where(nearest < self.tau, labels, -1)
        labels[duplicate] = self.labels_[copy_of[duplicate]]
        if not precomputed:
            labels[query_zero] = -1
        return labels

    def _validate_input(self, X, reset):
        """Dense embeddings, or a sparse graph with ``metric="precomputed"``."""
        precomputed = self.metric == "precomputed"
        if sp.issparse(X) and not precomputed:
            raise TypeError(
                "A sparse X is only accepted with metric='precomputed', as a kNN "
                "distance graph; pass the embeddings as a dense array."
            )
        if precomputed and sp.issparse(X) and X.dtype.kind != "f":
            raise ValueError(
                f"With metric='precomputed', X must hold cosine distances "
                f"(1 - cos) as floats, got dtype {X.dtype}."
            )
        return validate_data(
            self,
            X,
            accept_sparse="csr" if precomputed else False,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2 if reset else 1,
            reset=reset,
        )

    def _fitted_similarity(self, indices, cosines, X):
        """The pair similarity fitted on the graph (a training-free one; the
        calibration also reads random pairs of the unit rows ``X``)."""
        if self.similarity is None:
            return CalibratedCosineSimilarity().fit_neighbors(indices, cosines, X=X)
        if isinstance(self.similarity, CalibratedCosineSimilarity):
            return clone(self.similarity).fit_neighbors(indices, cosines, X=X)
        if hasattr(self.similarity, "fit_neighbors"):
            return clone(self.similarity).fit_neighbors(indices, cosines)
        if self.metric == "precomputed":
            raise ValueError(
                f"{type(self.similarity).__name__} needs the embeddings, which "
                "metric='precomputed' does not give; use metric='cosine' or a "
                "training-free similarity."
            )
        return self.similarity

    def _pair_similarity(self, sim, X, indices, cosines, Y=None):
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

    def _stage_logger(self):
        """``with stage(name):`` shows the stage as a step of a progress bar."""
        bar = progress(
            "NDDeTPDiClustering", len(_STAGES), self.verbose, "stage", leave=True
        )

        @contextmanager
        def stage(name):
            bar.set_postfix_str(name)
            start = time.perf_counter()
            try:
                yield
            except BaseException:
                bar.close()
                raise
            if self.verbose:
                log(f"[NDDeTPDiClustering] {name}: {time.perf_counter() - start:.2f} s")
            bar.update(1)
            if bar.n == len(_STAGES):
                bar.close()

        return stage

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.metric == "precomputed"
        tags.input_tags.sparse = self.metric == "precomputed"
        return tags


def _unconfirmed(refitted, first, cosines, similarity):
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


def _unit_rows_warning_zeros(X, consequence, stacklevel):
    """Unit rows of ``X`` and its zero rows, with one warning naming them
    (``stacklevel`` counted from here to the user's call)."""
    Xn = _normalize_rows(X, allow_zero=True)
    zero = ~Xn.any(axis=1)
    if zero.any():
        warnings.warn(
            f"X has {int(zero.sum())} all-zero row(s) (first at row "
            f"{int(np.argmax(zero))}); the cosine metric matches a zero vector "
            f"with nothing, {consequence}.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return Xn, zero


def _originals(Xn, zero, block=65536):
    """For each row of ``Xn``, the first row with the same unit vector
    (itself for a distinct row); -1 for zero rows.

    Rows are hashed (64 bits of their float32 bits, in blocks) and only rows
    whose hashes collide are compared byte for byte, so the cost is one pass
    over ``Xn`` rather than a sort of its rows.
    """
    n = Xn.shape[0]
    original = np.full(n, -1, dtype=np.intp)
    rows = np.flatnonzero(~zero)
    original[rows] = rows
    bits = np.ascontiguousarray(Xn, dtype=np.float32).view(np.uint32)
    multipliers = np.random.default_rng(0).integers(
        1, 2**63, size=bits.shape[1], dtype=np.uint64
    )
    hashes = np.empty(n, dtype=np.uint64)
    for start in range(0, n, block):
        part = bits[start : start + block].astype(np.uint64)
        hashes[start : start + block] = (part * multipliers).sum(axis=1)
    hashes = hashes[rows]
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    suspects = rows[counts[inverse.ravel()] > 1]
    if suspects.size:
        as_bytes = np.ascontiguousarray(Xn[suspects])
        as_bytes = as_bytes.view(np.dtype((np.void, as_bytes.strides[0]))).ravel()
        _, first, group = np.unique(as_bytes, return_index=True, return_inverse=True)
        original[suspects] = suspects[first[group.ravel()]]
    return original


def _spread_to_all_rows(out, keep, original, Xn):
    """Fitted attributes of the rows ``keep`` spread over all rows of ``Xn``.

    ``original[r]`` is the fitted row that row ``r`` copies exactly (the
    same unit vector), or -1 for a zero row. A copy repeats its original's
    neighbours, similarities, TPDi and density, links to it and shares its
    cluster, so copies change nothing else in the partition. A zero vector
    matches nothing: it is its own only neighbour (similarity 1 to itself,
    0 elsewhere, TPDi 1), keeps a density of 1 as a sample whose walk stays
    put, and is a cluster alone.
    """
    n = Xn.shape[0]
    zero = original < 0
    copy = ~zero & (original != np.arange(n))
    k = out["neighbors_"].shape[1]
    # Zero rows first: each its own only neighbour, a root of density 1.
    neighbors = np.repeat(np.arange(n, dtype=out["neighbors_"].dtype), k).reshape(n, k)
    s = np.zeros((n, k), dtype=out["pair_similarities_"].dtype)
    s[zero, 0] = 1.0
    distances = np.ones((n, k), dtype=out["tpdi_"].dtype)
    distances[zero, 0] = 0.0
    density = np.ones(n)
    labels = np.full(n, -1, dtype=np.intp)
    labels[zero] = out["labels_"].max() + 1 + np.arange(int(zero.sum()))
    neighbors[keep] = keep[out["neighbors_"]]
    parents = np.full(n, -1, dtype=np.intp)
    linked = out["parents_"] >= 0
    parents[keep[linked]] = keep[out["parents_"][linked]]
    parents[copy] = original[copy]
    # Then the fitted rows, and each copy as its original (a fitted row).
    for full, fitted in [
        (s, "pair_similarities_"),
        (distances, "tpdi_"),
        (density, "density_"),
        (labels, "labels_"),
    ]:
        full[keep] = out[fitted]
    for full in (neighbors, s, distances, density, labels):
        full[copy] = full[original[copy]]
    # Consecutive ids numbered by the first sample of each cluster, as always.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    labels = np.argsort(np.argsort(first))[inverse]
    out.update(
        _fit_X=Xn,
        _fit_distinct=~zero & ~copy,
        neighbors_=neighbors,
        pair_similarities_=s,
        tpdi_=distances,
        density_=density,
        parents_=parents,
        labels_=labels,
        n_clusters_=int(labels.max()) + 1,
    )
    return out
