"""Clusters merged along the NDDe flow (ours, after the paper's steps 6-7)."""

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.utils._param_validation import Interval, validate_params

from ._calibration import LIKELY
from ._kernels import pairs_at_least, split_pair_sums
from ._peaks import components_from_parents
from ._validation import check_parents, check_transition


def _cluster_flows(P, labels, n_clusters):
    """``F[a, b]``: the mass that the members of ``a`` send to those of ``b``."""
    n = P.shape[0]
    width = P.nnz // n if n else 0
    if width and P.nnz == n * width and np.all(np.diff(P.indptr) == width):
        # k entries a row, as transition_matrix makes them: no row array.
        return pair_flows(None, P.indices, P.data, labels, n_clusters, width)
    rows = np.repeat(np.arange(n, dtype=P.indices.dtype), np.diff(P.indptr))
    return pair_flows(rows, P.indices, P.data, labels, n_clusters)


def pair_flows(rows, cols, mass, labels, n_clusters, width=0):
    """The cluster flows of the transitions ``rows -> cols`` of ``mass``
    (float64 sums, exact for float32 masses; the Dask path adds blocks).
    With ``width``, ``rows`` is None and pair ``e`` leaves row
    ``e // width``."""
    mass = np.asarray(mass)
    if mass.dtype != np.float32:
        mass = mass.astype(np.float64, copy=False)
    rows = np.zeros(0, dtype=np.int64) if rows is None else np.asarray(rows)
    # Most transitions stay inside a cluster: those are summed on the
    # diagonal, and only the others are sorted into sparse entries.
    inside, a, b, across = split_pair_sums(
        rows, np.asarray(cols), mass, np.asarray(labels), n_clusters, width
    )
    ids = np.arange(n_clusters)
    F = sp.csr_matrix(
        (
            np.concatenate([inside, across]),
            (np.concatenate([ids, a]), np.concatenate([ids, b])),
        ),
        shape=(n_clusters, n_clusters),
    )
    F.sum_duplicates()
    return F


def likely_pairs(indices, similarities, offset=0):
    """``(rows, cols)``: the pairs of the neighbour lists ``indices`` (of the
    rows ``offset``, ``offset + 1``, ...) whose similarity is at least
    :data:`._calibration.LIKELY` (more likely one identity than not): in the
    second merge, the pairs from which two clusters may join."""
    return pairs_at_least(np.asarray(indices), np.asarray(similarities), LIKELY, offset)


def likely_counts(indices, similarities, labels, n_clusters, targets=None, offset=0):
    """``C[b, a]``: how many of the :func:`likely_pairs` of the neighbour
    lists ``indices`` (of the rows ``offset``, ``offset + 1``, ...) lead
    from a sample of cluster ``b`` of ``labels`` to one of ``a`` (sparse;
    the Dask path adds its blocks' counts). With the boolean ``targets``,
    only the rows of the clusters ``b`` where it holds are read and
    counted."""
    if targets is None:
        rows, cols = likely_pairs(indices, similarities, offset)
    else:
        kept = np.flatnonzero(targets[labels[offset : offset + indices.shape[0]]])
        local, cols = likely_pairs(indices[kept], similarities[kept])
        rows = offset + kept[local]
    return pair_flows(
        rows, cols, np.ones(cols.size, dtype=np.float32), labels, n_clusters
    )


def links_with_flow_back(linked, before, labels, counts_of):
    """``linked`` (a new array) without the new links, those that
    ``before`` lacks, that join a cluster ``a`` of ``labels`` with at least
    two samples to another cluster ``b`` whose samples list ``a``'s samples
    as likely matches fewer times than ``a`` has samples.

    ``counts_of(targets)`` gives the counts of :func:`likely_counts` for
    the clusters ``b`` that ``targets`` marks; it is called only when such
    a link exists.

    The second pass links the saturated peaks again under the refitted
    calibration, without the flow back that the merges ask for. A fragment
    of a person is listed by the rest of that person; a look-alike is not.
    On LFW MobileFaceNet, the people of both splits with at least 20 faces,
    a peak of Tom Ridge's 33 faces linked to George W. Bush's 530 while
    Bush's faces listed Ridge's as likely 5 times.
    """
    out = np.array(linked, copy=True)
    new = np.flatnonzero((before < 0) & (out >= 0))
    a, b = labels[new], labels[out[new]]
    size = np.bincount(labels)
    asked = (a != b) & (size[a] >= 2)
    if not asked.any():
        return out
    new, a, b = new[asked], a[asked], b[asked]
    targets = np.zeros(size.size, dtype=bool)
    targets[b] = True
    back = _entries(sp.csr_matrix(counts_of(targets)), b, a)
    refused = new[back < size[a]]
    out[refused] = before[refused]
    return out


def likely_connectivity(indices, similarities):
    """The :func:`likely_pairs` of the neighbour lists of all ``n`` samples,
    as the sparse ``(n, n)`` ``connectivity`` of :func:`merge_by_flow` (COO,
    the format it reads: no sorting)."""
    rows, cols = likely_pairs(indices, similarities)
    n = indices.shape[0]
    return sp.coo_matrix(
        (np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n)
    )


def _entries(M, rows, cols):
    """``M[rows[i], cols[i]]`` for each ``i``, as a flat array (empty too)."""
    if rows.size == 0:
        return np.zeros(0, dtype=M.dtype)
    return np.asarray(M[rows, cols]).ravel()


def _best_targets(F, size, threshold, connected=None):
    """Each cluster's best larger partner, for the pairs scoring >= threshold
    (and, with ``connected``, holding a connected pair of samples).

    The score of ``a`` joining ``b`` is ``sqrt(F[a, b] * F[b, a]) / size[a]``:
    ``a`` must send much of its flow to ``b`` *and* receive flow back. A
    true singleton beside a large identity sends it flow, because all its
    neighbours are there, but few of that identity's samples list it, so
    little comes back. ``b`` must be larger than ``a``, which makes the
    merges of one round a forest: larger in size, then in the mass it
    receives (its samples' summed NDDe density), then in id, so that the
    order of the samples matters only between clusters alike in both.
    """
    mass = np.asarray(F.sum(axis=0)).ravel()
    F = F.tocsr(copy=True)
    F.setdiag(0)
    F.eliminate_zeros()
    flows = F.tocoo()
    a, b, out = flows.row, flows.col, flows.data
    larger = (size[b] > size[a]) | (
        (size[b] == size[a]) & ((mass[b] > mass[a]) | ((mass[b] == mass[a]) & (b < a)))
    )
    a, b, out = a[larger], b[larger], out[larger]
    score = np.sqrt(out * _entries(F, b, a)) / size[a]
    keep = score >= threshold
    if connected is not None:
        a, b, score = a[keep], b[keep], score[keep]
        keep = _entries(connected, a, b) + _entries(connected, b, a) > 0
    a, b, score = a[keep], b[keep], score[keep]
    # The best partner of each cluster: highest score, then smallest id.
    order = np.lexsort((b, -score, a))
    a, b = a[order], b[order]
    first = np.ones(a.size, dtype=bool)
    first[1:] = a[1:] != a[:-1]
    return a[first], b[first]


@validate_params(
    {
        "parents": ["array-like"],
        "P": ["sparse matrix"],
        "threshold": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "connectivity": ["sparse matrix", None],
    },
    prefer_skip_nested_validation=True,
)
def merge_by_flow(parents, P, *, threshold=0.18, max_iter=10, connectivity=None):
    """Merge clusters that exchange much of the NDDe flow both ways.

    TPDi links two samples only when their transition rows overlap, so in
    an identity whose faces vary a lot (a weak embedding model, or many
    faces of one person) it leaves fragments: small clusters and singletons
    whose neighbours are mostly in one other cluster, but none of them
    close enough in TPDi. The density transition matrix ``P`` says how
    much each cluster sends to another. Cluster ``a`` joins the larger
    cluster ``b`` for which ``sqrt(F_ab * F_ba) / |a|`` is largest, where
    ``F_ab`` is the mass that ``a``'s samples send to ``b``'s through
    ``P``, when that score is at least ``threshold``. Requiring flow in both
    directions keeps true singletons apart: all the neighbours of a lone
    face may belong to one large identity, but few of that identity's faces
    list it. The clusters merged are then merged again, up to ``max_iter``
    rounds, until no pair qualifies. With ``connectivity``, two clusters
    merge only when some sample of one is connected to some sample of the
    other (as in :class:`~sklearn.cluster.AgglomerativeClustering`).

    Each merge links the root (peak) of ``a`` to the root of ``b``, so the
    links stay a forest with one root per cluster.

    Parameters
    ----------
    parents : array-like of shape (n_samples,)
        Links from :func:`density_peaks` or :func:`link_saturated_peaks`,
        ``-1`` for roots; they must form a forest.
    P : sparse matrix of shape (n_samples, n_samples)
        Row-stochastic density transition matrix, as from
        :func:`transition_matrix` (the one :func:`ndde_density` uses).
    threshold : float > 0, default=0.18
        Smallest score of a merge. Chosen on the LFW training identities
        (both embedding models; as they are, and restricted to identities of
        at least 2, 5 and 10 faces); lower merges more.
    max_iter : int, default=10
        Rounds of merging at most.
    connectivity : sparse matrix of shape (n_samples, n_samples), default=None
        The pairs of samples that may join their clusters: a stored non-zero
        entry ``(i, j)`` connects ``i`` and ``j`` (in either direction).
        :class:`~sklearn_ndde.NDDeTPDiClustering` passes the pairs of its
        second merge whose refitted similarity is at least 0.5 (more likely
        one identity than not). None: no constraint.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        Consecutive cluster ids, numbered by the first sample of each cluster.
    parents : ndarray of shape (n_samples,)
        The links, with each merged cluster's root linked to its partner's
        root; ``-1`` for the remaining roots.

    Examples
    --------
    Sample 2 is alone, but it sends all its flow to cluster {0, 1} and gets
    0.3 back from each of 0 and 1:

    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sklearn_ndde import merge_by_flow
    >>> P = sp.csr_matrix(np.array([[0.5, 0.2, 0.3],
    ...                             [0.2, 0.5, 0.3],
    ...                             [0.5, 0.5, 0.0]]))
    >>> labels, parents = merge_by_flow(np.array([-1, 0, -1]), P)
    >>> labels
    array([0, 0, 0])
    >>> parents
    array([-1,  0,  0])
    """
    P = check_transition(P)
    n = P.shape[0]
    parents = check_parents(parents, n)
    labels = components_from_parents(parents)
    n_clusters = labels.max() + 1 if n else 0
    flows = _cluster_flows(P, labels, n_clusters)
    connected = None
    if connectivity is not None:
        if connectivity.shape != (n, n):
            raise ValueError(
                f"connectivity must have shape ({n}, {n}) to match P, got "
                f"{connectivity.shape}."
            )
        connectivity = sp.coo_matrix(connectivity)
        stored = connectivity.data != 0
        connected = pair_flows(
            connectivity.row[stored],
            connectivity.col[stored],
            np.ones(int(stored.sum()), dtype=np.float32),
            labels,
            n_clusters,
        )
    return merge_on_flows(parents, labels, flows, threshold, max_iter, connected)


def merge_on_flows(parents, labels, F, threshold, max_iter, connected=None):
    """The rounds of :func:`merge_by_flow` from the cluster flows ``F`` of
    the clusters ``labels`` (the Dask path sums ``F`` block by block), and
    the counts ``connected`` of connected sample pairs between clusters
    (None: no constraint); the links ``parents`` are updated in place and
    returned with the labels."""
    n = parents.shape[0]
    roots = np.flatnonzero(parents < 0)
    n_clusters = labels.max() + 1 if n else 0
    if roots.size != n_clusters or np.unique(labels[roots]).size != n_clusters:
        raise ValueError("parents must form a forest: one root (-1) per cluster.")
    root = np.empty(n_clusters, dtype=np.intp)
    root[labels[roots]] = roots
    size = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    for _ in range(max_iter):
        moving, target = _best_targets(F, size, threshold, connected)
        if moving.size == 0:
            break
        parents[root[moving]] = root[target]
        graph = sp.csr_matrix(
            (np.ones(moving.size, dtype=np.int8), (moving, target)),
            shape=(n_clusters, n_clusters),
        )
        n_merged, merged = connected_components(graph, connection="weak")
        # Each merged group is a tree of clusters whose one unmoved member
        # keeps its root.
        stays = np.ones(n_clusters, dtype=bool)
        stays[moving] = False
        new_root = np.empty(n_merged, dtype=np.intp)
        new_root[merged[stays]] = root[stays]
        B = sp.csr_matrix(
            (np.ones(n_clusters), (np.arange(n_clusters), merged)),
            shape=(n_clusters, n_merged),
        )
        F = (B.T @ F @ B).tocsr()
        if connected is not None:
            connected = (B.T @ connected @ B).tocsr()
        size = np.bincount(merged, weights=size, minlength=n_merged)
        root, n_clusters = new_root, n_merged
    return components_from_parents(parents), parents
