"""Clustering quality against ground-truth identities.

Every sample counts, singletons included, and a label of ``-1`` (noise) in
either argument is taken as a cluster of its own for each such sample, never
as one big cluster. All scores run in O(n) through a sparse contingency
matrix.
"""

import numbers

import numpy as np
from sklearn.metrics import make_scorer
from sklearn.metrics.cluster import contingency_matrix

from ._validation import _normalize_rows

__all__ = [
    "bcubed_fscore",
    "bcubed_precision_recall_fscore",
    "bcubed_scorer",
    "hard_cluster_report",
    "pairwise_fscore",
    "pairwise_precision_recall_fscore",
    "pairwise_scorer",
]


def _check_labels(labels, name):
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {labels.shape}.")
    if labels.size == 0:
        raise ValueError(f"{name} is empty.")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"{name} must hold integer cluster ids.")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer cluster ids, got {labels.dtype}.")
    noise = labels == -1
    if noise.any():
        _, labels = np.unique(labels, return_inverse=True)
        labels = labels.astype(np.int64)
        labels[noise] = labels.max() + 1 + np.arange(noise.sum())
    return labels


def _contingency(labels_true, labels_pred):
    labels_true = _check_labels(labels_true, "labels_true")
    labels_pred = _check_labels(labels_pred, "labels_pred")
    if labels_true.shape != labels_pred.shape:
        raise ValueError(
            f"labels_true and labels_pred have different lengths "
            f"({labels_true.size} and {labels_pred.size})."
        )
    C = contingency_matrix(labels_true, labels_pred, sparse=True).tocsr()
    C.sum_duplicates()
    C.data = C.data.astype(np.float64)
    return C


def _f(precision, recall):
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def pairwise_precision_recall_fscore(labels_true, labels_pred):
    """Pairwise precision, recall and F-score of a clustering.

    Over all unordered pairs of samples: precision is the fraction of the
    pairs put in one cluster that share an identity, recall the fraction of
    the same-identity pairs put in one cluster.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth identities.
    labels_pred : array-like of shape (n_samples,)
        Predicted clusters; ``-1`` counts as a singleton per sample.

    Returns
    -------
    precision, recall, fscore : float
        A score whose denominator is 0 (no pair in any cluster) is 1.0.

    Examples
    --------
    >>> from sklearn_ndde.metrics import pairwise_precision_recall_fscore
    >>> pairwise_precision_recall_fscore([0, 0, 0, 1], [0, 0, 1, 1])
    (0.5, 0.3333333333333333, 0.4)
    """
    C = _contingency(labels_true, labels_pred)
    n = C.sum()
    tk = (C.data**2).sum() - n
    pk = (np.asarray(C.sum(axis=0)).ravel() ** 2).sum() - n
    qk = (np.asarray(C.sum(axis=1)).ravel() ** 2).sum() - n
    precision = float(tk / pk) if pk > 0 else 1.0
    recall = float(tk / qk) if qk > 0 else 1.0
    return precision, recall, _f(precision, recall)


def bcubed_precision_recall_fscore(labels_true, labels_pred):
    """BCubed precision, recall and F-score of a clustering.

    Per sample: precision is the fraction of its cluster that shares its
    identity, recall the fraction of its identity inside its cluster; both
    are averaged over samples.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth identities.
    labels_pred : array-like of shape (n_samples,)
        Predicted clusters; ``-1`` counts as a singleton per sample.

    Returns
    -------
    precision, recall, fscore : float

    Examples
    --------
    >>> from sklearn_ndde.metrics import bcubed_precision_recall_fscore
    >>> p, r, f = bcubed_precision_recall_fscore([0, 0, 0, 1], [0, 0, 1, 1])
    >>> round(p, 4), round(r, 4), round(f, 4)
    (0.75, 0.6667, 0.7059)
    """
    C = _contingency(labels_true, labels_pred).tocoo()
    n = C.data.sum()
    cluster_size = np.asarray(C.sum(axis=0)).ravel()
    class_size = np.asarray(C.sum(axis=1)).ravel()
    squares = C.data**2
    precision = float((squares / cluster_size[C.col]).sum() / n)
    recall = float((squares / class_size[C.row]).sum() / n)
    return precision, recall, _f(precision, recall)


def pairwise_fscore(labels_true, labels_pred):
    """Pairwise F-score; see :func:`pairwise_precision_recall_fscore`.

    Examples
    --------
    >>> from sklearn_ndde.metrics import pairwise_fscore
    >>> pairwise_fscore([0, 0, 1, 1], [5, 5, 7, 7])
    1.0
    """
    return pairwise_precision_recall_fscore(labels_true, labels_pred)[2]


def bcubed_fscore(labels_true, labels_pred):
    """BCubed F-score; see :func:`bcubed_precision_recall_fscore`.

    Examples
    --------
    >>> from sklearn_ndde.metrics import bcubed_fscore
    >>> bcubed_fscore([0, 0, 1, 1], [5, 5, 7, 7])
    1.0
    """
    return bcubed_precision_recall_fscore(labels_true, labels_pred)[2]


#: Scorer for :class:`~sklearn.model_selection.GridSearchCV`: BCubed F of
#: ``estimator.predict(X)`` against ``y``.
bcubed_scorer = make_scorer(bcubed_fscore)

#: Scorer for :class:`~sklearn.model_selection.GridSearchCV`: pairwise F of
#: ``estimator.predict(X)`` against ``y``.
pairwise_scorer = make_scorer(pairwise_fscore)


def _identity_sparsity(X, labels_true):
    """``1 - mean pairwise cosine`` inside each identity (0 for singletons)."""
    # A zero row (a failed detection) has cosine 0 with everything, not NaN.
    Xn = _normalize_rows(X, allow_zero=True).astype(np.float64)
    ids, inverse, counts = np.unique(
        labels_true, return_inverse=True, return_counts=True
    )
    sums = np.zeros((ids.size, X.shape[1]))
    np.add.at(sums, inverse, Xn)
    # sum over ordered pairs i != j of cos = |sum|^2 - count
    pair_total = (sums**2).sum(axis=1) - counts
    pairs = counts * (counts - 1.0)
    mean_cos = np.divide(pair_total, pairs, out=np.ones(ids.size), where=pairs > 0)
    return 1.0 - mean_cos, inverse


def _bins_without_split_ties(order, value, n_bins):
    """``order`` (identities by increasing ``value``) cut into at most
    ``n_bins`` bins of about equal count, each cut moved forward past
    identities of the same value, so that no two bins share a value and
    their ranges never overlap (bins left empty are dropped)."""
    ranked = value[order]
    cuts = []
    for b in range(1, n_bins):
        at = -(-b * order.size // n_bins)
        at = int(np.searchsorted(ranked, ranked[at - 1], side="right"))
        if at < order.size and (not cuts or at > cuts[-1]):
            cuts.append(at)
    return np.split(order, cuts)


def bin_range(row):
    """The range of one bin of :func:`hard_cluster_report` as text: sizes
    as integers (``"3"`` or ``"4-6"``), sparsities to two decimals
    (``"0.21-0.35"``)."""
    if row["by"] == "size":
        low, high = int(row["low"]), int(row["high"])
        return f"{low}" if low == high else f"{low}-{high}"
    if round(row["low"], 2) == round(row["high"], 2):
        return f"{row['low']:.2f}"
    return f"{row['low']:.2f}-{row['high']:.2f}"


def hard_cluster_report(labels_true, labels_pred, X=None, *, n_bins=5):
    """Pairwise and BCubed scores per identity-size and per sparsity bin.

    True identities are sorted by size (and, when ``X`` is given, by
    sparsity: one minus the mean pairwise cosine inside the identity, 0 for
    identical faces, 1 for unrelated ones, above 1 for opposed ones), cut
    into at most ``n_bins`` bins of about equal identity count, and each
    bin's samples are scored on their own, as in the paper's hard-cluster
    analysis. Bin 0 holds the smallest (or the densest) identities.
    Identities of equal size always share a bin, so the bins' ranges never
    overlap (with many identities of one size, fewer than ``n_bins`` bins
    come back). The sparsity bins hold only the identities of at least two
    samples: a single face has no pair to measure.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth identities.
    labels_pred : array-like of shape (n_samples,)
        Predicted clusters; ``-1`` counts as a singleton per sample.
    X : array-like of shape (n_samples, n_features), default=None
        Embeddings, needed for the sparsity bins.
    n_bins : int, default=5
        Largest number of bins per binning.

    Returns
    -------
    report : list of dict
        One dict per bin with keys ``"by"`` (``"size"`` or ``"sparsity"``),
        ``"bin"``, ``"n_identities"``, ``"n_samples"``, ``"low"`` and
        ``"high"`` (the bin's range: sizes as int, sparsities as float),
        ``"pairwise_precision"``, ``"pairwise_recall"``, ``"pairwise_f"``,
        ``"bcubed_precision"``, ``"bcubed_recall"``, ``"bcubed_f"``.

    Examples
    --------
    >>> from sklearn_ndde.metrics import hard_cluster_report
    >>> rows = hard_cluster_report([0, 1, 1, 2, 2, 2], [0, 1, 1, 2, 2, 3],
    ...                            n_bins=3)
    >>> [(r["low"], r["high"], round(r["bcubed_f"], 3)) for r in rows]
    [(1, 1, 1.0), (2, 2, 1.0), (3, 3, 0.714)]
    """
    labels_true = _check_labels(labels_true, "labels_true")
    labels_pred = _check_labels(labels_pred, "labels_pred")
    if labels_true.shape != labels_pred.shape:
        raise ValueError(
            f"labels_true and labels_pred have different lengths "
            f"({labels_true.size} and {labels_pred.size})."
        )
    ids, inverse, counts = np.unique(
        labels_true, return_inverse=True, return_counts=True
    )
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
        raise ValueError(f"n_bins must be an integer, got {n_bins!r}.")
    if not 1 <= n_bins <= ids.size:
        raise ValueError(
            f"n_bins must be between 1 and the number of identities ({ids.size}), "
            f"got {n_bins}."
        )
    keys = [("size", counts, np.arange(ids.size))]
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != labels_true.size:
            raise ValueError(
                f"X must have shape (n_samples={labels_true.size}, n_features), "
                f"got {X.shape}."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinity.")
        pairs = np.flatnonzero(counts > 1)
        if pairs.size:
            sparsity = _identity_sparsity(X, labels_true)[0]
            keys.append(("sparsity", sparsity, pairs))
    report = []
    for by, value, candidates in keys:
        order = candidates[np.argsort(value[candidates], kind="stable")]
        bins = _bins_without_split_ties(order, value, min(n_bins, order.size))
        for b, members in enumerate(bins):
            mask = np.isin(inverse, members)
            pp, pr, pf = pairwise_precision_recall_fscore(
                labels_true[mask], labels_pred[mask]
            )
            bp, br, bf = bcubed_precision_recall_fscore(
                labels_true[mask], labels_pred[mask]
            )
            report.append(
                {
                    "by": by,
                    "bin": b,
                    "n_identities": int(members.size),
                    "n_samples": int(mask.sum()),
                    "low": value[members].min().item(),
                    "high": value[members].max().item(),
                    "pairwise_precision": pp,
                    "pairwise_recall": pr,
                    "pairwise_f": pf,
                    "bcubed_precision": bp,
                    "bcubed_recall": br,
                    "bcubed_f": bf,
                }
            )
    return report
