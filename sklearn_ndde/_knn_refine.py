"""Helpers of the approximate neighbour searches: rows put in order, timed
steps, and the neighbour-descent refinement of a graph."""

import time
from contextlib import contextmanager

import numpy as np

from ._kernels import numba_threads
from ._knn_kernels import (
    neighbours_of_neighbours,
    new_entries,
    offer_reverse_pairs,
    sort_self_first,
)
from ._progress import log
from ._recall import _likely_hits

# Neighbour descent: each row meets the first _REFINE_EACH likely
# neighbours of its first _REFINE_SOURCES ones, for at most _REFINE_ROUNDS
# rounds.
_REFINE_SOURCES = 20
_REFINE_EACH = 40
_REFINE_ROUNDS = 8

# Share of the sample's missed likely neighbours whose rows a widening
# searches again.
_WIDEN_SHARE = 0.9


def _sort_rows(indices, similarities, rows=None):
    """Self first, then by decreasing similarity (ties by index), in place;
    returns ``(indices, similarities)``.

    ``rows`` are the sample ids of the rows (default: ``0 .. n - 1``).
    """
    rows = np.arange(indices.shape[0]) if rows is None else np.asarray(rows)
    sort_self_first(indices, similarities, rows)
    return indices, similarities


@contextmanager
def _timed(what, verbose):
    """Log ``what`` and its time (and any words added to the yielded list)
    on one line when ``verbose``."""
    start = time.perf_counter()
    note = []
    yield note
    if verbose:
        extra = "".join(f", {words}" for words in note)
        log(f"kNN (IVF): {what} in {time.perf_counter() - start:.1f} s{extra}")


def refine_graph(
    Xn, indices, sims, floor, n_jobs=None, verbose=False, previous=None, order=None
):
    """Refine an approximate kNN graph (rows self first, then by
    decreasing cosine; ``Xn`` its unit rows) by neighbour descent.

    Each pair is first offered to its other end (:func:`offer_reverse_pairs`,
    no cosine computed). Then, in rounds, each row meets the likely
    neighbours (cosine ``floor`` or more) of its first
    ``_REFINE_SOURCES`` neighbours (:func:`neighbours_of_neighbours`), through
    the pairs added since the round before (all of them in the first
    round, or those not in ``previous``, the graph before a merge), and the
    pairs gained are offered in turn (only they: a row's lowest cosine
    only rises, so a pair refused once is refused again); the rounds stop
    when they measure fewer cosines than rows, or after
    ``_REFINE_ROUNDS``. Faces of one
    person that the cells split apart are found through the faces between
    them. The rounds visit the rows in ``order`` (default: by id), which
    changes their speed, not their result: give the rows cell by cell.
    Returns new ``(indices, sims)``, rows in the same order.
    """
    n = indices.shape[0]
    order = np.arange(n) if order is None else np.asarray(order)
    with numba_threads(n_jobs) as threads:
        chunks = max(1, min(n, 16 * threads))
        every = np.ones(indices.shape, dtype=bool)
        with _timed("pairs offered to their other end", verbose):
            offer_reverse_pairs(indices, sims, threads, every)
            indices, sims = _sort_rows(indices, sims)
        new = every if previous is None else new_entries(previous, indices, chunks)
        del every, previous
        for round_ in range(_REFINE_ROUNDS):
            with _timed(f"refinement round {round_ + 1}", verbose) as note:
                grown, grown_sims, measured = neighbours_of_neighbours(
                    Xn,
                    indices,
                    sims,
                    new,
                    _REFINE_SOURCES,
                    _REFINE_EACH,
                    np.float32(floor),
                    chunks,
                    order,
                )
                # Only the pairs this round added: the others were offered.
                added = new_entries(indices, grown, chunks)
                offer_reverse_pairs(grown, grown_sims, threads, added)
                del added
                grown, grown_sims = _sort_rows(grown, grown_sims)
                new = new_entries(indices, grown, chunks)
                indices, sims = grown, grown_sims
                note.append(f"{measured / max(n, 1):.1f} cosines per row")
            if measured < n:
                break
    return indices, sims


def _rows_to_widen(order, closeness, sample, exact_sims, sims, floor):
    """The rows (in cell ``order``) to search again in more cells: those
    no closer to the centroid of their cell than the sample rows holding
    ``_WIDEN_SHARE`` of the sample's missed likely neighbours, taken from
    the least close up."""
    found, counts = _likely_hits(exact_sims, sims[sample], floor)
    missed = (counts - found)[np.argsort(closeness[sample], kind="stable")]
    cutoff_at = np.searchsorted(np.cumsum(missed), _WIDEN_SHARE * missed.sum())
    cutoff = np.sort(closeness[sample])[min(cutoff_at, sample.size - 1)]
    return order[closeness[order] <= cutoff]
