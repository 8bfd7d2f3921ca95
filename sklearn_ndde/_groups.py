"""Closed groups: lone samples whose nearest neighbours list one another (ours,
after the merges).

A person whose faces vary a lot (a sparse identity) can leave the merges as
dozens of single faces and pairs: their pair similarities are low, so TPDi
and the flows see no cluster, yet each face's nearest neighbours are that
person's other faces. Such a group is closed: its members are mutual nearest
neighbours of one another, and their lists stay inside it. Unrelated lone
samples are not: their lists reach into the rest of the collection.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ._kernels import (
    first_others,
    inside_counts,
    mutual_partners,
    pairs_at_least,
    propagate_labels,
)

#: The nearest neighbours (the sample itself aside) whose lists define a
#: group: as many as the density's neighbours.
GROUP_NEIGHBORS = 20
#: The share of a group's listed neighbours that must lie inside it.
GROUP_INSIDE = 0.8
#: Clusters of at most this many samples may form a group.
GROUP_MAX_SIZE = 2
#: The fewest listed neighbours that can show a closed group: with shorter
#: lists (``k`` of 10 or less) two mutual nearest neighbours would be one.
GROUP_MIN_NEIGHBORS = 10


#: The columns of a kNN list that :func:`closed_group_links` reads.
GROUP_COLUMNS = GROUP_NEIGHBORS + 1


#: Rounds of label propagation at most.
_LP_ROUNDS = 30


def _closed(group, top, local, m, n, inside):
    """Whether each group is closed (see :func:`closed_group_links`)."""
    size = np.bincount(group)
    held = np.bincount(group, weights=inside_counts(top, local, group))
    return (size > m) & (2 * size <= n) & (held >= inside * m * size)


def small_cluster_rows(labels, max_size=GROUP_MAX_SIZE):
    """The samples (sorted ids) of the clusters of at most ``max_size``."""
    sizes = np.bincount(labels)
    return np.flatnonzero(sizes[labels] <= max_size)


def closed_group_links(
    parents,
    labels,
    rank,
    rows,
    lists,
    *,
    n_neighbors=GROUP_NEIGHBORS,
    inside=GROUP_INSIDE,
):
    """Links, in ``parents`` (returned), the small clusters whose samples
    form a closed group.

    ``rows`` are the samples of the small clusters (:func:`small_cluster_rows`
    of ``labels``, the clusters of ``parents``) and ``lists`` their kNN lists
    (global ids, nearest first). Two of these samples are linked when each
    is among the other's ``n_neighbors`` nearest; a connected set of them is
    a closed group when it holds more than ``n_neighbors`` samples, at most
    half of all, and at least ``inside`` of its members' listed neighbours.
    A random set of a fraction f of the samples holds about f of them. A
    connected set that is not closed is split into the communities that
    label propagation finds over the same links, and each of those is
    tested the same way. The clusters of a group become one, rooted at the
    root densest in ``rank``.
    Lists of fewer than ``GROUP_MIN_NEIGHBORS`` other samples link nothing.
    """
    n = labels.size
    m = min(int(n_neighbors), lists.shape[1] - 1)
    if m < GROUP_MIN_NEIGHBORS or rows.size <= m:
        return parents
    top = first_others(np.asarray(lists), rows, m)
    local = np.full(n, -1, dtype=np.int64)
    local[rows] = np.arange(rows.size)
    partner = mutual_partners(top, rows, local)
    a, b = pairs_at_least(partner, partner, 0, 0)
    graph = sp.csr_matrix(
        (np.ones(2 * a.size, dtype=np.int8), (np.r_[a, b], np.r_[b, a])),
        shape=(rows.size, rows.size),
    )
    _, group = connected_components(graph, directed=False)
    closed = _closed(group, top, local, m, n, inside)
    # A set that is not closed may chain several people: its communities
    # (label propagation over the same links, ties to the densest) are
    # tried in its place.
    open_ = ~closed[group]
    if open_.any():
        key = -rank[rows]
        community = propagate_labels(graph.indptr, graph.indices, key, _LP_ROUNDS)
        split = np.where(open_, group.size + community, group)
        _, group = np.unique(split, return_inverse=True)
        closed = _closed(group, top, local, m, n, inside)
    member = closed[group]
    if not member.any():
        return parents
    # A pair may have its two samples in two groups: the groups' clusters
    # are joined first, then each joined set gets one root.
    clusters = labels[rows[member]]
    n_clusters = int(labels.max()) + 1
    nodes = n_clusters + group.size
    joined = sp.coo_matrix(
        (np.ones(clusters.size, dtype=np.int8), (clusters, n_clusters + group[member])),
        shape=(nodes, nodes),
    )
    _, joined = connected_components(joined, directed=False)
    roots = np.flatnonzero(parents < 0)
    roots = roots[np.isin(labels[roots], clusters)]
    sets = joined[labels[roots]]
    order = np.lexsort((-rank[roots], sets))
    roots, sets = roots[order], sets[order]
    first = np.ones(roots.size, dtype=bool)
    first[1:] = sets[1:] != sets[:-1]
    head = roots[first][np.cumsum(first) - 1]
    parents[roots[~first]] = head[~first]
    return parents
