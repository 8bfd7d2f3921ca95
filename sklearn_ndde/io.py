"""Reading embeddings, labels and kNN files, the benchmark formats included.

The ``learn-to-cluster`` layout of the MS1M benchmark is supported as it is:
features as raw float32 ``.bin`` files of shape (n, 256), labels as ``.meta``
text files with one integer per line, and kNN files ``faiss_k_80.npz``
holding an (n, 2, k) array ``data`` of neighbour ids and cosine distances.
"""

import numbers
import os
import re
import stat
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = [
    "check_output_path",
    "knn_to_graph",
    "load_features",
    "load_knn",
    "load_labels",
    "save_labels",
]


def check_output_path(path, suffixes, inputs=()):
    """Refuse, before any work, an output path that cannot be written safely.

    Called on every output path of the command line before the clustering
    or training starts, so a bad path never costs the work.

    Parameters
    ----------
    path : str or path-like
        Where the output will go.
    suffixes : tuple of str
        The suffixes that the writer knows (lower case, with the dot).
    inputs : iterable of str or path-like or None
        Files the run reads; writing over one of them is refused.

    Raises
    ------
    ValueError
        If the suffix is unknown, the folder does not exist or cannot be
        written, the path is a folder or a read-only file, or it names one of
        the inputs.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"{str(path)!r}: the output must end in {' or '.join(suffixes)}, "
            f"not {path.suffix or 'no suffix'!r}."
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{str(path)!r}: the folder {str(folder)!r} does not exist.")
    # A real file, not os.access: root passes access() everywhere, and
    # folders like /proc refuse new files whatever their mode says.
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sklearn-ndde-probe-"):
            pass
    except OSError:
        raise ValueError(
            f"{str(path)!r}: the folder {str(folder)!r} is not writable."
        ) from None
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a file.")
    if path.exists():
        # Write bits, not os.access: as root, access() calls everything
        # writable, and a file its owner made read-only is not to be replaced.
        if not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError(f"{str(path)!r} is read-only; it is not replaced.")
        for other in inputs:
            if other is not None and Path(other).exists():
                if os.path.samefile(path, other):
                    raise ValueError(
                        f"{str(path)!r} is also an input of this run; write the "
                        "output elsewhere."
                    )
    return path


def _replace_keeping_mode(tmp, path):
    """Move ``tmp`` over ``path``, giving it ``path``'s mode if it existed,
    else the mode a new file gets (0666 less the umask)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextmanager
def _atomic_path(path):
    """A temporary path beside ``path`` to write to; moved over ``path`` when
    the block ends (keeping ``path``'s mode), removed if it fails, so a
    reader never sees a half-written file. It ends in ``path``'s suffix in
    lower case, which ``np.save`` and ``np.savez`` keep as it is."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {str(path)!r}: the folder {str(path.parent)!r} does not "
            "exist."
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix.lower()}")
    try:
        yield tmp
        _replace_keeping_mode(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _decoding(path):
    """Turn a decoder's failure on a damaged file into one ValueError that
    names the file (a truncated or non-zip ``.npz`` raises
    ``zipfile.BadZipFile``, a cut ``.npy`` ``EOFError`` or ``ValueError``)."""
    try:
        yield
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(
            f"{str(path)!r} is damaged or not a {path.suffix} file: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(
            f"{str(path)!r} could not be read as {path.suffix}: {str(exc)[:200]}"
        ) from None


def _existing(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    if path.stat().st_size == 0:
        raise ValueError(f"{str(path)!r} is empty.")
    return path


#: An array in a ``.npz`` may expand at most this many times its compressed
#: size (float embeddings hardly compress; a zip bomb expands thousands of
#: times).
_MAX_EXPANSION = 100


def _check_declared_size(path, name):
    """Refuse the array ``name`` of the ``.npz`` at ``path`` before it is
    decompressed when the size its header declares is out of proportion to
    its compressed size, or more than the free memory."""
    import zipfile

    from ._memory import check_memory

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
    declared = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if declared > max(_MAX_EXPANSION * info.compress_size, 2**26):
        raise ValueError(
            f"{str(path)!r}: the array {name!r} declares shape {shape} "
            f"({declared / 1e9:.2f} GB) in {info.compress_size:,} compressed bytes; "
            "refused as a likely zip bomb. Save real embeddings with np.save or "
            "np.savez."
        )
    check_memory(declared, f"Loading {str(path)!r}")


def load_features(path, *, dim=256):
    """Embeddings from ``.npy``, ``.npz``, ``.bin`` or ``.csv``.

    Parameters
    ----------
    path : str or path-like
        ``.npy``: a 2-D array. ``.npz``: the array ``features``, or the only
        array in the file. ``.bin``: raw little-endian float32, ``dim``
        values per row (the learn-to-cluster layout). ``.csv``: one row per
        line, comma separated, no header.
    dim : int, default=256
        Row length of a ``.bin`` file.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_ndde.io import load_features
    >>> folder = tempfile.mkdtemp()
    >>> np.arange(8, dtype=np.float32).tofile(os.path.join(folder, "f.bin"))
    >>> load_features(os.path.join(folder, "f.bin"), dim=4)
    array([[0., 1., 2., 3.],
           [4., 5., 6., 7.]], dtype=float32)
    """
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".bin":
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}.")
        dim = int(dim)
        size = path.stat().st_size
        if size % (4 * dim):
            raise ValueError(
                f"{str(path)!r} holds {size} bytes, not a whole number of rows of "
                f"{dim} float32 values: truncated, or not dim={dim}."
            )
        X = np.fromfile(path, dtype="<f4").reshape(-1, dim)
    elif suffix in (".npy", ".npz", ".csv"):
        with _decoding(path):
            if suffix == ".npy":
                X = np.load(path, allow_pickle=False)
            elif suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    names = list(data.files)
                    if "features" in names:
                        name = "features"
                    elif len(names) == 1:
                        name = names[0]
                    else:
                        raise ValueError(
                            f"{str(path)!r} holds {names}; name the embeddings "
                            "'features'."
                        )
                    _check_declared_size(path, name)
                    X = data[name]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # no data
                    X = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
                if X.size == 0:
                    raise ValueError(f"{str(path)!r} holds no numbers.")
    else:
        raise ValueError(
            f"Unknown features format {suffix!r}; use .npy, .npz, .bin or .csv."
        )
    if X.ndim != 2:
        raise ValueError(f"{str(path)!r} holds an array of shape {X.shape}, not 2-D.")
    return X


def load_labels(path):
    """Integer labels from ``.meta`` / ``.txt`` (one per line), ``.npy``, ``.csv``.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn_ndde.io import load_labels
    >>> path = os.path.join(tempfile.mkdtemp(), "l.meta")
    >>> _ = open(path, "w").write("3\\n3\\n7\\n")
    >>> load_labels(path)
    array([3, 3, 7])
    """
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with _decoding(path):
            labels = np.load(path, allow_pickle=False)
    elif suffix in (".meta", ".txt", ".csv"):
        try:
            # utf-8-sig: a byte-order mark, as some editors write, is not data.
            labels = np.loadtxt(
                path, dtype=np.int64, ndmin=1, delimiter=",", encoding="utf-8-sig"
            )
        except (ValueError, OverflowError) as exc:
            bad = re.search(r"string '(.*)' to int", str(exc))
            too_large = bad is not None and re.fullmatch(r"[-+]?\d+", bad.group(1))
            reason = (
                f"{bad.group(1)}, an integer too large for 64 bits"
                if isinstance(exc, OverflowError) or too_large
                else "a line that is not one integer"
            )
            raise ValueError(
                f"{str(path)!r} must hold one integer per line; it holds {reason}."
            ) from exc
    else:
        raise ValueError(
            f"Unknown labels format {suffix!r}; use .meta, .txt, .npy or .csv."
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{str(path)!r} must hold a 1-D list of integers.")
    return labels


def save_labels(path, labels):
    """Write labels as ``.npy`` or ``.csv`` (one per line), atomically.

    A file that is replaced keeps its permissions.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise ValueError(f"Labels are written as .npy or .csv, not {suffix!r}.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a 1-D array of integers, got shape {labels.shape} "
            f"and dtype {labels.dtype}."
        )
    with _atomic_path(path) as tmp:
        if suffix == ".npy":
            np.save(tmp, np.asarray(labels))
        else:
            np.savetxt(tmp, np.asarray(labels), fmt="%d")


def load_knn(path):
    """A learn-to-cluster kNN file: ``(indices, distances)``, both (n, k).

    The file is an ``.npz`` whose array ``data`` (or only array) has shape
    (n, 2, k): neighbour ids, then cosine distances (``1 - cos``).

    Returns
    -------
    indices : ndarray of shape (n, k), int32 (int64 for ids of 2**31 and more)
        ``-1`` where the search found no neighbour.
    distances : ndarray of shape (n, k), float32
    """
    path = _existing(path)
    with _decoding(path):
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            key = "data" if "data" in names else names[0] if len(names) == 1 else None
            if key is None:
                raise ValueError(f"{str(path)!r} holds {names}, no 'data' array.")
            _check_declared_size(path, key)
            knn = data[key]
    if knn.ndim != 3 or knn.shape[1] != 2:
        raise ValueError(
            f"{str(path)!r} holds shape {knn.shape}; a kNN file holds (n, 2, k)."
        )
    indices = knn[:, 0, :]
    if not np.all(np.isfinite(indices)) or np.any(indices != np.round(indices)):
        raise ValueError(f"{str(path)!r}: neighbour ids must be integers.")
    if indices.size and indices.min() < -1:
        raise ValueError(f"{str(path)!r}: neighbour ids must be >= 0 (or -1: none).")
    # int32 would wrap ids of 2**31 and more to negative numbers.
    small = not indices.size or indices.max() < np.iinfo(np.int32).max
    return (
        indices.astype(np.int32 if small else np.int64),
        knn[:, 1, :].astype(np.float32),
    )


def knn_to_graph(indices, distances):
    """Sparse (n, n) distance graph of a kNN list, for ``metric="precomputed"``.

    Entries with a negative id (no neighbour found) are dropped; explicit
    zero distances are kept.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde.io import knn_to_graph
    >>> ids = np.array([[0, 1], [1, 0]])
    >>> knn_to_graph(ids, np.array([[0.0, 0.2], [0.0, 0.2]])).toarray()
    array([[0. , 0.2],
           [0.2, 0. ]], dtype=float32)
    """
    import scipy.sparse as sp  # here: the loaders and writers need no scipy

    indices = np.asarray(indices)
    distances = np.asarray(distances, dtype=np.float32)
    n = indices.shape[0]
    if indices.shape != distances.shape or indices.ndim != 2:
        raise ValueError("indices and distances must be (n, k) arrays of one shape.")
    if indices.max(initial=-1) >= n:
        raise ValueError(f"Neighbour ids must be below the number of rows ({n}).")
    keep = indices >= 0
    counts = keep.sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix(
        (distances[keep], indices[keep].astype(np.int32), indptr), shape=(n, n)
    )
