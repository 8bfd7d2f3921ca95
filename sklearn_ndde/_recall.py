"""Recall of an approximate neighbour search against the exact lists of
sampled rows: of all ``k`` neighbours, and of the likely ones (those the
clustering acts on)."""

import numpy as np

from ._calibration import background_of, likely_floor

#: Default recall target of the IVF search (``knn_recall``, ``recall``).
DEFAULT_RECALL = 0.98


def _recall_at_k(exact_sims, found_sims):
    """Share of the exact ``k`` neighbours of sample rows that a search found.

    Counted by cosine, not by id, so that neighbours tied with the k-th
    exact one count whichever of them a search returns: a row's hits are
    its found cosines at or above its k-th exact cosine (float32 rounding
    allowed), at most k. Missing results (faiss's -1) carry no cosine.
    """
    k = exact_sims.shape[1]
    kth = exact_sims.min(axis=1, keepdims=True) - 1e-6
    hits = np.minimum((found_sims >= kth).sum(axis=1), k)
    return float(hits.mean() / k)


def _likely_cosine(Xn, exact_sims, n_neighbors):
    """:func:`likely_floor` of the sample rows' exact cosines, with the
    background of the unit rows ``Xn`` (as the estimator calibrates)."""
    return likely_floor(exact_sims, background_of(Xn, Xn.shape[0], n_neighbors))


def _recall_of_likely(exact_sims, found_sims, floor):
    """Share of the likely exact neighbours of sample rows that a search found.

    The likely neighbours of a row are its exact neighbours at cosine
    ``floor`` or above (:func:`likely_floor`: a calibrated similarity of
    at least 0.5), the row itself left out: the pairs the clustering
    acts on. The rest of a list is other people at cosines near the
    top of ``n`` random draws, which no index finds without scanning a
    share of the rows that grows with ``n``, and which the clustering
    ignores. Counted by cosine as :func:`_recall_at_k`; 1.0 when no row
    has a likely neighbour.
    """
    found, counts = _likely_hits(exact_sims, found_sims, floor)
    total = int(counts.sum())
    return 1.0 if total == 0 else float(found.sum() / total)


def _likely_hits(exact_sims, found_sims, floor):
    """``(found, counts)`` per sample row: how many of its likely exact
    neighbours (as :func:`_recall_of_likely`) a search found, and how many
    it has."""
    exact = -np.sort(-exact_sims, axis=1)[:, 1:]
    likely = exact >= floor
    counts = likely.sum(axis=1)
    lowest = np.where(likely, exact, np.inf).min(axis=1) - 1e-6
    # One found cosine at or above the lowest is the row itself.
    found = (found_sims >= lowest[:, None]).sum(axis=1) - 1
    return np.clip(found, 0, counts), counts
