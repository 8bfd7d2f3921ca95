"""The exact neighbour search as torch matrix products (a CUDA GPU), and the
one place torch device strings are resolved."""

import numpy as np

from ._memory import _EXACT_BLOCK_ELEMENTS
from ._progress import progress


def _cuda_device(device):
    """The torch device for the exact search, or None for numpy on the CPU.

    ``"auto"`` is CUDA when torch is installed and sees a GPU; ``"cpu"`` is
    numpy; any other value is a torch device that must exist.
    """
    if device == "cpu":
        return None
    try:
        import torch
    except ImportError:
        if device == "auto":
            return None
        raise ImportError(
            f"device={device!r} needs PyTorch: pip install 'sklearn-ndde[torch]'."
        ) from None
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else None
    return check_torch_device(torch, device)


def check_torch_device(torch, device):
    """``device`` if this torch can run the package on it, else a ValueError.

    The one place device strings are resolved (the estimator, the learned
    similarity and the command line all come here). Only the CPU and CUDA
    are supported: other torch devices (``"mps"``, ``"xpu"``, ``"meta"``...)
    lack operations the package uses or hold no data.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device.") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device={device!r} is not supported: use 'auto', 'cpu', 'cuda' or "
            "'cuda:N'."
        )
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={device!r} but CUDA is not available.")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"device={device!r} but this machine has {count} CUDA device(s)."
            )
    return device


def _exact_knn_torch(Xn, n_neighbors, device, verbose=False):
    """The blocked exact search as torch matrix products on ``device``.

    Same blocks and the same result as :func:`_exact_knn` up to float
    rounding (and the order of exact ties); on a GPU it is the fast path.
    """
    import torch

    n = Xn.shape[0]
    X = torch.from_numpy(np.ascontiguousarray(Xn)).to(device)
    block = max(1, _EXACT_BLOCK_ELEMENTS // n)
    indices = np.empty((n, n_neighbors), dtype=np.int32)
    sims = np.empty((n, n_neighbors), dtype=np.float32)
    bar = progress(f"kNN (exact, {device})", n, verbose, unit="sample")
    with torch.inference_mode():
        for start in range(0, n, block):
            stop = min(n, start + block)
            S = X[start:stop] @ X.T
            rows = torch.arange(stop - start, device=S.device)
            S[rows, rows + start] = float("inf")  # the point itself first
            vals, part = torch.topk(S, n_neighbors, dim=1)
            indices[start:stop] = part.cpu().numpy()
            sims[start:stop] = vals.cpu().numpy()
            bar.update(stop - start)
    bar.close()
    sims[:, 0] = np.einsum("ij,ij->i", Xn, Xn)
    return indices, sims
