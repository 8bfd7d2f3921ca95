"""NDDe: the size-invariant density diffused over a transition matrix (step 4)."""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, validate_params

from ._validation import check_transition

#: Iterations allowed when ``ndde_density(..., n_iter=None)``.
MAX_ITER = 1000


def _without_self_loops(P):
    """``P`` with its diagonal removed and rows renormalised.

    A row whose only mass was its self-loop keeps it: the walk stays put.
    """
    P = P.tocsr(copy=True)
    diag = P.diagonal()
    P.setdiag(0)
    P.eliminate_zeros()
    kept = 1.0 - diag
    stuck = kept <= 1e-12
    scale = np.where(stuck, 1.0, 1.0 / np.where(stuck, 1.0, kept))
    P = sp.diags(scale) @ P
    if stuck.any():
        P = P + sp.diags(stuck.astype(P.dtype))
    return P.tocsr()


@validate_params(
    {
        "P": ["sparse matrix"],
        "n_iter": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "damping": [Interval(numbers.Real, 0, 1, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def ndde_density(P, *, n_iter=1, damping=0.1, tol=0.05):
    """Neighbourhood-diffused density (NDDe) of every sample.

    Density starts uniform and flows along the transition matrix,
    ``rho <- P^T rho``. Every row of ``P`` sums to 1, so the total stays
    ``n_samples``, and a set of samples that the walk never leaves keeps a
    mean density of exactly 1 whatever its size.

    Parameters
    ----------
    P : sparse matrix of shape (n_samples, n_samples)
        Row-stochastic transition matrix, as from :func:`transition_matrix`.
    n_iter : int or None, default=1
        ``1`` is the authors' released one-step density,
        ``rho_j = sum_i p_ij``. ``2`` or more runs the paper's lazy diffusion
        ``rho <- damping * rho + (1 - damping) * P~^T rho`` from ``rho = 1``
        for at most ``n_iter`` steps, where ``P~`` is ``P`` without self-loops
        (rows renormalised), stopping early once the mean absolute change per
        sample falls below ``tol``. ``None`` iterates until that happens (at
        most 1000 steps, with a :class:`~sklearn.exceptions.ConvergenceWarning`
        if it does not).
    damping : float in [0, 1), default=0.1
        Laziness of the iterated walk; unused when ``n_iter=1``.
    tol : float, default=0.05
        Stopping threshold of the iterated walk (the paper's L1 change with
        densities summing to 1 equals this mean change per sample); unused
        when ``n_iter=1``.

    Returns
    -------
    density : ndarray of shape (n_samples,), dtype float64
        Non-negative, summing to ``n_samples``.

    References
    ----------
    Y. Chen et al., "On Mitigating Hard Clusters for Face Clustering",
    ECCV 2022, Section 3.2.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sklearn_ndde import ndde_density
    >>> P = sp.csr_matrix(np.array([[0.5, 0.5, 0.0],
    ...                             [0.0, 1.0, 0.0],
    ...                             [0.0, 0.5, 0.5]]))
    >>> ndde_density(P)
    array([0.5, 2. , 0.5])
    """
    P = check_transition(P)
    n = P.shape[0]
    if n_iter == 1:
        # The column sums, added in the order of the rows as P.T @ 1 adds
        # them, without the transpose.
        return np.bincount(
            P.indices, weights=P.data.astype(np.float64), minlength=n
        ).astype(np.float64, copy=False)
    PT = _without_self_loops(P).T.tocsr().astype(np.float64)
    rho = np.ones(n)
    max_iter = MAX_ITER if n_iter is None else n_iter
    for _ in range(max_iter):
        new = damping * rho + (1.0 - damping) * (PT @ rho)
        change = np.abs(new - rho).sum() / n
        rho = new
        if change < tol:
            break
    else:
        if n_iter is None:
            warnings.warn(
                f"NDDe diffusion did not converge in {max_iter} iterations "
                f"(last mean change {change:.3g} >= tol={tol}).",
                ConvergenceWarning,
                stacklevel=2,
            )
    return rho
