"""Learned pair similarity: the paper's transformer + MLP, scikit-learn style."""

import numbers
import os
import time

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._kernels import mirror_mean
from .._knn_torch import check_torch_device
from .._neighbors import knn_graph
from .._validation import N_JOBS_CONSTRAINT
from ._model_file import model_from_payload, save_model
from ._training import _import_torch, check_training_data, score, train_network

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
        check_training_data(self, X, y)
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
        self.module_ = train_network(self, torch, X, y, indices, cosines, rng, seed)
        self.fit_time_ = time.perf_counter() - start
        return self

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
        out = score(self, torch, X, Y, Y_arr, indices)
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
        save_model(self, torch, path)

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
        return model_from_payload(cls, torch, payload, path, device)
