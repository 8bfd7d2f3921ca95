"""The pair-similarity protocol."""

from typing import Protocol, runtime_checkable

import numpy as np

from .._validation import _normalize_rows


@runtime_checkable
class PairSimilarity(Protocol):
    """What :class:`~sklearn_ndde.NDDeTPDiClustering` needs of a similarity.

    One method, ``pair_similarity(X, indices, Y=None)``: for every anchor
    ``X[i]`` and each of its neighbours ``Y[indices[i, c]]`` (``Y`` defaults
    to ``X``), the probability in [0, 1] that the two samples share an
    identity, as an array of the shape of ``indices``.

    A similarity that also has ``fit_neighbors(indices, similarities)`` is
    training-free: the clustering fits a clone of it on each data set's own
    cosine kNN graph (:class:`CalibratedCosineSimilarity`). Any other
    similarity is used as it is, so a learned model must be trained first.
    """

    def pair_similarity(self, X, indices, Y=None): ...


def _unit_rows(X, name):
    """``X`` with unit rows (kept as is when they already are)."""
    X = np.asarray(X)
    if X.dtype == np.float32 and X.ndim == 2 and X.shape[0]:
        norms = np.einsum("ij,ij->i", X, X)
        if np.all(np.abs(norms - 1.0) < 1e-5):
            return X
    try:
        return _normalize_rows(X)
    except ValueError as error:
        raise ValueError(str(error).replace("X has", f"{name} has", 1)) from None


def pair_cosines(X, indices, Y=None):
    """Cosine of each ``(X[i], Y[indices[i, c]])`` pair, float32.

    Chunked so that the gathered neighbour rows take about 256 MB.
    """
    X = _unit_rows(X, "X")
    Y = X if Y is None else _unit_rows(Y, "Y")
    out = np.empty(indices.shape, dtype=np.float32)
    chunk = max(1, 2**26 // max(1, indices.shape[1] * X.shape[1]))
    for start in range(0, indices.shape[0], chunk):
        rows = slice(start, start + chunk)
        nb = indices[rows]
        out[rows] = np.einsum("id,ikd->ik", X[rows], Y[nb], optimize=True)
    return np.clip(out, -1.0, 1.0, out=out)
