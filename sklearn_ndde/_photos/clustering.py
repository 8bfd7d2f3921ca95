"""Faces clustered into people, two faces of one photo never one person."""

from itertools import combinations

import numpy as np


def _path_to_root(parents, i):
    path = [i]
    while parents[path[-1]] >= 0:
        path.append(int(parents[path[-1]]))
    return path


def _cut_cannot_links(parents, Xn, pairs):
    """Cut links of a forest until no pair of ``pairs`` shares a tree.

    For each pair in one tree, the link on the path between its two samples
    whose ends are least alike (largest cosine distance) is cut; the part
    below it becomes a cluster of its own. Faces are never dropped.
    """
    parents = np.array(parents, dtype=np.int64)
    cut = True
    while cut:
        cut = False
        for u, v in pairs:
            up, vp = _path_to_root(parents, u), _path_to_root(parents, v)
            if up[-1] != vp[-1]:
                continue  # different trees (roots) already
            common = set(up) & set(vp)
            edges = [x for x in up + vp if x not in common]
            cos = np.einsum("ij,ij->i", Xn[edges], Xn[parents[edges]])
            parents[edges[int(np.argmin(cos))]] = -1
            cut = True
    return parents


def _same_photo_pairs(photo):
    """All pairs of samples with the same photo id, by photo id then index."""
    groups = {}
    for i, p in enumerate(np.asarray(photo).tolist()):
        groups.setdefault(p, []).append(i)
    return [pair for p in sorted(groups) for pair in combinations(groups[p], 2)]


def _clipped_k(n_faces, k=80):
    """``k`` for a collection of ``n_faces``: at most a third of it.

    With ``k`` near the number of faces every face is in every list and the
    graph is no longer local: on the 30-face sample collection, ``k`` from 5
    to 10 gives each known person one cluster, ``k`` of 20 or 30 joins four
    people into one (the flow merge sees one community).
    """
    return int(min(k, max(min(n_faces, 5), n_faces // 3)))


def cluster_faces(X, photo, *, k=80, random_state=0):
    """Cluster face descriptors, never two faces of one photo together.

    :class:`~sklearn_ndde.NDDeTPDiClustering` at its defaults with ``k``
    clipped to a third of the number of faces (at least 5); then, wherever
    its links join two faces
    of one photo, the link between them whose two faces are least alike is
    cut (the rest of the cluster stays whole, no face is dropped).

    Parameters
    ----------
    X : array-like of shape (n_faces, n_features)
        Face descriptors.
    photo : array-like of shape (n_faces,)
        Which photo each face comes from (any hashable ids).
    k : int, default=80
        Neighbours of the clustering, clipped to ``max(5, n_faces // 3)``
        (and to ``n_faces``).
    random_state : int, default=0
        Seed of the approximate neighbour search (large collections).

    Returns
    -------
    labels : ndarray of shape (n_faces,)
        Consecutive cluster ids, numbered by the first face of each.

    Examples
    --------
    Three people of ten faces each; faces 0 and 1 then share a photo, so
    the link between them is cut and face 0 is alone:

    >>> import numpy as np
    >>> from sklearn_ndde.faces import cluster_faces
    >>> rng = np.random.default_rng(0)
    >>> X = np.repeat(np.eye(3), 10, axis=0) + 0.1 * rng.standard_normal((30, 3))
    >>> photo = np.arange(30)
    >>> np.bincount(cluster_faces(X, photo))
    array([10, 10, 10])
    >>> photo[[0, 1]] = 99
    >>> np.bincount(cluster_faces(X, photo))
    array([ 1,  9, 10, 10])
    """
    from .. import NDDeTPDiClustering
    from .._peaks import components_from_parents
    from .._pipeline import duplicate_links
    from .._validation import _normalize_rows

    X = np.asarray(X, dtype=np.float32)
    photo = np.asarray(photo)
    if X.ndim != 2 or photo.shape != (X.shape[0],):
        raise ValueError(
            f"X must be 2-D with one photo id per row, got shapes {X.shape} and "
            f"{photo.shape}."
        )
    n = X.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    est = NDDeTPDiClustering(
        k=_clipped_k(n, int(k)), random_state=random_state, device="cpu"
    )
    est.fit(X)
    Xn = _normalize_rows(X, allow_zero=True)
    pairs = _same_photo_pairs(photo)
    # Near-duplicates that fit joins on top of the links, kept unless a
    # cannot-link pair is involved.
    cosines = np.einsum("id,ikd->ik", Xn, Xn[est.neighbors_])
    links = duplicate_links(est.neighbors_, cosines)
    parents = _cut_cannot_links(est.parents_, Xn, pairs)
    labels = components_from_parents(parents, links)
    if any(labels[u] == labels[v] for u, v in pairs):
        labels = components_from_parents(parents)
    return labels
