"""The training-free calibration's statistics, as pure functions.

Where unrelated samples sit in a kNN list (:func:`background_level`), the
cosines' quantiles (:func:`cosine_quantiles`) and the mixture fitted to them
(:func:`mixture_curve`). :class:`~sklearn_ndde.similarity.CalibratedCosineSimilarity`
is built on them, and so is the neighbour search's recall of the likely
neighbours (:func:`likely_floor`).
"""

import numpy as np
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from ._kernels import kept_count_range, kept_histogram, numba_threads
from ._validation import DUPLICATE_GAP, _normalize_rows

_GRID_SIZE = 4097

#: Rows drawn, all their pairs measured, for the cosines of unrelated samples.
_BACKGROUND_ROWS = 2_000

#: A mixture component this many standard deviations of the unrelated
#: pairs' cosines above their expected level in a kNN list is same-identity.
SAME_ABOVE_BACKGROUND = 1.5

#: The lists hold a share of at least 1 / _LISTS_HOLD of the samples: the
#: random pairs then stand for the pairs of the lists.
_LISTS_HOLD = 2


def row_hashes(X, columns=32, block=65536):
    """A 64-bit hash of each row of ``X`` (its first ``columns`` features as
    float32 bits), in blocks of rows: a key to draw rows by, the same
    whatever the order of the rows."""
    X = np.asarray(X)
    multipliers = np.random.default_rng(0).integers(
        1, 2**63, size=min(columns, X.shape[1]), dtype=np.uint64
    )
    hashes = np.empty(X.shape[0], dtype=np.uint64)
    for start in range(0, X.shape[0], block):
        part = np.ascontiguousarray(X[start : start + block, :columns], np.float32)
        hashes[start : start + block] = (
            part.view(np.uint32).astype(np.uint64) * multipliers
        ).sum(axis=1)
    return hashes


def random_pair_cosines(hashes, rows_of):
    """Cosines of every pair among at most ``_BACKGROUND_ROWS`` rows: those
    of lowest :func:`row_hashes` ``hashes``, so that they do not depend on
    the order of the rows (one matrix product; 2,000 rows give 2 million
    pairs). ``rows_of(ids)`` reads the rows of sorted ids (the Dask path
    gathers them from the blocks)."""
    m = min(hashes.size, _BACKGROUND_ROWS)
    chosen = np.argsort(hashes, kind="stable")[:m]
    ids = np.sort(chosen)
    units = _normalize_rows(np.asarray(rows_of(ids)), allow_zero=True)
    units = np.ascontiguousarray(units, dtype=np.float32)
    return (units @ units.T)[np.triu_indices(m, 1)]


def same_above(background, margin=SAME_ABOVE_BACKGROUND):
    """The cosine ``margin`` scales above ``background`` (as from
    :func:`background_level`): from the default margin up, a mixture
    component stands clear of the unrelated samples."""
    return background[0] + margin * background[1]


def background_level(cosines, n_samples, n_neighbors):
    """``(level, scale, unrelated)``: where the unrelated samples of a kNN
    list sit, and whether every pair looks unrelated.

    A sample with no other face of its identity lists the ``n_neighbors``
    best of ``n_samples`` unrelated samples: cosines near the
    ``1 - n_neighbors / n_samples`` quantile of the unrelated pairs'
    cosines. Those are measured on random pairs (``cosines``), most of
    them unrelated: a normal law fitted to their median and interquartile
    range (which the few same-identity pairs among them do not move) gives
    the quantile, and its standard deviation is the scale.

    ``unrelated`` is True when the lists hold at least half of the samples
    (so the random pairs are nearly every pair of the lists) and one normal
    law explains the pairs' cosines better than two
    (:func:`one_normal_law`): no pair is more alike than unrelated samples
    are, so nothing but near copies is one identity.
    """
    cosines = np.asarray(cosines, dtype=np.float64)
    if cosines.size < 100:
        return None
    low, median, high = np.quantile(cosines, [0.25, 0.5, 0.75])
    scale = (high - low) / (2 * norm.ppf(0.75))
    if not scale > 0:
        return None
    share = min(max(n_neighbors / max(n_samples, 1), 1e-12), 0.5)
    unrelated = _LISTS_HOLD * n_neighbors >= n_samples and one_normal_law(cosines)
    return float(median + scale * norm.ppf(1 - share)), float(scale), unrelated


def one_normal_law(cosines):
    """Whether one normal law explains ``cosines`` (near copies left out)
    at least as well as a mixture of two, by the Bayesian information
    criterion: unrelated directions in 32 or more dimensions give cosines
    of one bell; identities add a second mode, however few their samples
    (2 samples of each of 10 identities give a BIC margin of 25)."""
    values = cosines[cosines < 1.0 - DUPLICATE_GAP][:, None]
    if values.shape[0] < 100 or np.unique(values).size < 3:
        return False
    one, two = (
        GaussianMixture(m, random_state=0).fit(values).bic(values) for m in (1, 2)
    )
    return bool(one <= two)


def background_of(X, n_samples, n_neighbors):
    """:func:`background_level` of the in-memory rows ``X``, from
    :func:`random_pair_cosines` of the rows :func:`row_hashes` draws."""
    X = np.asarray(X)
    cosines = random_pair_cosines(row_hashes(X), X.__getitem__)
    return background_level(cosines, n_samples, n_neighbors)


def cosine_quantiles(similarities, n_quantiles, exclude=None):
    """Evenly spaced quantiles of the kNN cosines.

    ``n_quantiles`` of them, or one per cosine when there are fewer (but at
    least 1,000). Read off a fine histogram, so it runs in O(nk) without
    sorting and does not depend on the order of the samples.
    """
    values, exclude = _flat(similarities, exclude)
    count, lo, hi = kept_count_range(values, exclude)
    if count == 0:
        raise ValueError("No cosine is left to calibrate on.")
    counts = _cosine_histogram(values, lo, hi, exclude)
    return _histogram_quantiles(counts, lo, hi, count, n_quantiles)


#: Bins of the histogram the quantiles are read from.
_HISTOGRAM_BINS = 65536


def _flat(similarities, exclude):
    """The cosines and the mask of those left out, flat (no copy where the
    arrays are contiguous); an empty mask for ``exclude=None``."""
    values = np.ravel(similarities)
    if exclude is None:
        return values, np.zeros(0, dtype=bool)
    return values, np.ravel(exclude).astype(bool, copy=False)


def _cosine_histogram(values, lo, hi, exclude=None):
    """Counts of the flat ``values`` not in ``exclude`` (None: all) in the
    fine bins over ``[lo, hi]`` (at most their minimum and maximum): a sum
    over any split of the values (the Dask path adds them block by block).
    The counts are ``np.histogram``'s."""
    if hi - lo < 1e-6:
        return np.zeros(_HISTOGRAM_BINS, dtype=np.int64)
    values, exclude = _flat(values, exclude)
    edges = np.linspace(lo, hi, _HISTOGRAM_BINS + 1)
    with numba_threads(None) as threads:
        n_chunks = max(1, min(threads, values.size // 65536))
        return kept_histogram(values, exclude, float(lo), float(hi), edges, n_chunks)


def _histogram_quantiles(counts, lo, hi, n_values, n_quantiles):
    """The quantiles of :func:`cosine_quantiles` from the histogram."""
    n_quantiles = min(n_quantiles, max(1000, n_values))
    if hi - lo < 1e-6:
        return np.full(n_quantiles, lo)
    edges = np.linspace(lo, hi, _HISTOGRAM_BINS + 1)
    cdf = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    cdf /= cdf[-1]
    q = (np.arange(n_quantiles) + 0.5) / n_quantiles
    return np.interp(q, cdf, edges)


#: A pair is a likely match when its calibrated similarity is at least this
#: (more likely one identity than not).
LIKELY = 0.5


def mixture_curve(sample, background=None, n_components=3):
    """The calibration curve fitted to the cosine quantiles ``sample``.

    A Gaussian mixture of ``n_components`` is fitted to ``sample``; the
    components above the widest gap between consecutive means (in standard
    deviations of the lower one), and those :func:`same_above`
    ``background`` (as from :func:`background_level`; None: unknown), are
    "same identity", and the curve is their posterior, made
    non-decreasing.

    Returns ``(grid, curve, mixture, same_components)``: the curve tabulated
    at ``_GRID_SIZE`` cosines from ``min(-1, sample.min())`` to 1, the
    fitted mixture (None when ``sample`` holds one value) and the indices of
    its same-identity components.
    """
    n_distinct = np.unique(sample.round(6)).size
    n_components = min(n_components, n_distinct)
    lo = min(-1.0, float(sample.min()))
    grid = np.linspace(lo, 1.0, _GRID_SIZE)
    if n_components < 2 or (background is not None and background[2]):
        # One value only, or pairs that all look unrelated: no evidence of
        # two populations, nor of what an identity looks like. Only near
        # copies are taken as one identity (two points repeated, or +x and
        # -x, stay apart).
        value = float(sample[0])
        floor = value - 1e-9 if value >= 1.0 - DUPLICATE_GAP else 1.0 - DUPLICATE_GAP
        return grid, (grid >= floor).astype(np.float64), None, np.array([], int)
    mixture = GaussianMixture(n_components, random_state=0, reg_covar=1e-8).fit(
        sample[:, None]
    )
    means = mixture.means_.ravel()
    sds = np.sqrt(mixture.covariances_.ravel())
    order = np.argsort(means)
    # The same-identity components are those above the widest gap between
    # consecutive component means, in standard deviations of the lower one.
    gaps = np.diff(means[order]) / sds[order][:-1]
    same = order[int(np.argmax(gaps)) + 1 :]
    if background is not None:
        # Components far above the unrelated samples are same-identity too:
        # when every identity is larger than the lists, the lists hold no
        # unrelated samples, and the widest gap only splits the identities'
        # own cosines.
        level = background[0]
        ceiling = same_above(background)
        same = np.union1d(same, np.flatnonzero(means >= ceiling))
    same = np.sort(same)
    if same.size == n_components:
        # No component of unrelated samples: every listed pair above their
        # level is same-identity, with certainty from the ceiling up.
        curve = np.clip((grid - level) / (ceiling - level), 0.0, 1.0)
        return grid, curve, mixture, same
    curve = mixture.predict_proba(grid[:, None])[:, same].sum(axis=1)
    # Gaussian tails are meaningless far from the data: no evidence of
    # identity below the lowest centre, certainty above the highest.
    curve[grid <= means.min()] = 0.0
    curve[grid >= means.max()] = 1.0
    return grid, np.maximum.accumulate(curve), mixture, same


def likely_floor(sample_sims, background, n_quantiles=100_000):
    """The lowest cosine of a likely match, as the estimator would calibrate.

    ``sample_sims`` are the exact kNN cosines (self first) of sampled rows;
    the curve of :func:`mixture_curve` is fitted to them (self pairs and
    exact copies left out) with the data's ``background``
    (:func:`background_level`), as
    :meth:`~sklearn_ndde.similarity.CalibratedCosineSimilarity.fit_neighbors`
    fits it to the whole graph. A neighbour at this cosine or above has a
    calibrated similarity of at least :data:`LIKELY`. Returns ``inf`` when
    no cosine is that likely.
    """
    values = np.asarray(sample_sims)[:, 1:]
    kept = values < 1.0 - DUPLICATE_GAP
    if not kept.any():
        return np.inf
    grid, curve, _, _ = mixture_curve(
        cosine_quantiles(values, n_quantiles, exclude=~kept), background
    )
    above = np.flatnonzero(curve >= LIKELY)
    return float(grid[above[0]]) if above.size else np.inf
