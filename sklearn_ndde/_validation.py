"""Checks shared by the pure functions."""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval

#: Cosines this close to 1 mark exact duplicates (float32 rounding included).
DUPLICATE_GAP = 1e-5

#: float32 rows whose squared norm is this close to 1 are taken as unit
#: rows as they are (float32 normalisation leaves errors near 3e-7).
UNIT_TOLERANCE = 1e-6

#: ``n_jobs`` as scikit-learn reads it: a positive count, or -1 (all
#: threads), -2 (all but one), ...; 0 means nothing and is refused.
N_JOBS_CONSTRAINT = [
    Interval(numbers.Integral, 1, None, closed="left"),
    Interval(numbers.Integral, None, -1, closed="right"),
    None,
]


def check_neighbors(indices, values, name="similarities", n_samples=None):
    """Validate an aligned ``(indices, values)`` pair of (n, k) arrays.

    Returns ``indices`` as int32 (int64 when needed) and ``values`` as a
    floating array (float32 kept, anything else float64).
    """
    indices = np.asarray(indices)
    values = np.asarray(values)
    if indices.ndim != 2:
        raise ValueError(f"indices must be 2-D, got shape {indices.shape}.")
    if values.shape != indices.shape:
        raise ValueError(
            f"{name} must have the shape of indices {indices.shape}, "
            f"got {values.shape}."
        )
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {indices.dtype}.")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise TypeError(f"{name} must be real numbers, got dtype {values.dtype}.")
    n = indices.shape[0] if n_samples is None else n_samples
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(
            f"indices must lie in [0, {n - 1}]; found values in "
            f"[{indices.min()}, {indices.max()}]."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinity.")
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    itype = np.int32 if n < 2**31 - 1 else np.int64
    return indices.astype(itype, copy=False), values.astype(dtype, copy=False)


def check_transition(P, name="P"):
    """Validate a square sparse row-stochastic matrix and return it as CSR."""
    if not sp.issparse(P):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix, got {type(P).__name__}."
        )
    P = sp.csr_matrix(P)
    if P.shape[0] != P.shape[1]:
        raise ValueError(f"{name} must be square, got shape {P.shape}.")
    if not np.all(np.isfinite(P.data)) or (P.data < 0).any():
        raise ValueError(f"{name} must hold finite non-negative probabilities.")
    row_sums = np.asarray(P.sum(axis=1)).ravel()
    if not np.allclose(row_sums, 1.0, atol=1e-4):
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        raise ValueError(
            f"Every row of {name} must sum to 1; row {worst} sums to "
            f"{row_sums[worst]:.6g}."
        )
    return P


def check_parents(parents, n_samples):
    """``parents`` as a writable intp copy: sample ids in [0, n) or -1.

    Non-integer values are refused rather than truncated (0.5 would
    silently become a link to sample 0).
    """
    parents = np.asarray(parents)
    if parents.shape != (n_samples,):
        raise ValueError(
            f"parents must have shape ({n_samples},) to match, got {parents.shape}."
        )
    if parents.dtype.kind not in "iu":
        if parents.dtype.kind != "f" or not np.all(parents == np.round(parents)):
            raise ValueError("parents must hold integer sample ids (or -1).")
    parents = parents.astype(np.intp)
    if ((parents < -1) | (parents >= n_samples)).any():
        raise ValueError(f"parents must hold sample ids in [0, {n_samples}) or -1.")
    return parents


def _normalize_rows(X, block=65536, allow_zero=False):
    """Return float32 unit rows; a zero row raises (cosine is undefined).

    With ``allow_zero`` a zero row stays a zero row instead. Each row is
    divided by its largest absolute value before its norm is taken, in the
    input's own precision, so that huge (1e30) and subnormal (1e-40) entries
    neither overflow nor vanish. Works in blocks of rows. float32 rows that
    are unit already (:func:`_has_unit_rows`) are not copied: a read-only
    view of ``X`` is returned, so that a memory-mapped file of unit
    embeddings is never held twice.
    """
    X = np.asarray(X)
    if _has_unit_rows(X):
        X = X.view()
        X.flags.writeable = False
        return X
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    out = np.empty(X.shape, dtype=np.float32)
    zero = []
    for start in range(0, X.shape[0], block):
        part = X[start : start + block]
        scale = np.max(np.abs(part), axis=1, initial=0.0)
        bad = ~(scale > 0)
        zero.append(np.flatnonzero(bad) + start)
        part = part / np.where(bad, 1.0, scale)[:, None]
        norms = np.linalg.norm(part, axis=1)
        out[start : start + block] = part / np.where(bad, 1.0, norms)[:, None]
        if X.dtype == np.float32:
            # Unit rows as they are, whichever block holds them.
            unit = _unit_row_mask(X[start : start + block])
            out[start : start + block][unit] = X[start : start + block][unit]
    zero = np.concatenate(zero) if zero else np.empty(0, dtype=np.intp)
    if zero.size and not allow_zero:
        raise ValueError(
            f"X has {zero.size} zero vector(s) (first at row {zero[0]}); the cosine "
            "metric is undefined for them. Remove them or use metric='precomputed'."
        )
    return out


def _has_unit_rows(X, block=8192):
    """Whether ``X`` is a non-empty 2-D float32 array of unit rows
    (:func:`_unit_row_mask`), checked in blocks of rows up to the first
    that is not."""
    if X.dtype != np.float32 or X.ndim != 2 or X.size == 0:
        return False
    return all(
        _unit_row_mask(X[start : start + block]).all()
        for start in range(0, X.shape[0], block)
    )


def _unit_row_mask(rows):
    """Which float32 ``rows`` have a squared norm (summed in float64)
    within ``UNIT_TOLERANCE`` of 1: they are kept as they are, so that
    normalising is the same whether a row comes alone or in a block."""
    part = rows.astype(np.float64)
    return np.abs(np.einsum("ij,ij->i", part, part) - 1.0) <= UNIT_TOLERANCE


def clipped_k(k, n, stacklevel, n_rows=None):
    """``k`` as a Python integer (numpy ones overflow in products), at
    most ``n``, with a warning when clipped (``stacklevel`` counted from
    the caller of this method); ``n_rows``: the rows of ``X`` when ``n``
    counts its distinct ones."""
    k = int(k)
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
