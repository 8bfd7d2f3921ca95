"""Learned pair similarity: the paper's transformer + MLP, scikit-learn style."""

import numbers
import os
import tempfile
import time
from contextlib import contextmanager

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._kernels import mirror_mean
from .._knn_torch import check_torch_device
from .._neighbors import knn_graph
from .._progress import progress
from .._validation import N_JOBS_CONSTRAINT
from ..io import _replace_keeping_mode
from ._calibrated import CalibratedCosineSimilarity

_FORMAT = "sklearn_ndde.TransformerSimilarity/1"
_FITTED = (
    "module_",
    "device_",
    "batch_size_",
    "history_",
    "fit_time_",
    "n_features_in_",
    "feature_names_in_",
)
_ARCHITECTURE = ("d_model", "n_heads", "n_layers", "dim_feedforward")


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


def _random_state_entry(random_state, torch):
    """A ``RandomState`` seed as file entries of tensors and numbers (the
    weights-only format holds no Python objects); nothing for an int."""
    if not isinstance(random_state, np.random.RandomState):
        return {}
    name, keys, pos, has_gauss, gauss = random_state.get_state()
    return {
        "random_state_mt19937": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        }
    }


def _random_state_from(entry):
    state = np.random.RandomState()
    state.set_state(
        (
            "MT19937",
            entry["keys"].numpy().astype(np.uint32),
            int(entry["pos"]),
            int(entry["has_gauss"]),
            float(entry["cached_gaussian"]),
        )
    )
    return state


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


class TransformerSimilarity(BaseEstimator):
    """Same-identity probability of kNN pairs, learned from labelled faces.

    The paper's model: an anchor and its ``n_neighbors - 1`` nearest
    neighbours form a sequence (anchor first, neighbours by cosine rank, a
    sinusoidal encoding of the rank added), a transformer encoder refines it
    with attention over the sequence, and an MLP scores each pair
    ``[t_anchor ; t_j]`` (512 -> 256 -> 128 -> 1, sigmoid). It is trained
    with binary cross-entropy on "same identity as the anchor" for every
    position of every anchor. Pass the trained model to
    ``NDDeTPDiClustering(similarity=model)``.

    Parameters
    ----------
    n_neighbors : int, default=80
        Sequence length: the anchor plus ``n_neighbors - 1`` neighbours. Use
        the ``k`` of the clustering.
    tokens : {"cosines", "embedding"}, default="cosines"
        How a face enters the encoder. ``"embedding"``: its unit embedding,
        as in the paper. ``"cosines"``: its cosines to the first
        ``n_neighbors`` faces of the sequence, standardised by the mean and
        standard deviation of the training kNN graph's cosines;
        they describe relations rather than identities, so the model
        transfers to identities it never saw. Trained on the 6,458 faces of
        the LFW train split, ``"embedding"`` memorises the training
        identities (test BCubed F 0.75 on dlib features) where
        ``"cosines"`` generalises (0.95); see ``benchmarks/lfw_learned.py``.
    residual : bool, default=True
        Learn a correction to the training-free similarity rather than a
        similarity from scratch: the MLP's logit is added to the logit of
        :class:`CalibratedCosineSimilarity` fitted on the training kNN graph
        (a fixed curve of the anchor-neighbour cosine, saved with the
        weights), and its last layer starts at zero, so training starts
        from the training-free default. ``False`` is the paper's model. On
        LFW (``benchmarks/lfw_learned.py``) it lifts precision without
        losing recall, where the paper's model trained on 6,458 faces gives
        up recall.
    symmetrize : bool, default=True
        Score a pair from both of its ends: when ``j`` is a neighbour of
        ``i`` and ``i`` one of ``j`` (a mutual pair of a kNN graph, with
        ``Y=None`` in :meth:`pair_similarity`), the pair's logit is the mean
        of the logit read from ``i``'s sequence and the one read from
        ``j``'s. The network reads each pair in the context of one anchor's
        neighbourhood; the two readings are two views of the same pair.
        ``False`` scores each pair from its anchor's sequence alone, as in
        the paper. Cross-fitted on the two halves of the LFW train
        identities (trained on one, clustering the other, 2 seeds, 2 learning
        rate schedules), BCubed F gained 0.0023 on average on mobileface
        features (7 of 8 runs better) and 0.0014 on dlib (3 of 4, none
        worse). It costs no network evaluation, only a search of each
        neighbour's row (O(n k^2) comparisons).
    d_model : int, default=256
        Width of the encoder; an input projection is added when the
        embedding dimension differs.
    n_heads : int, default=8
        Attention heads.
    n_layers : int, default=1
        Encoder layers (post-norm).
    dim_feedforward : int, default=2048
        Hidden width of the encoder's feed-forward block.
    dropout : float, default=0.2
        Dropout of the encoder.
    learning_rate : float, default=1e-3
        Adam learning rate (the peak rate under the ``"cosine"`` schedule).
        The paper's 1e-4 with batches of 512 suits its 576K training faces;
        on a few thousand faces it makes a few hundred small steps and
        learns almost nothing, while 1e-3 with ``batch_size="auto"`` clusters
        LFW's unseen test identities at BCubed F 0.964 (dlib) and 0.895
        (MobileFaceNet) after training on its 6,458 training faces.
    learning_rate_schedule : {"cosine", "constant"}, default="cosine"
        ``"cosine"``: the one-cycle schedule of
        :class:`torch.optim.lr_scheduler.OneCycleLR` over the ``max_epochs``
        planned: the rate rises along half a cosine from
        ``learning_rate / 25`` to ``learning_rate`` over the first 10 % of
        the steps, then falls along half a cosine to
        ``learning_rate / 250000``. The weights settle instead of wandering
        at the last step's rate: at a constant rate of 1e-3, the BCubed F
        of held-out LFW training identities moved by up to 0.034 from one
        epoch to the next.
        ``"constant"``: ``learning_rate`` throughout. The cosine schedule is
        planned over ``max_epochs`` whether or not training stops early.
    weight_decay : float, default=5e-4
        Adam weight decay.
    batch_size : int or "auto", default="auto"
        Anchors per optimisation step. ``"auto"``: one hundredth of the
        training anchors, at least 32 and at most 512 (the paper's), so
        that an epoch makes about 100 steps on small data: 64 for 6,458
        faces. The value used is ``batch_size_``.
    max_epochs : int, default=10
        Passes over the training anchors.
    validation_fraction : float or None, default=None
        Fraction of the identities whose faces are held out (as anchors) to
        stop early when their loss has not improved for
        ``n_iter_no_change`` epochs; the best epoch's weights are kept.
        Identities, not faces, so that the loss measures what the model is
        for: identities it never saw. ``None`` trains for ``max_epochs``.
    n_iter_no_change : int, default=2
        Patience of the early stopping.
    knn_method : {"auto", "exact", "ivf", "pynndescent"}, default="auto"
        Neighbour search of :meth:`fit`, see :func:`~sklearn_ndde.knn_graph`.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU; or any torch
        device string (``"cpu"``, ``"cuda:1"``).
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        Arithmetic of training and inference. ``"bfloat16"`` runs the
        matrix products in bfloat16 under ``torch.autocast`` (weights,
        the loss and the optimiser stay float32); ``"auto"`` does so where the
        hardware has native bfloat16 (CPUs with AVX512-BF16 or AMX, recent
        CUDA GPUs) and uses float32 elsewhere. On 2 cores with AVX512-BF16 it
        halves the training time; see ``benchmarks/lfw_learned.py`` for its
        accuracy.
    n_jobs : int, default=None
        CPU threads of torch during fit and inference (None: torch's
        setting).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout and the validation
        split; on the CPU, equal inputs and seeds give equal weights.
    verbose : int, default=0
        Print one line per epoch to stderr when > 0.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network, on ``device_``.
    device_ : str
        The device used.
    n_features_in_ : int
        Embedding dimension seen in fit.
    batch_size_ : int
        Anchors per optimisation step used in fit (``batch_size`` resolved).
    history_ : list of dict
        Per epoch: ``"epoch"``, ``"train_loss"``, ``"learning_rate"`` (the
        rate of the epoch's last step), ``"valid_loss"`` (or None) and
        ``"seconds"``.
    fit_time_ : float
        Seconds spent in :meth:`fit`.

    Notes
    -----
    Cloning a trained model returns it unchanged (it is frozen, like
    :class:`sklearn.frozen.FrozenEstimator`), so
    ``GridSearchCV(NDDeTPDiClustering(similarity=model), ...)`` tunes the
    clustering without retraining or losing the weights. Pickles hold the
    weights as CPU tensors, so a model trained on a GPU loads on a CPU-only
    machine. :meth:`save` and :meth:`load` use a weights-only file that
    cannot execute code.

    Examples
    --------
    >>> from sklearn_ndde import NDDeTPDiClustering
    >>> from sklearn_ndde.datasets import make_face_embeddings
    >>> from sklearn_ndde.similarity import TransformerSimilarity
    >>> X, y = make_face_embeddings(600, 60, dim=16, random_state=0)
    >>> model = TransformerSimilarity(n_neighbors=10, d_model=32, n_heads=2,
    ...                               dim_feedforward=64, max_epochs=2,
    ...                               random_state=0).fit(X, y)
    >>> labels = NDDeTPDiClustering(k=10, similarity=model).fit_predict(X)
    >>> labels.shape
    (600,)
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(numbers.Integral, 2, None, closed="left")],
        "tokens": [StrOptions({"embedding", "cosines"})],
        "residual": ["boolean"],
        "symmetrize": ["boolean"],
        "d_model": [Interval(numbers.Integral, 2, None, closed="left")],
        "n_heads": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "dim_feedforward": [Interval(numbers.Integral, 1, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"cosine", "constant"})],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [
            Interval(numbers.Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "knn_method": [StrOptions({"auto", "exact", "ivf", "pynndescent"})],
        "device": [str],
        "precision": [StrOptions({"auto", "float32", "bfloat16"})],
        "n_jobs": N_JOBS_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_neighbors=80,
        *,
        tokens="cosines",
        residual=True,
        symmetrize=True,
        d_model=256,
        n_heads=8,
        n_layers=1,
        dim_feedforward=2048,
        dropout=0.2,
        learning_rate=1e-3,
        learning_rate_schedule="cosine",
        weight_decay=5e-4,
        batch_size="auto",
        max_epochs=10,
        validation_fraction=None,
        n_iter_no_change=2,
        knn_method="auto",
        device="auto",
        precision="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_neighbors = n_neighbors
        self.tokens = tokens
        self.residual = residual
        self.symmetrize = symmetrize
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.knn_method = knn_method
        self.device = device
        self.precision = precision
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train on labelled embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Identity of each sample; at least two identities.

        Returns
        -------
        self : object
            The trained model.
        """
        # A failed (or interrupted) fit leaves the model unfitted, never the
        # previous model under the new parameters.
        for name in _FITTED:
            self.__dict__.pop(name, None)
        self._validate_params()
        torch = _import_torch()
        if y is None:
            raise ValueError(
                "TransformerSimilarity.fit needs identity labels y; for clustering "
                "without labels use the training-free CalibratedCosineSimilarity."
            )
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=False)
        n = X.shape[0]
        if n < self.n_neighbors:
            raise ValueError(
                f"TransformerSimilarity needs at least n_neighbors={self.n_neighbors} "
                f"samples to train, got {n}."
            )
        if np.unique(y).size < 2:
            raise ValueError("y holds a single identity; training needs at least two.")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(
                f"d_model={self.d_model} must be even and divisible by "
                f"n_heads={self.n_heads}."
            )
        start = time.perf_counter()
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        self.device_ = self._resolve_device(torch)
        indices, cosines = knn_graph(
            X,
            self.n_neighbors,
            method=self.knn_method,
            random_state=seed,
            device=self.device_,
        )
        others = cosines[:, 1:] if cosines.shape[1] > 1 else cosines
        cosine_scale = [float(others.mean()), max(float(others.std()), 1e-6)]
        targets = (y[indices] == y[:, None]).astype(np.float32)
        if self.residual:
            calibration = CalibratedCosineSimilarity().fit_neighbors(indices, cosines)
            curve = np.clip(calibration.curve_, 1e-4, 1 - 1e-4)
            grid, curve = calibration.grid_, np.log(curve / (1 - curve))

        # Held-out identities, not anchors: the model is meant for identities
        # it never saw, and anchors of a training identity would flatter it.
        valid = np.array([], dtype=np.int64)
        if self.validation_fraction is not None:
            identities = rng.permutation(np.unique(y))
            n_held = int(round(self.validation_fraction * identities.size))
            if not 1 <= n_held < identities.size:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} holds out "
                    f"{n_held} of {identities.size} identities; it must leave at "
                    "least one for validation and one for training."
                )
            valid = np.flatnonzero(np.isin(y, identities[:n_held]))
        train = rng.permutation(np.setdiff1d(np.arange(n), valid))
        n_valid = valid.size
        batch_size = self.batch_size
        if batch_size == "auto":
            batch_size = int(np.clip(train.size // 100, 32, 512))
        self.batch_size_ = batch_size

        with _torch_session(torch, seed, self.n_jobs):
            module = self._new_module(X.shape[1])
            module.cosine_scale.copy_(torch.tensor(cosine_scale))
            if self.residual:
                module.calibration_grid.copy_(torch.from_numpy(grid))
                module.calibration_logit.copy_(torch.from_numpy(curve))
            module = module.to(self.device_)
            optimizer = torch.optim.Adam(
                module.parameters(),
                lr=self.learning_rate,
                weight_decay=self.weight_decay,
            )
            scheduler = None
            total_steps = self.max_epochs * -(-train.size // batch_size)
            # OneCycleLR divides by the length of each phase: the warm-up
            # needs two steps at least, and a run of under 4 steps keeps the
            # rate constant.
            if self.learning_rate_schedule == "cosine" and total_steps >= 4:
                scheduler = torch.optim.lr_scheduler.OneCycleLR(
                    optimizer,
                    max_lr=self.learning_rate,
                    total_steps=total_steps,
                    pct_start=max(0.1, 2.0 / total_steps),
                    anneal_strategy="cos",
                    cycle_momentum=False,
                )
            loss_fn = torch.nn.BCEWithLogitsLoss()
            features = torch.from_numpy(X).to(self.device_)
            idx_t = torch.from_numpy(indices.astype(np.int64)).to(self.device_)
            tgt_t = torch.from_numpy(targets).to(self.device_)
            generator = torch.Generator().manual_seed(seed)
            self.history_ = []
            best, best_state, stale = np.inf, None, 0
            bar = progress(
                "TransformerSimilarity",
                self.max_epochs,
                self.verbose,
                "epoch",
                leave=True,
                lines=True,
            )
            for epoch in range(self.max_epochs):
                t0 = time.perf_counter()
                module.train()
                order = torch.from_numpy(train)[
                    torch.randperm(train.size, generator=generator)
                ]
                total = 0.0
                for b in range(0, order.numel(), batch_size):
                    batch = order[b : b + batch_size].to(self.device_)
                    with self._autocast(torch):
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
                    record["valid_loss"] = self._loss(
                        torch, module, features, idx_t, tgt_t, valid, loss_fn
                    )
                record["seconds"] = time.perf_counter() - t0
                self.history_.append(record)
                bar.set_postfix(
                    train_loss=f"{record['train_loss']:.4f}",
                    **(
                        {"valid_loss": f"{record['valid_loss']:.4f}"} if n_valid else {}
                    ),
                )
                bar.update(1)
                if n_valid:
                    if record["valid_loss"] < best:
                        best, stale = record["valid_loss"], 0
                        best_state = {
                            k: v.detach().clone()
                            for k, v in module.state_dict().items()
                        }
                    else:
                        stale += 1
                        if stale >= self.n_iter_no_change:
                            break
            bar.close()
            if best_state is not None:
                module.load_state_dict(best_state)
            module.eval()
        self.module_ = module
        self.fit_time_ = time.perf_counter() - start
        return self

    def _autocast(self, torch):
        """``torch.autocast`` to bfloat16 when ``precision`` asks for it."""
        device_type = "cuda" if str(self.device_).startswith("cuda") else "cpu"
        use = self.precision == "bfloat16"
        if self.precision == "auto":
            try:
                if device_type == "cuda":
                    use = torch.cuda.is_bf16_supported()
                else:
                    use = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
            except (AttributeError, RuntimeError):
                use = False
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use)

    def _resolve_device(self, torch, fallback=False):
        """The device to use; with ``fallback``, the CPU when CUDA is absent."""
        cuda = torch.cuda.is_available()
        if self.device == "auto":
            return "cuda" if cuda else "cpu"
        try:
            kind = torch.device(self.device).type
        except (RuntimeError, TypeError):
            kind = None  # check_torch_device names the bad string
        if fallback and kind == "cuda" and not cuda:
            # A model saved on a GPU loads on a CPU-only machine.
            return "cpu"
        return check_torch_device(torch, self.device)

    def _loss(self, torch, module, features, idx_t, tgt_t, anchors, loss_fn):
        module.eval()
        total = 0.0
        with torch.inference_mode():
            for b in range(0, anchors.size, 1024):
                batch = torch.from_numpy(anchors[b : b + 1024]).to(features.device)
                with self._autocast(torch):
                    logits = module(features[idx_t[batch]])
                total += float(loss_fn(logits.float(), tgt_t[batch])) * batch.numel()
        return total / anchors.size

    def pair_similarity(self, X, indices, Y=None):
        """Probability that ``X[i]`` and ``Y[indices[i, c]]`` share an identity.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Anchors.
        indices : array-like of shape (n_samples, n_neighbors)
            Neighbours of each anchor, rows of ``Y``, by decreasing cosine.
            With ``Y=None`` the anchor itself must be in column 0, as
            :func:`~sklearn_ndde.knn_graph` returns it.
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Neighbours' embeddings; ``X`` when None. When given, each
            anchor is put in front of its neighbours.

        Returns
        -------
        similarities : ndarray of shape (n_samples, n_neighbors), float32
            In [0, 1]. With ``symmetrize=True`` and ``Y=None``, a pair listed
            from both ends gets the mean of its two logits.
        """
        check_is_fitted(self, "module_")
        torch = _import_torch()
        X = validate_data(self, X, dtype=np.float32, reset=False)
        indices = np.asarray(indices)
        if indices.ndim != 2 or indices.shape[0] != X.shape[0]:
            raise ValueError(
                f"indices must have shape (n_samples={X.shape[0]}, n_neighbors), got "
                f"{indices.shape}."
            )
        # The sequence is the anchor and its neighbours: with Y given, the
        # anchor is put in front of the columns of indices.
        length = indices.shape[1] + (Y is not None)
        if self.tokens == "cosines" and length < self.n_neighbors:
            raise ValueError(
                f"This model reads the cosines of {self.n_neighbors} neighbours per "
                f"face (n_neighbors={self.n_neighbors}, the face itself included), "
                f"but {length} were given: cluster with k >= {self.n_neighbors}."
            )
        if Y is None:
            Y_arr = X
            if indices.size and not np.array_equal(indices[:, 0], np.arange(len(X))):
                raise ValueError(
                    "With Y=None, column 0 of indices must be each anchor itself."
                )
        else:
            Y_arr = validate_data(self, Y, dtype=np.float32, reset=False)
        if indices.size and (indices.min() < 0 or indices.max() >= len(Y_arr)):
            raise ValueError(f"indices must lie in [0, {len(Y_arr) - 1}].")
        device = next(self.module_.parameters()).device
        out = np.empty(indices.shape, dtype=np.float32)
        feats = torch.from_numpy(np.ascontiguousarray(Y_arr)).to(device)
        anchors = torch.from_numpy(np.ascontiguousarray(X)).to(device)
        idx_t = torch.from_numpy(indices.astype(np.int64))
        self.module_.eval()
        with _torch_session(torch, 0, self.n_jobs), torch.inference_mode():
            for b in range(0, len(X), 1024):
                rows = slice(b, b + 1024)
                seq = feats[idx_t[rows].to(device)]
                if Y is not None:
                    seq = torch.cat([anchors[rows, None, :], seq], dim=1)
                with self._autocast(torch):
                    logits = self.module_(seq)
                logits = logits.float()
                if Y is not None:
                    logits = logits[:, 1:]
                out[rows] = logits.cpu().numpy()
        if self.symmetrize and Y is None:
            out = mirror_mean(out, np.ascontiguousarray(indices, dtype=np.int64))
        return expit(out)

    # -- persistence -------------------------------------------------------

    def __sklearn_clone__(self):
        if hasattr(self, "module_"):
            return self
        return super().__sklearn_clone__()

    def __getstate__(self):
        # A copy: object.__getstate__ returns the instance's own __dict__.
        state = dict(super().__getstate__())
        module = state.pop("module_", None)
        if module is not None:
            state["_cpu_weights"] = {
                k: v.detach().cpu() for k, v in module.state_dict().items()
            }
        return state

    def __setstate__(self, state):
        weights = state.pop("_cpu_weights", None)
        super().__setstate__(state)
        if weights is not None:
            torch = _import_torch()
            self.device_ = self._resolve_device(torch, fallback=True)
            self.module_ = self._build(torch, weights)

    def _new_module(self, n_features):
        from ._torch_model import PairScorer

        return PairScorer(
            n_features,
            self.d_model,
            self.n_heads,
            self.n_layers,
            self.dim_feedforward,
            self.dropout,
            profile=None if self.tokens == "embedding" else self.n_neighbors,
            residual=self.residual,
        )

    def _build(self, torch, weights):
        module = self._new_module(self.n_features_in_)
        module.load_state_dict(weights)
        return module.to(self.device_).eval()

    def save(self, path):
        """Write the trained model to ``path`` as a weights-only torch file.

        The file holds tensors, numbers and strings only, and is written to a
        temporary file first and then renamed, so an interrupted save never
        leaves a half-written model behind.
        """
        check_is_fitted(self, "module_")
        torch = _import_torch()
        params = {
            k: v
            for k, v in self.get_params().items()
            if isinstance(v, (int, float, str, type(None)))
        }
        payload = {
            "format": _FORMAT,
            "params": params,
            **_random_state_entry(self.random_state, torch),
            "n_features_in": int(self.n_features_in_),
            "weights": {
                k: v.detach().cpu() for k, v in self.module_.state_dict().items()
            },
        }
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Cannot write {path!r}: the folder {folder!r} does not exist."
            )
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            _replace_keeping_mode(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def load(cls, path, *, device="auto"):
        """Read a model written by :meth:`save`; never executes code from it.

        Parameters
        ----------
        path : str or path-like
            The file.
        device : str, default="auto"
            Where to put the network.

        Returns
        -------
        model : TransformerSimilarity
            The trained model.
        """
        torch = _import_torch()
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No model file at {path!r}.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"{path!r} is not a readable TransformerSimilarity file (corrupt, or "
                f"not weights-only): {type(exc).__name__}: {str(exc)[:200]}"
            ) from exc
        model = cls._from_payload(torch, payload, path, device)
        # The device asked for here, not the one the model was trained on:
        # "auto" takes a GPU when there is one, "cuda" without one is refused.
        model.device_ = model._resolve_device(torch)
        model.module_ = model._build(torch, payload["weights"])
        return model

    @classmethod
    def _from_payload(cls, torch, payload, path, device):
        """The unfitted model a file describes, every field checked first.

        A file is untrusted input: its parameters are validated one by one,
        and the architecture they describe is built on torch's ``meta``
        device (no memory) and compared with the weights the file carries,
        shape by shape, before anything real is allocated. So a file of a
        few kilobytes cannot ask for gigabytes.
        """
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path!r} is not a TransformerSimilarity file.")
        missing = [
            k for k in ("params", "n_features_in", "weights") if k not in payload
        ]
        if missing:
            raise ValueError(
                f"{path!r} is an incomplete TransformerSimilarity file: it has no "
                f"{', '.join(repr(k) for k in missing)}."
            )
        params, weights = payload["params"], payload["weights"]
        if not isinstance(params, dict) or not isinstance(weights, dict):
            raise ValueError(f"{path!r}: 'params' and 'weights' must be mappings.")
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise ValueError(f"{path!r} holds unknown parameter(s) {unknown}.")
        if not all(isinstance(w, torch.Tensor) for w in weights.values()):
            raise ValueError(f"{path!r}: every weight must be a tensor.")
        n_features = payload["n_features_in"]
        if isinstance(n_features, bool) or not isinstance(n_features, int):
            raise ValueError(f"{path!r}: 'n_features_in' must be an integer.")
        if n_features < 1:
            raise ValueError(f"{path!r}: 'n_features_in' must be at least 1.")
        # Files written before `residual` existed hold the paper's model;
        # those written before `symmetrize` scored pairs from one end; those
        # written before `learning_rate_schedule` were trained at a constant
        # rate.
        params = {
            "residual": False,
            "symmetrize": False,
            "learning_rate_schedule": "constant",
            **params,
            "device": device,
        }
        model = cls(**params)
        try:
            model._validate_params()
        except ValueError as exc:
            raise ValueError(f"{path!r} holds an invalid parameter: {exc}") from None
        # Each encoder layer carries several tensors: more layers than
        # tensors cannot match, and is refused before building anything.
        if model.n_layers > len(weights):
            raise ValueError(
                f"The weights in {path!r} do not match the architecture its "
                f"parameters describe: n_layers={model.n_layers} but only "
                f"{len(weights)} tensors."
            )
        with torch.device("meta"):
            skeleton = model._new_module(n_features).state_dict()
        expected = {k: tuple(v.shape) for k, v in skeleton.items()}
        found = {k: tuple(v.shape) for k, v in weights.items()}
        if expected != found:
            key = sorted(set(expected) ^ set(found)) or [
                k for k in expected if expected[k] != found[k]
            ]
            key = key[0]
            raise ValueError(
                f"The weights in {path!r} do not match the architecture its "
                f"parameters describe: {key!r} is {found.get(key, 'missing')} in "
                f"the file, {expected.get(key, 'not expected')} in the model."
            )
        broken = [
            name
            for name, w in weights.items()
            if w.is_floating_point() and not bool(torch.isfinite(w).all())
        ]
        if broken:
            raise ValueError(
                f"The weights in {path!r} hold NaN or infinite values (first in "
                f"{broken[0]!r}): the model cannot score pairs."
            )
        if "random_state_mt19937" in payload:
            try:
                model.random_state = _random_state_from(payload["random_state_mt19937"])
            except (TypeError, ValueError, KeyError, AttributeError):
                raise ValueError(f"{path!r} holds an invalid random_state.") from None
        model.n_features_in_ = n_features
        return model
