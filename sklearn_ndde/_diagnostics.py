"""A check of a fitted partition for the one failure it cannot see itself.

The training-free calibration learns from the data what "the same person"
looks like. A collection of a few hundred faces of mostly *different*
people gives it nothing to learn from: each kNN list then covers a large
share of the collection (k = 80 of 200 faces is 40 %), the calibration
reads the top of the strangers' cosines as the same identity, and the
flow merge joins nearly everything into one cluster. A collection of one
person gives the same picture in every statistic that does not know the
embedding model's scale: one cluster whose pairs are no more alike than
random pairs of the collection. The estimator cannot tell the two apart,
so it warns instead of choosing.
"""

import warnings

import numpy as np

#: A cluster holding at least this share of the samples is checked.
LARGE_SHARE = 0.5
#: It is flagged when the median cosine of its pairs sits less than this
#: many scales (interquartile range / 1.349) of the random-pair cosines
#: above their median. Measured on the shared embeddings: clusters of
#: strangers joined by the merge 0.0-0.64; the largest real clusters of
#: the LFW and CelebA cells 1.23 and more.
MIN_CONTRAST = 1.0
#: Collections smaller than this are not checked: a few samples give
#: too few pairs to judge, and the failure was seen from 200 samples on.
MIN_SAMPLES = 100
#: Pairs drawn for each of the two medians.
N_PAIRS = 20000


def largest_cluster_contrast(unit_rows, labels, n_pairs=N_PAIRS, seed=0):
    """The share of the samples in the largest cluster, and how far its
    pairs' median cosine sits above the collection's random pairs.

    Parameters
    ----------
    unit_rows : ndarray of shape (n_samples, n_features) or callable
        The unit rows, or a function that returns the unit rows of the
        sorted sample ids it is given (a Dask fit gathers only those).
    labels : array-like of shape (n_samples,)
        The partition.
    n_pairs : int
        Random pairs drawn for each median (pairs of a sample with itself
        are left out).
    seed : int
        Seed of the draws.

    Returns
    -------
    share : float
        Samples of the largest cluster over all samples.
    contrast : float
        ``(median cosine of the cluster's pairs - median cosine of random
        pairs) / scale``, the scale being the random pairs' interquartile
        range over 1.349 (the standard deviation of a normal law); NaN when
        the cluster has a single sample or the random cosines have no
        spread.
    """
    _, labels = np.unique(np.asarray(labels), return_inverse=True)
    n = labels.shape[0]
    largest = np.flatnonzero(labels == np.argmax(np.bincount(labels)))
    share = largest.size / n
    if largest.size < 2:
        return share, float("nan")
    rng = np.random.default_rng(seed)
    drawn = [rng.choice(n, n_pairs) for _ in range(2)]
    drawn += [rng.choice(largest, n_pairs) for _ in range(2)]
    needed, where = np.unique(np.concatenate(drawn), return_inverse=True)
    rows = unit_rows[needed] if hasattr(unit_rows, "shape") else unit_rows(needed)
    a, b, c, d = where.reshape(4, n_pairs)

    def cosines(left, right):
        distinct = left != right
        return np.einsum("ij,ij->i", rows[left[distinct]], rows[right[distinct]])

    low, median, high = np.quantile(cosines(a, b), [0.25, 0.5, 0.75])
    scale = (high - low) / 1.349
    if not scale > 0:
        return share, float("nan")
    inside = np.median(cosines(c, d))
    return share, float((inside - median) / scale)


def warn_if_one_random_cluster(unit_rows, labels, k, stacklevel=1):
    """Warn when one cluster holds most of at least ``MIN_SAMPLES`` samples
    and its pairs are no more alike than random pairs (see the module
    docstring); ``unit_rows`` as in :func:`largest_cluster_contrast`,
    ``k`` the fit's, named in the message."""
    n = len(labels)
    if n < MIN_SAMPLES:
        return
    share, contrast = largest_cluster_contrast(unit_rows, labels)
    if share < LARGE_SHARE or not contrast < MIN_CONTRAST:
        return
    smaller_k = max(10, n // 20)
    advice = (
        f" For mostly different people, try a smaller k such as k={smaller_k}."
        if k > smaller_k
        else ""
    )
    warnings.warn(
        f"One cluster holds {share:.0%} of the {n:,} samples, and its pairs are "
        f"no more alike than random pairs of the collection ({contrast:.2f} "
        f"scales above them). Either the collection is mostly one person, or "
        f"most samples are different people that the calibration could not "
        f"tell apart: with k={k}, each sample lists {k / n:.0%} of the "
        f"collection.{advice}",
        UserWarning,
        stacklevel=stacklevel + 1,
    )
