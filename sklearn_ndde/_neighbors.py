"""The public neighbour search: in memory (:mod:`._knn`) or on a Dask
array (:mod:`._knn_dask`)."""

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._knn import search_numpy
from ._knn_dask import dask_knn_graph, is_dask_array
from ._recall import DEFAULT_RECALL
from ._validation import N_JOBS_CONSTRAINT


@validate_params(
    {
        "X": ["array-like"],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "method": [StrOptions({"auto", "exact", "ivf", "pynndescent"})],
        "metric": [StrOptions({"cosine"})],
        "recall": [Interval(numbers.Real, 0, 1, closed="right")],
        "random_state": ["random_state"],
        "n_jobs": N_JOBS_CONSTRAINT,
        "device": [str],
        "verbose": ["verbose"],
        "return_recall": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def knn_graph(
    X,
    n_neighbors,
    *,
    method="auto",
    metric="cosine",
    recall=DEFAULT_RECALL,
    random_state=None,
    n_jobs=None,
    device="auto",
    verbose=False,
    return_recall=False,
):
    """Nearest neighbours of every sample, the sample itself included.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings. Rows need not be normalised; a zero row is an error. A
        row-chunked ``dask.array`` is searched on the current Dask client,
        block against block with the same engines (``"exact"``, or
        ``"ivf"`` above 30,000 samples with ``"auto"``; ``pip install
        "sklearn-ndde[dask]"``): the results are dask arrays
        with ``X``'s row chunks, computed when asked for; NaN, infinity or
        zero rows are found on the workers and raised at the call.
    n_neighbors : int
        Number of neighbours per sample, the sample itself included, so at
        most ``n_samples``.
    method : {"auto", "exact", "ivf", "pynndescent"}, default="auto"
        ``"exact"`` is a blocked brute-force search (faiss's BLAS path) that
        never holds more than about 256 MB of similarities; ``"ivf"`` is
        faiss's inverted-file search, calibrated at run time to ``recall``
        (every row in the 8 cells nearest it, the rows far from the centre
        of their cell again in more cells, then a neighbour-descent
        refinement: each pair found from one end added at the other, and
        each sample met with its neighbours' neighbours);
        ``"pynndescent"`` is the NN-descent graph search; ``"auto"`` picks
        exact search up to 30,000 samples (or at any size on a CUDA device),
        ``"ivf"`` above, and ``"pynndescent"`` where faiss is missing (at
        1.74 million samples the IVF search's ``fit`` took 5.2 minutes,
        pynndescent's 18).
    metric : {"cosine"}, default="cosine"
        Similarity measure.
    recall : float in (0, 1], default=0.98
        Recall target of ``method="ivf"``: the share of the *likely*
        neighbours that the search must find, measured on 1,000 sampled
        rows against exact search. A likely neighbour is an exact
        neighbour whose cosine the training-free calibration (fitted on
        those exact lists, as the estimator fits it on the graph) makes
        at least as likely the same identity as not; the rest of a list
        is unrelated samples, which the clustering ignores and which no
        index finds cheaply. While the target does not hold on the
        sampled rows, the rows where they miss (those least close to the
        centre of their cell) are searched in twice as many cells and
        refined again; past a quarter of the cells, and for 1.0, the exact
        search runs instead. Ignored by the other methods.
    random_state : int, RandomState instance or None, default=None
        Seed of the approximate search.
    n_jobs : int, default=None
        Threads of the approximate search (``None`` means all); on a dask
        array, threads of each block's search (``None`` means 1: the
        workers are the parallelism).
    device : str, default="auto"
        Where the exact search runs: ``"cpu"`` (numpy), a torch device such
        as ``"cuda"`` (blocked matrix products on the GPU, same result up to
        float rounding), or ``"auto"``: above 30,000 samples CUDA when
        torch is installed and sees a GPU, else the CPU.
    verbose : bool, default=False
        Show a progress bar on stderr (for pynndescent, one step when it
        ends).
    return_recall : bool, default=False
        Also return the recall of the graph: 1.0 for an exact search, else
        the recall of the likely neighbours, measured on 1,000 sampled
        rows against exact search.

    Returns
    -------
    indices : ndarray of shape (n_samples, n_neighbors), dtype int32
        ``indices[i, 0] == i``; the other columns by decreasing similarity.
    similarities : ndarray of shape (n_samples, n_neighbors), dtype float32
        Cosine similarity of each pair, aligned with ``indices``.
    recall : float
        Only with ``return_recall``: the share of the likely neighbours
        found (ties at the lowest likely cosine count as found).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde import knn_graph
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> indices, sims = knn_graph(X, 2)
    >>> indices
    array([[0, 1],
           [1, 0],
           [2, 1]], dtype=int32)
    >>> sims.round(3)
    array([[1.   , 0.994],
           [1.   , 0.994],
           [1.   , 0.11 ]], dtype=float32)
    """
    if is_dask_array(X):
        if method == "pynndescent":
            raise ValueError(
                "method='pynndescent' is not available for a dask array: use "
                "'auto', 'exact' or 'ivf'."
            )
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        indices, sims, reached = dask_knn_graph(
            X, int(n_neighbors), method, float(recall), seed, n_jobs
        )
        return (indices, sims, reached) if return_recall else (indices, sims)
    return search_numpy(
        X,
        n_neighbors,
        method,
        recall,
        random_state,
        n_jobs,
        device,
        verbose,
        return_recall,
    )
