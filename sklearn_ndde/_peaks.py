"""Density peaks: link each sample to a close denser neighbour (steps 6-7)."""

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.utils._param_validation import Interval, validate_params

from ._kernels import nearest_denser
from ._validation import check_neighbors


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

    Sample ``i`` is linked to the neighbour ``j != i`` of smallest distance
    among those with ``density[j] >= density[i]`` (ties go to the earlier
    column), provided that distance is below ``tau``. Samples without such a
    link are peaks. Clusters are the connected components of the links.

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
    column = nearest_denser(density, indices, distances)
    rows = np.flatnonzero(column >= 0)
    parents = np.full(n, -1, dtype=np.intp)
    near = distances[rows, column[rows]] < tau
    parents[rows[near]] = indices[rows[near], column[rows[near]]]
    return components_from_parents(parents), parents
