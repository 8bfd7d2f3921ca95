"""Synthetic face-like embeddings with hard (small and sparse) identities."""

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_face_embeddings"]


@validate_params(
    {
        "n_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_identities": [Interval(numbers.Integral, 1, None, closed="left")],
        "dim": [Interval(numbers.Integral, 2, None, closed="left")],
        "size_sigma": [Interval(numbers.Real, 0, None, closed="left")],
        "spread": [tuple],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_face_embeddings(
    n_samples,
    n_identities,
    *,
    dim=256,
    size_sigma=1.0,
    spread=(0.5, 1.3),
    random_state=None,
):
    """Unit embeddings grouped into identities of long-tailed sizes.

    Each identity has a random unit centre and its own spread ``s``, drawn
    uniformly from ``spread``; a face is ``normalize(centre + s * g /
    sqrt(dim))`` with ``g`` standard normal, so two faces of one identity have
    a cosine near ``1 / (1 + s^2)`` while unrelated faces stay near 0.
    Identity sizes are ``1 +`` a multinomial draw over log-normal weights: a
    few large identities and many of one to five faces, as in MS1M and LFW.

    Parameters
    ----------
    n_samples : int
        Number of faces, at least ``n_identities``.
    n_identities : int
        Number of identities; each has at least one face.
    dim : int, default=256
        Embedding dimension.
    size_sigma : float, default=1.0
        Standard deviation of the log-normal size weights: 0 gives equal
        sizes, larger values a longer tail.
    spread : tuple of two floats, default=(0.5, 1.3)
        Range of the per-identity spread; the top of the range makes sparse,
        hard identities.
    random_state : int, RandomState instance or None, default=None
        Seed, for reproducible data.

    Returns
    -------
    X : ndarray of shape (n_samples, dim), dtype float32
        Unit-norm embeddings, rows in random order.
    y : ndarray of shape (n_samples,), dtype int64
        Identity of each row.

    Examples
    --------
    >>> from sklearn_ndde.datasets import make_face_embeddings
    >>> X, y = make_face_embeddings(1000, 50, dim=32, random_state=0)
    >>> X.shape, X.dtype, len(set(y))
    ((1000, 32), dtype('float32'), 50)
    """
    if n_samples < n_identities:
        raise ValueError(
            f"n_samples={n_samples} must be at least n_identities={n_identities}."
        )
    if len(spread) != 2 or not 0 <= spread[0] <= spread[1]:
        raise ValueError(
            f"spread must be a (low, high) pair with 0 <= low <= high, got {spread}."
        )
    rng = check_random_state(random_state)
    weights = rng.lognormal(0.0, size_sigma, n_identities)
    sizes = 1 + rng.multinomial(n_samples - n_identities, weights / weights.sum())
    y = np.repeat(np.arange(n_identities), sizes)
    centres = rng.standard_normal((n_identities, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spreads = rng.uniform(spread[0], spread[1], n_identities)
    X = np.empty((n_samples, dim), dtype=np.float32)
    chunk = max(1, 2**24 // dim)
    for start in range(0, n_samples, chunk):
        ids = y[start : start + chunk]
        noise = rng.standard_normal((ids.size, dim))
        block = centres[ids] + spreads[ids, None] * noise / np.sqrt(dim)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start : start + ids.size] = block
    order = rng.permutation(n_samples)
    return X[order], y[order]
