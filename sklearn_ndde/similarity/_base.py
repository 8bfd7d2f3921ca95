"""The pair-similarity protocol."""

from typing import Protocol, runtime_checkable

import numpy as np


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


def pair_cosines(X, indices, Y=None):
    """Cosine of each ``(X[i], Y[indices[i, c]])`` pair, float32.

    Chunked so that the gathered neighbour rows take about 256 MB.
    """
    X = np.asarray(X, dtype=np.float32)
    Y = X if Y is None else np.asarray(Y, dtype=np.float32)
    x_norm = np.linalg.norm(X, axis=1)
    y_norm = np.linalg.norm(Y, axis=1)
    for name, norm in (("X", x_norm), ("Y", y_norm)):
        bad = np.flatnonzero(~(norm > 0))
        if bad.size:
            raise ValueError(
                f"{name} has {bad.size} zero vector(s) (first at row {bad[0]}); the "
                "cosine similarity is undefined for them."
            )
    out = np.empty(indices.shape, dtype=np.float32)
    chunk = max(1, 2**26 // max(1, indices.shape[1] * X.shape[1]))
    for start in range(0, indices.shape[0], chunk):
        rows = slice(start, start + chunk)
        nb = indices[rows]
        out[rows] = np.einsum("id,ikd->ik", X[rows], Y[nb], optimize=True) / (
            x_norm[rows, None] * y_norm[nb]
        )
    return np.clip(out, -1.0, 1.0, out=out)
