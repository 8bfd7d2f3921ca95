"""Row-softmax transition matrices over a kNN graph (step 3 of the method)."""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, validate_params

from ._validation import check_neighbors


def _top_by_similarity(indices, similarities, top):
    """The ``top`` columns of each row with the largest similarity (stable)."""
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :top]
    return (
        np.take_along_axis(indices, order, axis=1),
        np.take_along_axis(similarities, order, axis=1),
    )


def row_softmax(similarities, sigma):
    """``exp(s / sigma)`` normalised per row, computed as a log-sum-exp.

    Parameters
    ----------
    similarities : ndarray of shape (n_samples, n_neighbors)
        Similarities of each row's neighbours.
    sigma : float
        Temperature, > 0.

    Returns
    -------
    probabilities : ndarray of shape (n_samples, n_neighbors)
        Non-negative, each row summing to 1.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde import row_softmax
    >>> row_softmax(np.array([[1.0, 1.0], [1.0, 0.0]]), sigma=1.0).round(3)
    array([[0.5  , 0.5  ],
           [0.731, 0.269]])
    """
    # Differences first, then the temperature: a tiny sigma sends every
    # difference to -inf (a hard maximum) instead of inf - inf = NaN. Below
    # the dtype's smallest normal number, sigma acts as that number.
    tiny = np.finfo(similarities.dtype).tiny
    z = similarities - similarities.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):
        z /= similarities.dtype.type(max(float(sigma), tiny))
        np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


@validate_params(
    {
        "indices": ["array-like"],
        "similarities": ["array-like"],
        "sigma": [Interval(numbers.Real, 0, None, closed="neither")],
        "top": [Interval(numbers.Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def transition_matrix(indices, similarities, *, sigma, top=None):
    """Sparse row-softmax transition matrix over a kNN graph.

    ``p_ij = exp(s_ij / sigma) / sum_l exp(s_il / sigma)`` for the ``top``
    neighbours ``j`` of ``i`` with the largest ``s_ij``, 0 elsewhere.

    Parameters
    ----------
    indices : array-like of shape (n_samples, n_neighbors)
        Neighbour ids of each sample; ``indices[i]`` usually contains ``i``
        itself, whose self-loop is then kept.
    similarities : array-like of shape (n_samples, n_neighbors)
        Pair similarities aligned with ``indices``.
    sigma : float
        Softmax temperature, > 0. The method uses 0.5 for density and 0.05
        for distance.
    top : int, default=None
        Keep only this many neighbours per row, those of largest similarity
        (ties broken by column order). ``None`` keeps all of them.

    Returns
    -------
    P : scipy.sparse.csr_matrix of shape (n_samples, n_samples)
        Row-stochastic: every row sums to 1. Columns of a row appear in
        decreasing order of similarity.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde import transition_matrix
    >>> indices = np.array([[0, 1], [1, 0]])
    >>> sims = np.array([[1.0, 0.5], [1.0, 0.5]])
    >>> transition_matrix(indices, sims, sigma=0.5).toarray().round(3)
    array([[0.731, 0.269],
           [0.269, 0.731]])
    """
    indices, similarities = check_neighbors(indices, similarities)
    n, k = indices.shape
    if n == 0 or k == 0:
        raise ValueError("indices must have at least one row and one column.")
    top = k if top is None else min(top, k)
    if not np.all(np.diff(similarities, axis=1) <= 0):
        indices, similarities = _top_by_similarity(indices, similarities, top)
    elif top < k:
        # Rows already by decreasing similarity (as the estimator keeps
        # them): the top columns are the first ones.
        indices, similarities = indices[:, :top], similarities[:, :top]
    k = top
    probabilities = row_softmax(similarities, sigma)
    indptr = np.arange(0, n * k + 1, k, dtype=indices.dtype)
    P = sp.csr_matrix(
        (probabilities.ravel(), indices.ravel(), indptr), shape=(n, n), copy=False
    )
    return P
