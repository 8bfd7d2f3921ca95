"""Zero rows and exact copies: found before the stages, which run on the
distinct non-zero rows, and spread back over every row after them."""

import warnings

import numpy as np

from ._validation import _normalize_rows


def unit_rows_warning_zeros(X, consequence, stacklevel):
    """Unit rows of ``X`` and its zero rows, with one warning naming them
    (``stacklevel`` counted from here to the user's call)."""
    Xn = _normalize_rows(X, allow_zero=True)
    zero = ~Xn.any(axis=1)
    if zero.any():
        warnings.warn(
            f"X has {int(zero.sum())} all-zero row(s) (first at row "
            f"{int(np.argmax(zero))}); the cosine metric matches a zero vector "
            f"with nothing, {consequence}.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return Xn, zero


def originals(Xn, zero, block=65536):
    """For each row of ``Xn``, the first row with the same unit vector
    (itself for a distinct row); -1 for zero rows.

    Rows are hashed (64 bits of their float32 bits, in blocks) and only rows
    whose hashes collide are compared byte for byte, so the cost is one pass
    over ``Xn`` rather than a sort of its rows.
    """
    n = Xn.shape[0]
    original = np.full(n, -1, dtype=np.intp)
    rows = np.flatnonzero(~zero)
    original[rows] = rows
    bits = np.ascontiguousarray(Xn, dtype=np.float32).view(np.uint32)
    multipliers = np.random.default_rng(0).integers(
        1, 2**63, size=bits.shape[1], dtype=np.uint64
    )
    hashes = np.empty(n, dtype=np.uint64)
    for start in range(0, n, block):
        part = bits[start : start + block].astype(np.uint64)
        hashes[start : start + block] = (part * multipliers).sum(axis=1)
    hashes = hashes[rows]
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    suspects = rows[counts[inverse.ravel()] > 1]
    if suspects.size:
        as_bytes = np.ascontiguousarray(Xn[suspects])
        as_bytes = as_bytes.view(np.dtype((np.void, as_bytes.strides[0]))).ravel()
        _, first, group = np.unique(as_bytes, return_index=True, return_inverse=True)
        original[suspects] = suspects[first[group.ravel()]]
    return original


def spread_to_all_rows(out, keep, original, Xn):
    """Fitted attributes of the rows ``keep`` spread over all rows of ``Xn``.

    ``original[r]`` is the fitted row that row ``r`` copies exactly (the
    same unit vector), or -1 for a zero row. A copy repeats its original's
    neighbours, similarities, TPDi and density, links to it and shares its
    cluster, so copies change nothing else in the partition. A zero vector
    matches nothing: it is its own only neighbour (similarity 1 to itself,
    0 elsewhere, TPDi 1), keeps a density of 1 as a sample whose walk stays
    put, and is a cluster alone.
    """
    n = Xn.shape[0]
    zero = original < 0
    copy = ~zero & (original != np.arange(n))
    k = out["neighbors_"].shape[1]
    # Zero rows first: each its own only neighbour, a root of density 1.
    neighbors = np.repeat(np.arange(n, dtype=out["neighbors_"].dtype), k).reshape(n, k)
    s = np.zeros((n, k), dtype=out["pair_similarities_"].dtype)
    s[zero, 0] = 1.0
    distances = np.ones((n, k), dtype=out["tpdi_"].dtype)
    distances[zero, 0] = 0.0
    density = np.ones(n)
    labels = np.full(n, -1, dtype=np.intp)
    labels[zero] = out["labels_"].max() + 1 + np.arange(int(zero.sum()))
    neighbors[keep] = keep[out["neighbors_"]]
    parents = np.full(n, -1, dtype=np.intp)
    linked = out["parents_"] >= 0
    parents[keep[linked]] = keep[out["parents_"][linked]]
    parents[copy] = original[copy]
    # Then the fitted rows, and each copy as its original (a fitted row).
    for full, fitted in [
        (s, "pair_similarities_"),
        (distances, "tpdi_"),
        (density, "density_"),
        (labels, "labels_"),
    ]:
        full[keep] = out[fitted]
    for full in (neighbors, s, distances, density, labels):
        full[copy] = full[original[copy]]
    # Consecutive ids numbered by the first sample of each cluster, as always.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    labels = np.argsort(np.argsort(first))[inverse]
    out.update(
        _fit_X=Xn,
        _fit_distinct=~zero & ~copy,
        neighbors_=neighbors,
        pair_similarities_=s,
        tpdi_=distances,
        density_=density,
        parents_=parents,
        labels_=labels,
        n_clusters_=int(labels.max()) + 1,
    )
    return out
