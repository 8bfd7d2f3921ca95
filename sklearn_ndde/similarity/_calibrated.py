"""Training-free pair similarity: cosine calibrated by a mixture model."""

import numbers

import numba
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._calibration import (
    _GRID_SIZE,
    _HISTOGRAM_BINS,
    background_of,
    cosine_quantiles,
    mixture_curve,
)
from .._kernels import interp_uniform, kept_range, pair_histograms
from .._neighbors import knn_graph
from .._validation import DUPLICATE_GAP, check_neighbors
from ._base import pair_cosines


def _pair_histograms(values, same, lo, hi):
    """Counts of the pairs' cosines ``values`` in the fine bins over
    ``[lo, hi]``, of all of them and of those whose two samples share a
    cluster (``same``): sums over any split of the pairs, as
    :func:`_cosine_histogram`."""
    # The bins computed here rather than by np.histogram, which refuses a
    # range too narrow for float32 (constant data) and copies to float64.
    scale = np.float32(_HISTOGRAM_BINS / max(hi - lo, 1e-6))
    bins = np.subtract(values, np.float32(lo), dtype=np.float32)
    bins *= scale
    bins = bins.astype(np.int32)
    np.clip(bins, 0, _HISTOGRAM_BINS - 1, out=bins)
    bins[same] += _HISTOGRAM_BINS  # the shared pairs in a second run of bins
    counts = np.bincount(bins, minlength=2 * _HISTOGRAM_BINS)
    shared = counts[_HISTOGRAM_BINS:]
    return counts[:_HISTOGRAM_BINS] + shared, shared


def _chunks(rows):
    """Slices of the rows for the parallel histogram kernels."""
    return max(1, min(rows.size, 4 * numba.get_num_threads()))


def shared_histograms(indices, values, rows, labels, floor, lo, hi):
    """:func:`_pair_histograms` of the kept pairs of the lists ``indices``
    (rows ``rows``, float32 ``values``; pairs at ``floor`` or above are left
    out), all of them and those whose samples share a ``labels`` value:
    sums over any split of the rows (the Dask path adds them block by
    block)."""
    scale = np.float32(_HISTOGRAM_BINS / max(hi - lo, 1e-6))
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        _, labels = np.unique(labels, return_inverse=True)
    return pair_histograms(
        indices,
        values,
        np.asarray(rows, dtype=np.int64),
        labels,
        np.float32(floor),
        np.float32(lo),
        scale,
        _HISTOGRAM_BINS,
        _chunks(rows),
    )


def _same_cluster(indices, labels, rows=None):
    """Whether each pair of the graph has its two samples in one cluster
    (``rows``: the sample ids of the rows, default ``0 .. n - 1``)."""
    labels = np.asarray(labels)
    narrow = np.iinfo(np.int32)
    if labels.dtype.kind in "iu" and labels.size:
        if narrow.min <= labels.min() and labels.max() <= narrow.max:
            labels = labels.astype(np.int32)  # a narrower gather
    own = labels[:, None] if rows is None else labels[rows][:, None]
    return labels[indices] == own


def _share_curve(total, shared, lo, hi, grid):
    """The share of pairs in one cluster as a non-decreasing function of the
    cosine: the isotonic regression of the bins' shares, weighted by their
    counts, at ``grid`` (the end values beyond the cosines seen)."""
    hi = max(hi, lo + 1e-6)
    centres = lo + (np.arange(total.size) + 0.5) * (hi - lo) / total.size
    seen = total > 0
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    isotonic.fit(centres[seen], shared[seen] / total[seen], sample_weight=total[seen])
    return isotonic.predict(grid)


def _pairs_left_out(indices, similarities):
    """The pairs a calibration ignores: each sample with itself, and exact
    duplicates unless nothing else is left."""
    is_self = indices == np.arange(indices.shape[0])[:, None]
    if is_self.all():
        raise ValueError("The kNN graph holds no pair of distinct samples.")
    # Exact duplicates (the same photo twice) say nothing about how an
    # identity varies; a pile of them would take a mixture component of
    # its own at cosine 1 and push every real pair below it.
    duplicate = similarities >= 1.0 - DUPLICATE_GAP
    if not (is_self | duplicate).all():
        is_self = is_self | duplicate
    return is_self


class CalibratedCosineSimilarity(BaseEstimator):
    """Cosine similarity mapped to a same-identity probability, without labels.

    Face-embedding cosines live in a narrow, model-specific band (0.88 to
    0.98 for dlib, 0.2 to 0.8 for an ArcFace MobileFaceNet), where the
    method's softmax temperatures are meaningless. The cosines of a kNN
    graph, self pairs left out, mix two populations: the few neighbours of
    the same identity, high, and the many others, whose upper tail is
    skewed. A Gaussian mixture with ``n_components`` components is fitted to
    their distribution; the posterior of the same-identity components, made
    non-decreasing in the cosine, is the similarity. Fitted on every data
    set's own graph, it adapts to the embedding model with no label.
    :meth:`fit_labels` fits the curve to a clustering of the data instead
    (the share of the graph's pairs it puts in one cluster), which
    :class:`~sklearn_ndde.NDDeTPDiClustering` does with its own first
    clustering before merging again (``recalibrate``).

    Parameters
    ----------
    n_neighbors : int, default=80
        Neighbours per sample (the sample itself included) of the graph
        built by :meth:`fit`; unused by :meth:`fit_neighbors`.
    n_components : int, default=3
        Components of the mixture; the highest is "same identity". Three (two
        for the skewed background) matched a label-supervised isotonic
        calibration on the LFW training split of two embedding models.
    n_quantiles : int, default=100_000
        The mixture is fitted to this many evenly spaced quantiles of the
        cosines, which bounds its cost and makes it independent of the
        order of the samples.

    Attributes
    ----------
    grid_ : ndarray of shape (4097,)
        Cosines at which the calibration curve is tabulated.
    curve_ : ndarray of shape (4097,)
        Same-identity probability at ``grid_``, non-decreasing, linearly
        interpolated in between.
    mixture_ : GaussianMixture or None
        The fitted mixture; None after :meth:`fit_labels`.
    same_components_ : ndarray
        Components taken as "same identity": those above the widest gap
        between consecutive component means, in standard deviations of the
        lower component, and those at least 1.5 standard deviations of the
        unrelated pairs' cosines above ``background_``; empty after
        :meth:`fit_labels`.
    background_ : float or None
        The cosine at which a sample's unrelated neighbours sit in its kNN
        list, from random pairs of the embeddings (see :meth:`fit_neighbors`);
        None without the embeddings and after :meth:`fit_labels`.
    background_scale_ : float or None
        The standard deviation of the unrelated pairs' cosines, None with
        ``background_``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde import knn_graph
    >>> from sklearn_ndde.datasets import make_face_embeddings
    >>> from sklearn_ndde.similarity import CalibratedCosineSimilarity
    >>> X, y = make_face_embeddings(2000, 200, dim=64, spread=(0.4, 1.0),
    ...                             random_state=0)
    >>> indices, cosines = knn_graph(X, 20)
    >>> sim = CalibratedCosineSimilarity().fit_neighbors(indices, cosines)
    >>> s = sim.pair_similarity(X, indices)
    >>> same = y[indices] == y[:, None]
    >>> bool(s[same].mean() > 0.9 > 0.1 > s[~same].mean())
    True
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(numbers.Integral, 2, None, closed="left")],
        "n_components": [Interval(numbers.Integral, 2, None, closed="left")],
        "n_quantiles": [Interval(numbers.Integral, 10, None, closed="left")],
    }

    def __init__(self, n_neighbors=80, n_components=3, n_quantiles=100_000):
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.n_quantiles = n_quantiles

    def fit(self, X, y=None):
        """Fit the calibration to the exact cosine kNN graph of ``X``.

        :class:`~sklearn_ndde.NDDeTPDiClustering` does this itself, on the
        graph it builds anyway; call it to inspect the calibration.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : None
            Ignored: the calibration needs no labels.

        Returns
        -------
        self : object
            The fitted calibration.
        """
        X = np.asarray(X)
        n_neighbors = min(self.n_neighbors, X.shape[0]) if X.ndim == 2 else 2
        indices, similarities = knn_graph(X, n_neighbors, method="exact")
        return self.fit_neighbors(indices, similarities, X=X)

    def fit_neighbors(self, indices, similarities, X=None):
        """Fit the calibration to the cosines of a kNN graph.

        Parameters
        ----------
        indices : array-like of shape (n_samples, n_neighbors)
            Neighbour ids; pairs of a sample with itself, and exact duplicates
        (cosine within 1e-5 of 1), are left out unless nothing else is left.
        similarities : array-like of shape (n_samples, n_neighbors)
            Cosine similarities aligned with ``indices``.
        X : array-like of shape (n_samples, n_features), default=None
            The embeddings the graph was built from. Random pairs of them
            say where unrelated samples sit in a kNN list
            (``background_``): a component of the mixture far above that is
            same-identity, even when no list holds unrelated samples to
            fit a component of their own (every identity larger than the
            lists). None: the mixture alone decides.

        Returns
        -------
        self : object
            The fitted calibration.
        """
        self._validate_params()
        indices, similarities = check_neighbors(indices, similarities)
        background = None
        if X is not None:
            background = background_of(X, indices.shape[0], indices.shape[1])
        return self._fit_sample(
            cosine_quantiles(
                similarities,
                self.n_quantiles,
                exclude=_pairs_left_out(indices, similarities),
            ),
            background,
        )

    def fit_labels(self, indices, similarities, labels):
        """Fit the calibration to how often a kNN graph's pairs share a cluster.

        The mixture of :meth:`fit_neighbors` must guess the shape of the
        same-identity cosines; with a weak embedding model they spread wide
        (an ArcFace MobileFaceNet's run from 0.3 to 0.9) and the mixture
        gives their lower half to the background. A first clustering sees
        them: the share of the graph's pairs whose two samples it puts in
        one cluster, as a non-decreasing function of the cosine (an
        isotonic regression), follows the share of same-identity pairs
        closely when the clustering is pure.
        :class:`~sklearn_ndde.NDDeTPDiClustering` does this with its own
        first clustering (``recalibrate=True``).

        Parameters
        ----------
        indices : array-like of shape (n_samples, n_neighbors)
            Neighbour ids; pairs of a sample with itself, and exact
            duplicates, are left out as in :meth:`fit_neighbors`.
        similarities : array-like of shape (n_samples, n_neighbors)
            Cosine similarities aligned with ``indices``.
        labels : array-like of shape (n_samples,)
            A clustering of the samples, such as ``labels_``: samples with
            equal labels are in one cluster (``-1`` is a label like any
            other).

        Returns
        -------
        self : object
            The fitted calibration.
        """
        self._validate_params()
        indices, similarities = check_neighbors(indices, similarities)
        labels = np.asarray(labels)
        if labels.shape != (indices.shape[0],):
            raise ValueError(
                f"labels must have shape ({indices.shape[0]},), one per row of "
                f"indices; got {labels.shape}."
            )
        rows = np.arange(indices.shape[0])
        values = np.ascontiguousarray(similarities, dtype=np.float32)
        # Exact duplicates are left out unless nothing else is left.
        floor = np.float32(1.0 - DUPLICATE_GAP)
        count, lo, hi = kept_range(indices, values, rows, floor, _chunks(rows))
        if count == 0:
            floor = np.float32(np.inf)
            count, lo, hi = kept_range(indices, values, rows, floor, _chunks(rows))
        if count == 0:
            raise ValueError("The kNN graph holds no pair of distinct samples.")
        total, shared = shared_histograms(
            indices, values, rows, labels, floor, float(lo), float(hi)
        )
        return self._fit_shares(total, shared, float(lo), float(hi))

    def _fit_shares(self, total, shared, lo, hi):
        """Fit the curve to the summed :func:`_pair_histograms`."""
        self.grid_ = np.linspace(min(-1.0, lo), 1.0, _GRID_SIZE)
        self.curve_ = _share_curve(total, shared, lo, hi, self.grid_)
        self.mixture_ = None
        self.same_components_ = np.array([], dtype=int)
        self.background_ = self.background_scale_ = None
        return self

    def _fit_sample(self, sample, background=None):
        """Fit the mixture and the curve to the quantiles ``sample``, with
        the background of the data (:func:`background_of`), if known."""
        self.background_ = None if background is None else background[0]
        self.background_scale_ = None if background is None else background[1]
        self.grid_, self.curve_, self.mixture_, self.same_components_ = mixture_curve(
            sample, background, self.n_components
        )
        return self

    def calibrate(self, similarities):
        """Map cosine similarities to same-identity probabilities.

        Parameters
        ----------
        similarities : array-like
            Cosine similarities, any shape.

        Returns
        -------
        probabilities : ndarray of the same shape, float32
            In [0, 1], non-decreasing in the cosine.
        """
        check_is_fitted(self, "curve_")
        similarities = np.asarray(similarities)
        if similarities.dtype not in (np.float32, np.float64):
            similarities = similarities.astype(np.float64)
        values = np.ascontiguousarray(similarities).ravel()
        out = np.empty(values.size, dtype=np.float32)
        lo = float(self.grid_[0])
        step = (float(self.grid_[-1]) - lo) / (self.grid_.size - 1)
        interp_uniform(values, lo, step, self.curve_.astype(np.float64), out)
        if np.isnan(out).any():
            raise ValueError("similarities contain NaN; cosines are finite.")
        return out.reshape(similarities.shape)

    def pair_similarity(self, X, indices, Y=None):
        """Calibrated cosine of each ``(X[i], Y[indices[i, c]])`` pair.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Anchors.
        indices : array-like of shape (n_samples, n_neighbors)
            Rows of ``Y`` paired with each anchor.
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Neighbours; ``X`` itself when None.

        Returns
        -------
        similarities : ndarray of shape (n_samples, n_neighbors), float32
            Same-identity probabilities in [0, 1].
        """
        check_is_fitted(self, "curve_")
        indices = np.asarray(indices)
        return self.calibrate(pair_cosines(X, indices, Y))
