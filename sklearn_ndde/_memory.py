"""Up-front memory estimates, so that a run too big fails before it starts."""

import os

# Bytes per (sample, neighbour) entry of the stages after the kNN graph: the
# graph, the pair similarities, the transition matrices, TPDi, the flow
# merge and the recalibration (``benchmarks/scale_fit.py``; NOTES.md).
_BYTES_PER_ENTRY = 30
# The IVF search's refinement per entry: the pairs offered to their other
# end, the round's grown copy of the graph and its flags of new pairs.
_REFINE_BYTES_PER_ENTRY = 20
# pynndescent's working set per entry (measured by ``benchmarks/scale.py``:
# about 4.2 GB peak at 584,013 x 80 x 256-d, embeddings included).
_PYNNDESCENT_BYTES_PER_ENTRY = 72
# The exact search's similarity block (at most 2**26 float32: about 256 MB
# whatever n is) and its int64 argpartition output.
_EXACT_BLOCK_ELEMENTS = 2**26
_EXACT_BYTES_PER_ELEMENT = 12
# Query rows per block of the IVF search (its int64 ids and float32 cosines).
# Small blocks keep faiss's result heaps in the caches: at 584,013 faces
# the pass at nprobe 8 took 30 % less time in blocks of 2,048 than of 16,384.
_IVF_BLOCK_ROWS = 2048
# Dimensions per 4-bit code of the single-machine IVF search (the Dask
# path's one pass keeps 2): 5,206,761 faces in ``NOTES.md``, twenty-second
# session.
_DIMS_PER_CODE = 4


def ivf_sub_vectors(d, dims_per_code=_DIMS_PER_CODE):
    """The 4-bit codes of a row of ``d`` dimensions in the IVF index: one
    per ``dims_per_code`` dimensions, or per 2 where ``dims_per_code``
    does not divide ``d`` (an odd ``d`` is not coded: IVF-Flat)."""
    return d // dims_per_code if d % dims_per_code == 0 else d // 2


def available_bytes():
    """Memory the process can still get, or None when it cannot be read.

    ``MemAvailable`` of ``/proc/meminfo`` on Linux; the free physical pages
    elsewhere on POSIX.
    """
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def knn_bytes(n_samples, n_features, n_neighbors, method, rows_copied=True):
    """A bound on the peak memory of :func:`~sklearn_ndde.knn_graph`.

    The unit-row copy of the embeddings (none when ``rows_copied`` is
    False: float32 unit rows are used as they are), the (n, k) outputs and
    the search's working set: the exact search's similarity block, the IVF
    index (4 bits per 4 dimensions, or per 2 where 4 do not divide the
    dimension, and an id per row; a copy of the rows for an odd dimension)
    with its block of results, the pairs offered to
    their other end and the refinement's copy of the graph, or
    pynndescent's graph. ``method`` is ``"exact"``, ``"ivf"`` or
    ``"pynndescent"``. Arguments are made Python integers first, so that
    numpy integers (``np.int32(80)``) cannot overflow the products.
    """
    n_samples, n_features, n_neighbors = map(int, (n_samples, n_features, n_neighbors))
    entries = n_samples * n_neighbors
    total = 4 * n_samples * n_features * bool(rows_copied) + 8 * entries
    if method == "exact":
        block = min(n_samples * n_samples, _EXACT_BLOCK_ELEMENTS)
        total += _EXACT_BYTES_PER_ELEMENT * block
    elif method == "ivf":
        # Two 4-bit codes a byte; an odd dimension keeps a copy of the rows.
        code = (
            ivf_sub_vectors(n_features) // 2 if n_features % 2 == 0 else 4 * n_features
        )
        # The codes and ids, the cells, closeness and order of each row.
        total += (code + 8 + 24) * n_samples
        total += _IVF_BLOCK_ROWS * n_neighbors * 12
        total += _REFINE_BYTES_PER_ENTRY * entries
        total += _EXACT_BYTES_PER_ELEMENT * min(n_samples * 1000, _EXACT_BLOCK_ELEMENTS)
    else:
        total += _PYNNDESCENT_BYTES_PER_ENTRY * entries
    return total


def fit_bytes(n_samples, n_features, n_neighbors, method, rows_copied=True):
    """The peak memory of ``NDDeTPDiClustering.fit`` beyond the input.

    The larger of its two phases: the neighbour search
    (:func:`knn_bytes`), and the stages after it (the unit rows, kept for
    ``predict``, unless ``rows_copied`` is False, and ``_BYTES_PER_ENTRY``
    per neighbour pair); the search's working set is freed before the
    later stages start. ``n_features`` is 0 for a precomputed graph (no
    search, no embeddings kept): then only the stages after the graph
    count. ``benchmarks/scale_fit.py`` prints it beside the peak it
    measures.
    """
    n_samples, n_features, n_neighbors = map(int, (n_samples, n_features, n_neighbors))
    after_graph = _BYTES_PER_ENTRY * n_samples * n_neighbors
    if not n_features:
        return after_graph
    return max(
        knn_bytes(n_samples, n_features, n_neighbors, method, rows_copied),
        after_graph + 4 * n_samples * n_features * bool(rows_copied),
    )


def check_memory(needed, what):
    """Raise a MemoryError naming ``what`` when ``needed`` bytes are not free."""
    free = available_bytes()
    if free is not None and needed > free:
        raise MemoryError(
            f"{what} needs about {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB "
            "of memory is available; lower k, cluster fewer samples at once, or "
            "free memory."
        )
