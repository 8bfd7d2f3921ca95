"""The learned similarity's training loop, apart from the model: the
optimiser, the schedule, early stopping on held-out identities."""

import os
import time
import warnings
from contextlib import contextmanager

import numpy as np

from .._progress import progress
from ._calibrated import CalibratedCosineSimilarity


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TransformerSimilarity needs PyTorch: pip install 'sklearn-ndde[torch]' "
            "(for a CPU-only build first: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)."
        ) from exc
    return torch


@contextmanager
def _torch_session(torch, seed, n_jobs):
    """Seeded, thread-limited torch work that leaves the global state as it was."""
    threads = torch.get_num_threads()
    if n_jobs is not None:
        torch.set_num_threads(
            max(1, os.cpu_count() + 1 + n_jobs if n_jobs < 0 else n_jobs)
        )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def autocast(torch, device, precision):
    """``torch.autocast`` to bfloat16 when ``precision`` asks for it."""
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    use = precision == "bfloat16"
    if precision == "auto":
        try:
            if device_type == "cuda":
                use = torch.cuda.is_bf16_supported()
            else:
                use = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            use = False
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use)


def train_network(est, torch, X, y, indices, cosines, rng, seed):
    """Train a new network of ``est``'s parameters on the labelled ``X``
    and its kNN graph (``indices``, ``cosines``); set ``est.batch_size_``
    and ``est.history_``; return the network, in eval mode."""
    n = X.shape[0]
    others = cosines[:, 1:] if cosines.shape[1] > 1 else cosines
    cosine_scale = [float(others.mean()), max(float(others.std()), 1e-6)]
    targets = (y[indices] == y[:, None]).astype(np.float32)
    if est.residual:
        calibration = CalibratedCosineSimilarity().fit_neighbors(indices, cosines)
        curve = np.clip(calibration.curve_, 1e-4, 1 - 1e-4)
        grid, curve = calibration.grid_, np.log(curve / (1 - curve))

    # Held-out identities, not anchors: the model is meant for identities
    # it never saw, and anchors of a training identity would flatter it.
    valid = np.array([], dtype=np.int64)
    if est.validation_fraction is not None:
        identities = rng.permutation(np.unique(y))
        n_held = int(round(est.validation_fraction * identities.size))
        if not 1 <= n_held < identities.size:
            raise ValueError(
                f"validation_fraction={est.validation_fraction} holds out "
                f"{n_held} of {identities.size} identities; it must leave at "
                "least one for validation and one for training."
            )
        valid = np.flatnonzero(np.isin(y, identities[:n_held]))
    train = rng.permutation(np.setdiff1d(np.arange(n), valid))
    n_valid = valid.size
    batch_size = est.batch_size
    if batch_size == "auto":
        batch_size = int(np.clip(train.size // 100, 32, 512))
    est.batch_size_ = batch_size

    with _torch_session(torch, seed, est.n_jobs):
        module = est._new_module(X.shape[1])
        module.cosine_scale.copy_(torch.tensor(cosine_scale))
        if est.residual:
            module.calibration_grid.copy_(torch.from_numpy(grid))
            module.calibration_logit.copy_(torch.from_numpy(curve))
        module = module.to(est.device_)
        optimizer = torch.optim.Adam(
            module.parameters(),
            lr=est.learning_rate,
            weight_decay=est.weight_decay,
        )
        scheduler = None
        total_steps = est.max_epochs * -(-train.size // batch_size)
        # OneCycleLR divides by the length of each phase: the warm-up
        # needs two steps at least, and a run of under 4 steps keeps the
        # rate constant.
        if est.learning_rate_schedule == "cosine" and total_steps >= 4:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=est.learning_rate,
                total_steps=total_steps,
                pct_start=max(0.1, 2.0 / total_steps),
                anneal_strategy="cos",
                cycle_momentum=False,
            )
        loss_fn = torch.nn.BCEWithLogitsLoss()
        features = _read_tensor(torch, X).to(est.device_)
        idx_t = torch.from_numpy(indices.astype(np.int64)).to(est.device_)
        tgt_t = torch.from_numpy(targets).to(est.device_)
        generator = torch.Generator().manual_seed(seed)
        est.history_ = []
        best, best_state, stale = np.inf, None, 0
        bar = progress(
            "TransformerSimilarity",
            est.max_epochs,
            est.verbose,
            "epoch",
            leave=True,
            lines=True,
        )
        for epoch in range(est.max_epochs):
            t0 = time.perf_counter()
            module.train()
            order = torch.from_numpy(train)[
                torch.randperm(train.size, generator=generator)
            ]
            total = 0.0
            for b in range(0, order.numel(), batch_size):
                batch = order[b : b + batch_size].to(est.device_)
                with autocast(torch, est.device_, est.precision):
                    logits = module(features[idx_t[batch]])
                loss = loss_fn(logits.float(), tgt_t[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                rate = optimizer.param_groups[0]["lr"]
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total += float(loss.detach()) * batch.numel()
            record = {
                "epoch": epoch + 1,
                "train_loss": total / max(1, train.size),
                "learning_rate": float(rate),
                "valid_loss": None,
            }
            if n_valid:
                record["valid_loss"] = _loss(
                    torch,
                    module,
                    (features, idx_t, tgt_t),
                    valid,
                    loss_fn,
                    est.device_,
                    est.precision,
                )
            record["seconds"] = time.perf_counter() - t0
            est.history_.append(record)
            bar.set_postfix(
                train_loss=f"{record['train_loss']:.4f}",
                **({"valid_loss": f"{record['valid_loss']:.4f}"} if n_valid else {}),
            )
            bar.update(1)
            if n_valid:
                if record["valid_loss"] < best:
                    best, stale = record["valid_loss"], 0
                    best_state = {
                        k: v.detach().clone() for k, v in module.state_dict().items()
                    }
                else:
                    stale += 1
                    if stale >= est.n_iter_no_change:
                        break
        bar.close()
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
    return module


def _loss(torch, module, data, anchors, loss_fn, device, precision):
    """The mean loss on the ``anchors`` (``data``: features, kNN lists and
    targets as tensors)."""
    features, idx_t, tgt_t = data
    module.eval()
    total = 0.0
    with torch.inference_mode():
        for b in range(0, anchors.size, 1024):
            batch = torch.from_numpy(anchors[b : b + 1024]).to(features.device)
            with autocast(torch, device, precision):
                logits = module(features[idx_t[batch]])
            total += float(loss_fn(logits.float(), tgt_t[batch])) * batch.numel()
    return total / anchors.size


def _read_tensor(torch, array):
    """``torch.from_numpy`` of an array that may be read-only (unit rows
    used as they are, a memory-mapped file), which the network only
    reads: without torch's warning that it is not writable."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable"
        )
        return torch.from_numpy(np.ascontiguousarray(array))


def score(est, torch, X, Y, Y_arr, indices):
    """The network's logits for the pairs ``(X[i], Y_arr[indices[i, c]])``
    (with ``Y`` given, each anchor put in front of its neighbours)."""
    device = next(est.module_.parameters()).device
    out = np.empty(indices.shape, dtype=np.float32)
    feats = _read_tensor(torch, Y_arr).to(device)
    anchors = _read_tensor(torch, X).to(device)
    idx_t = torch.from_numpy(indices.astype(np.int64))
    est.module_.eval()
    with _torch_session(torch, 0, est.n_jobs), torch.inference_mode():
        for b in range(0, len(X), 1024):
            rows = slice(b, b + 1024)
            seq = feats[idx_t[rows].to(device)]
            if Y is not None:
                seq = torch.cat([anchors[rows, None, :], seq], dim=1)
            with autocast(torch, est.device_, est.precision):
                logits = est.module_(seq)
            logits = logits.float()
            if Y is not None:
                logits = logits[:, 1:]
            out[rows] = logits.cpu().numpy()
    return out


def check_training_data(est, X, y):
    """Refuse labelled data ``X``, ``y`` that ``est`` cannot train on."""
    n = X.shape[0]
    if n < est.n_neighbors:
        raise ValueError(
            f"TransformerSimilarity needs at least n_neighbors={est.n_neighbors} "
            f"samples to train, got {n}."
        )
    if np.unique(y).size < 2:
        raise ValueError("y holds a single identity; training needs at least two.")
    if est.d_model % est.n_heads or est.d_model % 2:
        raise ValueError(
            f"d_model={est.d_model} must be even and divisible by "
            f"n_heads={est.n_heads}."
        )
