"""Training-free pair similarity: cosine calibrated by a mixture model."""

import numbers

import numba
import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._kernels import interp_uniform, kept_range, pair_histograms
from .._knn import DUPLICATE_GAP, _normalize_rows, knn_graph
from .._validation import check_neighbors
from ._base import pair_cosines

_GRID_SIZE = 4097

#: Rows drawn, all their pairs measured, for the cosines of unrelated samples.
_BACKGROUND_ROWS = 2_000

#: A mixture component this many standard deviations of the unrelated
#: pairs' cosines above their expected level in a kNN list is same-identity.
SAME_ABOVE_BACKGROUND = 1.5


def row_hashes(X, columns=32, block=65536):
    """A 64-bit hash of each row of ``X`` (its first ``columns`` features as
    float32 bits), in blocks of rows: a key to draw rows by, the same
    whatever the order of the rows."""
    X = np.asarray(X)
    multipliers = np.random.default_rng(0).integers(
        1, 2**63, size=min(columns, X.shape[1]), dtype=np.uint64
    )
    hashes = np.empty(X.shape[0], dtype=np.uint64)
    for start in range(0, X.shape[0], block):
        part = np.ascontiguousarray(X[start : start + block, :columns], np.float32)
        hashes[start : start + block] = (
            part.view(np.uint32).astype(np.uint64) * multipliers
        ).sum(axis=1)
    return hashes


def random_pair_cosines(hashes, rows_of):
    """Cosines of every pair among at most ``_BACKGROUND_ROWS`` rows: those
    of lowest :func:`row_hashes` ``hashes``, so that they do not depend on
    the order of the rows (one matrix product; 2,000 rows give 2 million
    pairs). ``rows_of(ids)`` reads the rows of sorted ids (the Dask path
    gathers them from the blocks)."""
    m = min(hashes.size, _BACKGROUND_ROWS)
    chosen = np.argsort(hashes, kind="stable")[:m]
    ids = np.sort(chosen)
    units = _normalize_rows(np.asarray(rows_of(ids)), allow_zero=True)
    units = np.ascontiguousarray(units, dtype=np.float32)
    return (units @ units.T)[np.triu_indices(m, 1)]


def same_above(background, margin=SAME_ABOVE_BACKGROUND):
    """The cosine ``margin`` scales above ``background`` (as from
    :func:`background_level`): from the default margin up, a mixture
    component stands clear of the unrelated samples."""
    return background[0] + margin * background[1]


def background_level(cosines, n_samples, n_neighbors):
    """``(level, scale)``: where the unrelated samples of a kNN list sit.

    A sample with no other face of its identity lists the ``n_neighbors``
    best of ``n_samples`` unrelated samples: cosines near the
    ``1 - n_neighbors / n_samples`` quantile of the unrelated pairs'
    cosines. Those are measured on random pairs (``cosines``), most of
    them unrelated: a normal law fitted to their median and interquartile
    range (which the few same-identity pairs among them do not move) gives
    the quantile, and its standard deviation is the scale.
    """
    cosines = np.asarray(cosines, dtype=np.float64)
    if cosines.size < 100:
        return None
    low, median, high = np.quantile(cosines, [0.25, 0.5, 0.75])
    scale = (high - low) / (2 * norm.ppf(0.75))
    if not scale > 0:
        return None
    share = min(max(n_neighbors / max(n_samples, 1), 1e-12), 0.5)
    return float(median + scale * norm.ppf(1 - share)), float(scale)


def cosine_quantiles(similarities, n_quantiles, exclude=None):
    """Evenly spaced quantiles of the kNN cosines.

    ``n_quantiles`` of them, or one per cosine when there are fewer (but at
    least 1,000). Read off a fine histogram, so it runs in O(nk) without
    sorting and does not depend on the order of the samples.
    """
    values = _included(similarities, exclude)
    lo, hi = float(values.min()), float(values.max())
    counts = _cosine_histogram(values, lo, hi)
    return _histogram_quantiles(counts, lo, hi, values.size, n_quantiles)


#: Bins of the histogram the quantiles are read from.
_HISTOGRAM_BINS = 65536


def _included(similarities, exclude):
    """The cosines not excluded, as a flat float64 array."""
    values = similarities if exclude is None else similarities[~exclude]
    return values.ravel().astype(np.float64)


def _cosine_histogram(values, lo, hi):
    """Counts of ``values`` in the fine bins over ``[lo, hi]``: a sum over
    any split of the values (the Dask path adds them block by block)."""
    if hi - lo < 1e-6:
        return np.zeros(_HISTOGRAM_BINS, dtype=np.int64)
    return np.histogram(values, bins=_HISTOGRAM_BINS, range=(lo, hi))[0]


def _histogram_quantiles(counts, lo, hi, n_values, n_quantiles):
    """The quantiles of :func:`cosine_quantiles` from the histogram."""
    n_quantiles = min(n_quantiles, max(1000, n_values))
    if hi - lo < 1e-6:
        return np.full(n_quantiles, lo)
    edges = np.linspace(lo, hi, _HISTOGRAM_BINS + 1)
    cdf = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    cdf /= cdf[-1]
    q = (np.arange(n_quantiles) + 0.5) / n_quantiles
    return np.interp(q, cdf, edges)


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
            X = np.asarray(X)
            background = background_level(
                random_pair_cosines(row_hashes(X), X.__getitem__),
                indices.shape[0],
                indices.shape[1],
            )
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
        the :func:`background_level` of the data, if known."""
        n_distinct = np.unique(sample.round(6)).size
        n_components = min(self.n_components, n_distinct)
        lo = min(-1.0, float(sample.min()))
        self.grid_ = np.linspace(lo, 1.0, _GRID_SIZE)
        self.background_ = None if background is None else background[0]
        self.background_scale_ = None if background is None else background[1]
        if n_components < 2:
            # One value only: no evidence of two populations, nor of what an
            # identity looks like. Only near copies are taken as one
            # identity (two points repeated, or +x and -x, stay apart).
            self.mixture_ = None
            self.same_components_ = np.array([], dtype=int)
            value = float(sample[0])
            floor = (
                value - 1e-9 if value >= 1.0 - DUPLICATE_GAP else 1.0 - DUPLICATE_GAP
            )
            self.curve_ = (self.grid_ >= floor).astype(np.float64)
            return self
        self.mixture_ = GaussianMixture(
            n_components, random_state=0, reg_covar=1e-8
        ).fit(sample[:, None])
        means = self.mixture_.means_.ravel()
        sds = np.sqrt(self.mixture_.covariances_.ravel())
        order = np.argsort(means)
        # The same-identity components are those above the widest gap between
        # consecutive component means, in standard deviations of the lower one.
        gaps = np.diff(means[order]) / sds[order][:-1]
        same = order[int(np.argmax(gaps)) + 1 :]
        if background is not None:
            # Components far above the unrelated samples are same-identity
            # too: when every identity is larger than the lists, the lists
            # hold no unrelated samples, and the widest gap only splits the
            # identities' own cosines.
            level = background[0]
            ceiling = same_above(background)
            same = np.union1d(same, np.flatnonzero(means >= ceiling))
        self.same_components_ = np.sort(same)
        if self.same_components_.size == n_components:
            # No component of unrelated samples: every listed pair above
            # their level is same-identity, with certainty from the
            # ceiling up.
            ramp = (self.grid_ - level) / (ceiling - level)
            self.curve_ = np.clip(ramp, 0.0, 1.0)
            return self
        posterior = self.mixture_.predict_proba(self.grid_[:, None])
        curve = posterior[:, self.same_components_].sum(axis=1)
        # Gaussian tails are meaningless far from the data: no evidence of
        # identity below the lowest centre, certainty above the highest.
        curve[self.grid_ <= means.min()] = 0.0
        curve[self.grid_ >= means.max()] = 1.0
        self.curve_ = np.maximum.accumulate(curve)
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
