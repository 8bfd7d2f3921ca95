"""NDDeTPDiClustering: the estimator over the pure functions."""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._dask_fit import fit_on_dask
from ._knn_dask import is_dask_array
from ._numpy_stages import fit_stages
from ._predict import predict_labels, predict_on_dask_fit
from ._recall import DEFAULT_RECALL
from ._rows import originals, spread_to_all_rows, unit_rows_warning_zeros
from ._validation import N_JOBS_CONSTRAINT

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
       refitted similarities (confirmed by the first ones, and with flow
       back between clusters), plus a link for each peak that hardly any
       neighbour lists to a very alike denser neighbour
       (:func:`link_isolated_peaks`); and the merge of step 8 made again
       from those links, with the flows of the refitted similarities; two
       clusters merge only when some density pair between them is more
       likely one identity than not (refitted similarity at least 0.5);
    10. with ``merge_threshold``, the samples left alone or in pairs that
        are one another's nearest neighbours, and whose neighbour lists stay
        among them, joined as one cluster (a person whose faces vary a lot).

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
        peaks are linked again under the refitted similarities (each link
        also likely under the first, with flow back between clusters), each
        peak that hardly any neighbour lists links to a denser neighbour when
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
        samples, faiss's IVF search calibrated to ``knn_recall`` above
        (pynndescent where faiss is missing).
    knn_recall : float in (0, 1], default=0.98
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
        knn_recall=DEFAULT_RECALL,
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
                fitted = fit_on_dask(self, X)
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
                stacklevel=3,
            )

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
            return fit_stages(self, X, None)
        Xn, zero = unit_rows_warning_zeros(
            X, "so each is a cluster of its own", stacklevel=5
        )
        original = originals(Xn, zero)
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
            return fit_stages(self, X, Xn)
        return spread_to_all_rows(
            fit_stages(self, X[keep], Xn[keep], n_rows=original.size),
            keep,
            original,
            Xn,
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
            return predict_on_dask_fit(self, X)
        return predict_labels(self, X)

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.metric == "precomputed"
        tags.input_tags.sparse = self.metric == "precomputed"
        return tags
