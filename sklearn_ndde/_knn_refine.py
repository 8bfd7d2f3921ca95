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

# A widening searches again the rows of _WIDEN_MARGIN times the share of
# the sample's missed likely neighbours that the recall target still
# needs, and at most _WIDEN_SHARE of them.
_WIDEN_SHARE = 0.9
_WIDEN_MARGIN = 3.0


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
        # After a merge only the pairs it added are offered: the others
        # were, and a row's lowest cosine only rises since.
        if previous is None:
            offered = np.ones(indices.shape, dtype=bool)
        else:
            offered = new_entries(previous, indices, chunks)
        with _timed("pairs offered to their other end", verbose):
            offer_reverse_pairs(indices, sims, threads, offered)
            indices, sims = _sort_rows(indices, sims)
        new = offered if previous is None else new_entries(previous, indices, chunks)
        del offered, previous
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


def _likely_found(sims, floor, block=65536):
    """How many likely neighbours (cosine ``floor`` or more, self left
    out) each row of the graph holds, in blocks of rows."""
    out = np.empty(sims.shape[0], dtype=np.int32)
    for start in range(0, sims.shape[0], block):
        out[start : start + block] = (sims[start : start + block, 1:] >= floor).sum(1)
    return out


def _rows_to_widen(order, closeness, sample, exact_sims, sims, floor, recall):
    """The rows (in cell ``order``) to search again in more cells.

    The sample's missed likely neighbours say where they are: in the rows
    least close to the centroid of their cell (people spread over many
    cells), or in rows that hold few likely neighbours or none (a face
    whose nearest cells hold none of its person, which no neighbour of
    its can lead to). Along each of the two keys, from its low end, the
    rows are taken up to the sample rows that hold the share of the
    misses the ``recall`` target needs, ``_WIDEN_MARGIN`` times over (at
    most ``_WIDEN_SHARE``); the key that needs fewer rows is kept. A sample
    just under the target widens few rows: the cost follows the shortfall.
    """
    found, counts = _likely_hits(exact_sims, sims[sample], floor)
    missed = counts - found
    short = recall * counts.sum() - found.sum()
    share = min(_WIDEN_SHARE, _WIDEN_MARGIN * short / max(missed.sum(), 1))
    widen = None
    for key in (closeness, _likely_found(sims, floor)):
        ranked = np.argsort(key[sample], kind="stable")
        cutoff_at = np.searchsorted(np.cumsum(missed[ranked]), share * missed.sum())
        cutoff = key[sample][ranked[min(cutoff_at, sample.size - 1)]]
        rows = order[key[order] <= cutoff]
        if widen is None or rows.size < widen.size:
            widen = rows
    return widen
