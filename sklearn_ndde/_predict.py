"""``predict``: new samples assigned to the fitted clusters."""

import numpy as np

from ._dask_fit import predict_dask
from ._kernels import numba_threads
from ._knn import exact_knn_to
from ._knn_dask import is_dask_array
from ._pipeline import pair_similarity, sort_by_similarity
from ._precomputed import graph_to_neighbors
from ._rows import unit_rows_warning_zeros
from ._tpdi_kernels import bhattacharyya_pairs
from ._transition import row_softmax, transition_matrix
from ._validation import DUPLICATE_GAP

# TPDi values this close count as equal in predict (float32 rounding).
TIE_TOLERANCE = 1e-6


def predict_labels(est, X):
    """The labels of :meth:`~sklearn_ndde.NDDeTPDiClustering.predict` for
    the fitted estimator ``est`` (fitted on an in-memory array)."""
    precomputed = est.metric == "precomputed"
    X = est._validate_input(X, reset=False)
    n_fit, k = est.neighbors_.shape
    if precomputed:
        if X.shape[1] != n_fit:
            raise ValueError(
                f"With metric='precomputed', X must have one column per training "
                f"sample ({n_fit}), got {X.shape[1]}."
            )
        indices, distances = graph_to_neighbors(X, k, square=False)
        duplicate = distances[:, 0] <= DUPLICATE_GAP
        s = pair_similarity(
            est.similarity_, None, indices, (1.0 - distances).astype(np.float32)
        )
    else:
        Xq, query_zero = unit_rows_warning_zeros(X, "so they get -1", stacklevel=4)
        if query_zero.any():
            # Any unit row keeps the similarity defined; the label is -1.
            Xq[query_zero, 0] = 1.0
        # Zero rows of the training data match nothing either, and an
        # exact copy stands for its original only once, as in fit.
        distinct = getattr(est, "_fit_distinct", None)
        candidates = np.arange(n_fit) if distinct is None else np.flatnonzero(distinct)
        Y = est._fit_X if candidates.size == n_fit else est._fit_X[candidates]
        indices = exact_knn_to(Xq, Y, k, n_jobs=est.n_jobs)
        s = pair_similarity(est.similarity_, Xq, indices, None, Y=Y)
        if candidates.size < n_fit:
            indices = candidates[indices]
        duplicate = np.einsum("ij,ij->i", Xq, est._fit_X[indices[:, 0]]) >= (
            1.0 - DUPLICATE_GAP
        )
        duplicate &= ~query_zero
    # An exact copy of a training sample takes its cluster, as in fit.
    copy_of = indices[:, 0]
    indices, s = sort_by_similarity(indices, s)
    Q = transition_matrix(
        est.neighbors_, est.pair_similarities_, sigma=est.distance_sigma
    )
    rows = row_softmax(s.astype(Q.dtype), est.distance_sigma)
    m = indices.shape[0]
    with numba_threads(est.n_jobs) as threads:
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
    # (more similar) column: a training point queried again finds itest.
    nearest = dist.min(axis=1)
    column = np.argmax(dist <= nearest[:, None] + TIE_TOLERANCE, axis=1)
    labels = est.labels_[indices[np.arange(m), column]]
    labels = np.where(nearest < est.tau, labels, -1)
    labels[duplicate] = est.labels_[copy_of[duplicate]]
    if not precomputed:
        labels[query_zero] = -1
    return labels


def predict_on_dask_fit(est, X):
    """``predict`` after a fit on a dask array (queries in memory)."""
    if is_dask_array(X):
        X = X.compute()
    X = est._validate_input(X, reset=False)
    Xq, query_zero = unit_rows_warning_zeros(X, "so they get -1", stacklevel=4)
    if query_zero.any():
        Xq[query_zero, 0] = 1.0
    return predict_dask(est, Xq, query_zero, TIE_TOLERANCE)
