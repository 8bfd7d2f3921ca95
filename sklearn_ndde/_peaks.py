"""Density peaks: link each sample to a close denser neighbour (steps 6-7)."""

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.utils._param_validation import HasMethods, Interval, validate_params

from ._kernels import (
    _saturated_rows,
    around_density,
    denser_candidates,
    nearest_denser,
    nearest_denser_two_hops,
    numba_threads,
    shared_counts,
)
from ._validation import N_JOBS_CONSTRAINT, check_neighbors, check_parents
from .similarity._base import _unit_rows, pair_cosines


def denser_in_list(rows, indices, cosines, rank):
    """For each of ``rows`` (sample ids), the sample of highest cosine among
    those of its list (``indices``, ``cosines``: the rows' lists) that rank
    above it (:func:`density_rank`), ties to the smaller id; -1 where none
    does. Returns the candidates (int64) and their cosines (``-inf`` where
    none). For a cosine kNN graph this is also the best denser sample two
    steps away, since the list holds the highest cosines."""
    return denser_candidates(
        np.asarray(rows), np.asarray(indices), np.asarray(cosines), np.asarray(rank)
    )


def density_rank(density, indices):
    """Strict order of the samples by density: ``rank[j] > rank[i]`` means
    ``j`` is denser than ``i``.

    Equal densities are common once pair similarities saturate at 1 (tight
    identities, small k), and "denser or equal" would let two such samples
    link to each other and leave a cluster without a root. Ties go to the
    sample whose neighbours (``indices``, itself included) are denser in
    all, which does not depend on the order of the samples; only samples
    alike in both are ordered by index, the smaller counting as denser. The
    order is total, so the links always form a forest.
    """
    density = np.asarray(density, dtype=np.float64)
    return rank_by_density(density, around_density(density, np.asarray(indices)))


def rank_by_density(density, around):
    """The order of :func:`density_rank` from the densities and each
    sample's summed neighbour density (the Dask path sums the latter block
    by block)."""
    n = density.shape[0]
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((-np.arange(n), around, density))] = np.arange(n)
    return rank


def components_from_parents(parents, extra_links=None):
    """Connected components of the links ``i -- parents[i]`` (``-1``: none).

    ``extra_links``, a pair of id arrays ``(a, b)``, adds the links
    ``a[m] -- b[m]``. Returns consecutive labels, numbered by the first
    sample of each component.
    """
    n = parents.shape[0]
    src = np.flatnonzero(parents >= 0)
    dst = parents[src]
    if extra_links is not None:
        src = np.concatenate([src, extra_links[0]])
        dst = np.concatenate([dst, extra_links[1]])
    graph = sp.csr_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=True, connection="weak")
    return labels.astype(np.intp, copy=False)


@validate_params(
    {
        "density": ["array-like"],
        "indices": ["array-like"],
        "distances": ["array-like"],
        "tau": [Interval(numbers.Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def density_peaks(density, indices, distances, *, tau):
    """Cluster by linking each sample to its nearest denser neighbour.

    Sample ``i`` is linked to the neighbour ``j`` of smallest distance among
    those denser than it (equal distances go to the earlier column),
    provided that distance is below ``tau``. Samples without such a link are
    peaks. Equal densities are ordered strictly (see ``density_rank``: by
    the summed density of the neighbours, then by index): the paper's
    ``rho_j >= rho_i`` taken literally lets two samples of equal density
    link to each other and leaves a cluster with no peak; so the links form
    a forest and every cluster has exactly one peak, its root. Clusters are
    the connected components of the links.

    Parameters
    ----------
    density : array-like of shape (n_samples,)
        Density of each sample, as from :func:`ndde_density`.
    indices : array-like of shape (n_samples, n_neighbors)
        Neighbour ids of each sample.
    distances : array-like of shape (n_samples, n_neighbors)
        Distances aligned with ``indices``, as from :func:`tpdi`.
    tau : float
        Largest distance, exclusive, of a link (0.7 in the paper).

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Consecutive cluster ids, numbered by the first sample of each cluster.
    parents : ndarray of shape (n_samples,)
        The neighbour each sample links to, ``-1`` for peaks.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde import density_peaks
    >>> density = np.array([1.0, 2.0, 0.5, 1.5])
    >>> indices = np.array([[0, 1], [1, 0], [2, 3], [3, 2]])
    >>> distances = np.array([[0.0, 0.2], [0.0, 0.2], [0.0, 0.9], [0.0, 0.9]])
    >>> labels, parents = density_peaks(density, indices, distances, tau=0.7)
    >>> labels
    array([0, 0, 1, 2])
    >>> parents
    array([ 1, -1, -1, -1])
    """
    indices, distances = check_neighbors(indices, distances, name="distances")
    density = np.asarray(density, dtype=np.float64)
    n = indices.shape[0]
    if density.shape != (n,):
        raise ValueError(
            f"density must have shape ({n},) to match indices, got {density.shape}."
        )
    if not np.all(np.isfinite(density)):
        raise ValueError("density contains NaN or infinity.")
    column = nearest_denser(density_rank(density, indices), indices, distances)
    parents = links_below_tau(column, indices, distances, tau)
    return components_from_parents(parents), parents


def links_below_tau(column, indices, distances, tau):
    """Each row's link to ``indices[row, column[row]]`` when its distance is
    below ``tau``, else -1 (also -1 where ``column`` is -1)."""
    parents = np.full(indices.shape[0], -1, dtype=np.intp)
    rows = np.flatnonzero(column >= 0)
    near = distances[rows, column[rows]] < tau
    parents[rows[near]] = indices[rows[near], column[rows[near]]]
    return parents


#: The share of a saturated peak's kNN list that its candidate's list must
#: hold too (``link_saturated_peaks``'s ``min_shared``).
MIN_SHARED = 0.1
#: A peak below this NDDe density, and a link at least this similar, for
#: ``link_isolated_peaks`` (``max_density``, ``threshold``).
ISOLATED_DENSITY = 0.5
ISOLATED_SIMILARITY = 0.9
#: The estimator's isolated links also need a cosine this many scales of the
#: unrelated pairs' cosines above their level in a list: the best of many
#: unrelated samples spread about half a scale around it.
ISOLATED_CLEARANCE = 1.0


def shared_fraction(a, b):
    """For each row, the share of the ids of ``a[row]`` that ``b[row]``
    holds too (rows of distinct ids, such as kNN lists; ``-1`` counts as
    no id)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[0] == 0:
        return np.zeros(0)
    n_ids = int(max(a.max(initial=-1), b.max(initial=-1))) + 1
    with numba_threads(None) as threads:
        counts = shared_counts(a, b, n_ids, max(1, min(a.shape[0], threads)))
    return counts / a.shape[1]


@validate_params(
    {
        "parents": ["array-like"],
        "density": ["array-like"],
        "indices": ["array-like"],
        "similarities": ["array-like"],
        "max_density": [Interval(numbers.Real, 0, None, closed="neither")],
        "threshold": [Interval(numbers.Real, 0, 1, closed="both")],
    },
    prefer_skip_nested_validation=True,
)
def link_isolated_peaks(
    parents,
    density,
    indices,
    similarities,
    *,
    max_density=ISOLATED_DENSITY,
    threshold=ISOLATED_SIMILARITY,
):
    """Link the peaks that hardly any neighbour lists to a very alike denser
    neighbour.

    A sample's NDDe density is the flow it receives from the samples that
    list it. In an identity much larger than the density neighbourhood,
    the faces at its edge are listed by nobody (each face of the identity
    has closer ones to list): they receive almost no flow, so neither TPDi
    nor the two-way flow of :func:`merge_by_flow` can join them, however
    alike they are, and each stays a cluster of its own. A peak whose
    density is below ``max_density`` (the mean density of a cluster is 1)
    links to its most similar denser neighbour (in the strict order of
    :func:`density_peaks`; of equal similarities, the denser) when that
    pair's similarity is at least ``threshold``. A face of its own,
    with no such neighbour, stays a peak.

    Parameters
    ----------
    parents : array-like of shape (n_samples,)
        Links from :func:`density_peaks` or :func:`link_saturated_peaks`,
        ``-1`` for peaks.
    density : array-like of shape (n_samples,)
        Density of each sample, as from :func:`ndde_density`.
    indices : array-like of shape (n_samples, n_neighbors)
        Neighbour ids of each sample.
    similarities : array-like of shape (n_samples, n_neighbors)
        Same-identity probabilities aligned with ``indices``.
    max_density : float > 0, default=0.5
        Largest density of a peak that is linked.
    threshold : float in [0, 1], default=0.9
        Smallest similarity of the link: a pair nine times more likely one
        identity than not, since no flow back confirms it.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Consecutive cluster ids: the connected components of the links.
    parents : ndarray of shape (n_samples,)
        The links, isolated peaks linked; ``-1`` for the remaining peaks.

    Examples
    --------
    Sample 2 receives no flow; its denser neighbour 1 is very likely its
    identity, so it links there:

    >>> import numpy as np
    >>> from sklearn_ndde import link_isolated_peaks
    >>> indices = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    >>> similarities = np.array([[1.0, 0.95, 0.3], [1.0, 0.95, 0.3],
    ...                          [1.0, 0.92, 0.3]])
    >>> density = np.array([1.4, 1.5, 0.1])
    >>> labels, parents = link_isolated_peaks([1, -1, -1], density, indices,
    ...                                       similarities)
    >>> parents
    array([ 1, -1,  1])
    """
    indices, similarities = check_neighbors(indices, similarities)
    n = indices.shape[0]
    parents = check_parents(parents, n)
    density = np.asarray(density, dtype=np.float64)
    if density.shape != (n,):
        raise ValueError(
            f"density must have shape ({n},) to match indices, got {density.shape}."
        )
    parents = isolated_peak_links(
        parents,
        density,
        indices,
        similarities,
        lambda: density_rank(density, indices),
        max_density=max_density,
        threshold=threshold,
    )
    return components_from_parents(parents), parents


def isolated_peak_links(
    parents,
    density,
    indices,
    similarities,
    rank,
    *,
    max_density=ISOLATED_DENSITY,
    threshold=ISOLATED_SIMILARITY,
):
    """The links of :func:`link_isolated_peaks` on checked input, made in
    ``parents`` (returned); ``rank`` as :func:`saturated_links` takes it.
    ``similarities`` may also be a function of the rows it is needed for
    (the low-density peaks), which returns their lists' similarities."""
    rows = np.flatnonzero((parents < 0) & (density < max_density))
    if rows.size == 0:
        return parents
    if callable(rank):
        rank = rank()
    listed = similarities(rows) if callable(similarities) else similarities[rows]
    rows, candidate = isolated_links(rows, indices[rows], listed, rank, threshold)
    parents[rows] = candidate
    return parents


def isolated_links(rows, indices, similarities, rank, threshold):
    """The links of :func:`link_isolated_peaks` for the peaks ``rows`` (sample
    ids) of low density, from their lists (``indices``, ``similarities``)
    and the strict density order ``rank`` (the Dask path calls it block by
    block). Returns the linked rows and their new parents."""
    indices = np.asarray(indices, dtype=np.int64)
    denser = rank[indices] > rank[rows][:, None]
    masked = np.where(denser, similarities, -np.inf)
    best = masked.max(axis=1, initial=-np.inf)
    # Equal similarities (they saturate at 1) go to the denser sample, so
    # that the order of the samples does not matter.
    tied = denser & (masked == best[:, None])
    column = np.argmax(np.where(tied, rank[indices], -1), axis=1)
    alike = best >= threshold
    return rows[alike], indices[alike, column[alike]]


@validate_params(
    {
        "parents": ["array-like"],
        "density": ["array-like"],
        "indices": ["array-like"],
        "similarities": ["array-like"],
        "X": ["array-like"],
        "similarity": [HasMethods(["pair_similarity"])],
        "threshold": [Interval(numbers.Real, 0, 1, closed="both")],
        "min_shared": [Interval(numbers.Real, 0, 1, closed="both")],
        "cosines": ["array-like", None],
        "n_jobs": N_JOBS_CONSTRAINT,
    },
    prefer_skip_nested_validation=True,
)
def link_saturated_peaks(
    parents,
    density,
    indices,
    similarities,
    X,
    similarity,
    *,
    threshold=0.5,
    min_shared=MIN_SHARED,
    cosines=None,
    n_jobs=None,
):
    """Link the peaks inside identities larger than k to a denser sample.

    TPDi compares two samples' kNN lists, so it cannot see past the k-th
    neighbour: an identity with many more than k samples breaks into
    several density peaks whose lists hardly overlap. A peak is
    *saturated* when every neighbour in its list is judged its own
    identity (``similarities >= threshold``): the identity goes on beyond
    the list. Each saturated peak ``i`` looks two kNN steps away (the
    neighbours of its neighbours) for the denser samples
    (in the strict order of :func:`density_peaks`), takes the one of highest
    cosine to it,
    and links to it when ``similarity`` judges the pair its own identity
    too and the two kNN lists share at least ``min_shared`` of their
    samples. The densest peak of an identity finds no denser sample of its
    own and stays a peak: a denser sample it reaches belongs to another
    identity, and its list shares almost nothing with the peak's (0 to 5 %
    of 80 neighbours in the cases measured on LFW, against 30 to 60 % for
    two samples of one identity). Every other sample keeps its link.

    Parameters
    ----------
    parents : array-like of shape (n_samples,)
        Links from :func:`density_peaks`, ``-1`` for peaks.
    density : array-like of shape (n_samples,)
        Density of each sample, as from :func:`ndde_density`.
    indices : array-like of shape (n_samples, n_neighbors)
        Neighbour ids of each sample.
    similarities : array-like of shape (n_samples, n_neighbors)
        Same-identity probabilities aligned with ``indices``.
    X : array-like of shape (n_samples, n_features)
        The embeddings.
    similarity : object
        Pair similarity with a ``pair_similarity(X, indices, Y=None)`` method
        (:class:`~sklearn_ndde.similarity.PairSimilarity`), fitted. It
        scores each peak against its candidate as the last of ``k - 1``
        neighbours (the peak's ``k - 2`` nearest by cosine, then the
        candidate), with ``Y=X``; a similarity with a ``calibrate`` method
        (a map of the cosine alone, as
        :class:`~sklearn_ndde.similarity.CalibratedCosineSimilarity`) maps
        the pair's cosine instead.
    threshold : float in [0, 1], default=0.5
        Smallest similarity of a same-identity pair.
    min_shared : float in [0, 1], default=0.1
        Smallest share of the peak's kNN list that the candidate's list
        must hold too.
    cosines : array-like of shape (n_samples, n_neighbors), default=None
        The cosines of the pairs, aligned with ``indices``, for a graph of
        each sample's nearest neighbours by cosine (the estimator passes
        them). Then a peak with a denser sample in its own list takes the
        one of highest cosine among those, without the two-step search: for
        an exact kNN graph that is the same sample, since the list holds the
        highest cosines, and it is much faster when tau leaves many peaks.
        ``None`` always searches two steps (any graph).
    n_jobs : int, default=None
        Threads of the search for candidates (None: all).

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Consecutive cluster ids: the connected components of the links,
        numbered by the first sample of each cluster.
    parents : ndarray of shape (n_samples,)
        The links, saturated peaks linked; ``-1`` for the remaining peaks.

    Examples
    --------
    One identity in two groups, {0, 1, 4} and {2, 3}, with k = 3: peak 0
    reaches the denser sample 2 through sample 1, whose list it shares;
    peak 3, the densest, stays a peak.

    >>> import numpy as np
    >>> from sklearn_ndde import link_saturated_peaks
    >>> from sklearn_ndde.similarity import CalibratedCosineSimilarity
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3],
    ...               [0.95, 0.0]])
    >>> indices = np.array([[0, 1, 4], [1, 2, 0], [2, 3, 1], [3, 2, 1],
    ...                     [4, 0, 1]])
    >>> similarities = np.ones((5, 3))
    >>> parents = np.array([-1, 0, 3, -1, 0])
    >>> density = np.array([1.0, 0.5, 1.2, 1.7, 0.3])
    >>> same = CalibratedCosineSimilarity().fit_neighbors(  # same from 0.9 up
    ...     [[0, 1], [1, 0], [2, 0]], [[1.0, 0.2], [1.0, 0.2], [1.0, 0.9]])
    >>> labels, parents = link_saturated_peaks(
    ...     parents, density, indices, similarities, X, same)
    >>> labels
    array([0, 0, 0, 0, 0])
    >>> parents
    array([ 2,  0,  3, -1,  0])
    """
    return checked_saturated_links(
        parents,
        density,
        indices,
        similarities,
        X,
        similarity,
        threshold=threshold,
        min_shared=min_shared,
        cosines=cosines,
        n_jobs=n_jobs,
    )


def checked_saturated_links(
    parents,
    density,
    indices,
    similarities,
    X,
    similarity,
    *,
    threshold,
    min_shared,
    cosines,
    n_jobs,
    confirm=None,
):
    """:func:`link_saturated_peaks` with its arguments checked here, and the
    links confirmed by ``confirm`` (see :func:`saturated_links`)."""
    indices, similarities = check_neighbors(indices, similarities)
    n, k = indices.shape
    parents = check_parents(parents, n)
    density = np.asarray(density, dtype=np.float64)
    if density.shape != (n,):
        raise ValueError(
            f"density must have shape ({n},) to match indices, got {density.shape}."
        )
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != n:
        raise ValueError(
            f"X must have shape ({n}, n_features) to match indices, got {X.shape}."
        )
    if cosines is not None:
        cosines = np.asarray(cosines, dtype=np.float32)
        if cosines.shape != indices.shape:
            raise ValueError(
                f"cosines must have the shape of indices {indices.shape}, got "
                f"{cosines.shape}."
            )
    parents = saturated_links(
        parents,
        indices,
        similarities,
        X,
        similarity,
        lambda: density_rank(density, indices),
        threshold=threshold,
        min_shared=min_shared,
        cosines=cosines,
        n_jobs=n_jobs,
        confirm=confirm,
    )
    return components_from_parents(parents), parents


def saturated_links(
    parents,
    indices,
    similarities,
    X,
    similarity,
    rank,
    *,
    threshold=0.5,
    min_shared=MIN_SHARED,
    cosines=None,
    n_jobs=None,
    confirm=None,
):
    """The links of :func:`link_saturated_peaks` on checked input, made in
    ``parents`` (returned); ``rank`` is :func:`density_rank`'s order, or a
    function that computes it (only when some peak is saturated). The
    estimator calls it with the order it computed once. ``confirm``, a
    second calibration of the cosine (or None), must also give a link at
    least ``threshold`` (:func:`confirmed`); it applies where ``similarity``
    is itself a calibration."""
    n, k = indices.shape
    peaks = np.flatnonzero(
        (parents < 0) & saturated_rows(indices, similarities, threshold)
    )
    if peaks.size == 0:
        return parents
    if callable(rank):
        rank = rank()
    Xn = _unit_rows(X, "X")
    given = np.empty((0, 0), dtype=np.float32) if cosines is None else cosines
    candidates = np.full(peaks.size, -1, dtype=np.int64)
    listed_cosine = np.empty(peaks.size, dtype=np.float32)
    if given.size:
        candidates, listed_cosine = denser_in_list(
            peaks, indices[peaks], given[peaks], rank
        )
    listed = candidates >= 0
    far = np.flatnonzero(~listed)
    if far.size:
        with numba_threads(n_jobs) as threads:
            candidates[far] = nearest_denser_two_hops(
                peaks[far], indices, rank, Xn, max(1, min(far.size, threads))
            )
    found = candidates >= 0
    found[found] = (
        shared_fraction(indices[peaks[found]], indices[candidates[found]]) >= min_shared
    )
    peaks, candidates = peaks[found], candidates[found]
    listed, cosine = listed[found], listed_cosine[found]
    if peaks.size and hasattr(similarity, "calibrate"):
        # A map of the cosine alone needs no context. A candidate from the
        # peak's own list is judged on the list's cosine (the Dask path has
        # no other), one from two steps away on the rows' cosine.
        two = ~listed
        cosine[two] = np.einsum("id,id->i", Xn[peaks[two]], Xn[candidates[two]])
        same = confirmed(similarity, confirm, cosine, threshold)
        parents[peaks[same]] = candidates[same]
    elif peaks.size:
        # Each pair is scored in context, as a kNN list would present it: the
        # peak's nearest neighbours by cosine, the candidate in the last place.
        context = indices[peaks]
        cosine = pair_cosines(Xn[peaks], context, Xn)
        cosine[context == peaks[:, None]] = -np.inf
        order = np.argsort(-cosine, axis=1, kind="stable")[:, : k - 2]
        context = np.take_along_axis(context, order, axis=1)
        context = np.concatenate([context, candidates[:, None]], axis=1)
        same = similarity.pair_similarity(X[peaks], context, X)
        same = np.asarray(same)[:, -1] >= threshold
        parents[peaks[same]] = candidates[same]
    return parents


def confirmed(similarity, confirm, cosine, threshold):
    """Whether each link of cosine ``cosine`` is one identity under the
    calibration ``similarity`` and, unless ``confirm`` is None, under the
    calibration ``confirm`` too: both map it to at least ``threshold``.

    The second pass links the saturated peaks again under the calibration
    refitted to the first clustering (step 7d), and keeps only the links
    that the first calibration accepts as well. In a collection of a few
    people with many faces each, most kNN pairs are one person's, and the
    refitted curve accepts low cosines: on LFW MobileFaceNet, people of at
    least 40 faces (both splits), it linked a density peak of Jean Chretien's (55
    faces; its list: 52 of his, 19 of Jacques Chirac's, 9 of Ariel
    Sharon's) to a face of Ariel Sharon's at cosine 0.36.
    """
    same = np.asarray(similarity.calibrate(cosine)) >= threshold
    if confirm is not None:
        same &= np.asarray(confirm.calibrate(cosine)) >= threshold
    return same


def saturated_rows(indices, similarities, threshold):
    """Whether each row's whole list, the sample itself aside, has
    ``similarities >= threshold`` (and holds some other sample)."""
    return _saturated_rows(
        np.asarray(indices), np.asarray(similarities), np.float64(threshold)
    )
