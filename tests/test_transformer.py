"""TransformerSimilarity: training, determinism, persistence, plugging in."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_scorer

torch = pytest.importorskip("torch")
from sklearn_ndde.similarity import (  # noqa: E402
    CalibratedCosineSimilarity,
    TransformerSimilarity,
)

SMALL = dict(n_neighbors=10, d_model=32, n_heads=4, dim_feedforward=64, batch_size=64)


@pytest.fixture(scope="module")
def data():
    return make_face_embeddings(800, 200, dim=16, spread=(0.3, 0.8), random_state=0)


@pytest.fixture(scope="module")
def model(data):
    X, y = data
    return TransformerSimilarity(
        **SMALL, learning_rate=3e-3, max_epochs=8, random_state=0
    ).fit(X, y)


def test_training_learns_same_identity(data, model):
    X, y = data
    indices, _ = knn_graph(X, 10)
    s = model.pair_similarity(X, indices)
    same = y[indices] == y[:, None]
    assert s.shape == indices.shape and s.dtype == np.float32
    assert np.all((s >= 0) & (s <= 1))
    assert s[same].mean() > s[~same].mean() + 0.3
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]


def test_same_seed_same_weights_on_cpu(data):
    X, y = data
    a = TransformerSimilarity(**SMALL, max_epochs=1, random_state=3).fit(X, y)
    b = TransformerSimilarity(**SMALL, max_epochs=1, random_state=3).fit(X, y)
    for (ka, va), (kb, vb) in zip(
        a.module_.state_dict().items(), b.module_.state_dict().items()
    ):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_precision_is_deterministic_and_acts(data, precision):
    X, y = data
    params = dict(**SMALL, max_epochs=1, random_state=3, precision=precision)
    a = TransformerSimilarity(**params).fit(X, y)
    b = TransformerSimilarity(**params).fit(X, y)
    other = "bfloat16" if precision == "float32" else "float32"
    c = TransformerSimilarity(**{**params, "precision": other}).fit(X, y)
    wa, wb, wc = (m.module_.state_dict() for m in (a, b, c))
    assert all(torch.equal(wa[key], wb[key]) for key in wa)
    assert all(v.dtype == torch.float32 for v in wa.values() if v.is_floating_point())
    assert not all(torch.equal(wa[key], wc[key]) for key in wa)
    indices, _ = knn_graph(X, 10)
    s = a.pair_similarity(X, indices)
    assert s.dtype == np.float32 and np.all((s >= 0) & (s <= 1))


def test_fit_leaves_global_torch_state_alone(data):
    X, y = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    TransformerSimilarity(**SMALL, max_epochs=1, random_state=0, n_jobs=1).fit(X, y)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_early_stopping_keeps_history(data):
    X, y = data
    m = TransformerSimilarity(
        **SMALL,
        max_epochs=30,
        validation_fraction=0.2,
        n_iter_no_change=1,
        learning_rate=1e-2,
        random_state=0,
    ).fit(X, y)
    assert all(r["valid_loss"] is not None for r in m.history_)
    assert len(m.history_) <= 30


def test_learning_rate_schedules(data):
    X, y = data
    params = dict(**SMALL, learning_rate=1e-2, max_epochs=5, random_state=0)
    cosine = TransformerSimilarity(**params).fit(X, y)
    rates = [r["learning_rate"] for r in cosine.history_]
    # Warm-up over the first 10 % of the steps (half of epoch 1) to the peak,
    # then a decay to learning_rate / 250000 at the last step.
    assert 0.9e-2 < rates[0] <= 1e-2
    assert rates[0] > rates[1] > rates[2] > rates[3] > rates[4]
    assert rates[-1] == pytest.approx(1e-2 / 250000, rel=0.01)
    constant = TransformerSimilarity(**params, learning_rate_schedule="constant").fit(
        X, y
    )
    assert [r["learning_rate"] for r in constant.history_] == [1e-2] * 5
    wc, wk = cosine.module_.state_dict(), constant.module_.state_dict()
    assert not all(torch.equal(wc[key], wk[key]) for key in wc)


def test_queries_against_reference_set(data, model):
    X, y = data
    Xq = X[:5] + 0.01
    idx = np.tile(np.arange(10), (5, 1))
    s = model.pair_similarity(Xq, idx, Y=X)
    assert s.shape == (5, 10)


def test_plugging_in_never_retrains_or_mutates(data, model):
    X, y = data
    before = {k: v.clone() for k, v in model.module_.state_dict().items()}
    est = NDDeTPDiClustering(k=10, similarity=model).fit(X)
    assert est.similarity_ is model
    assert clone(model) is model and clone(est).similarity is model
    search = GridSearchCV(
        NDDeTPDiClustering(k=10, similarity=model),
        {"tau": [0.3, 0.7]},
        scoring=bcubed_scorer,
        cv=[(np.arange(len(X)), np.arange(len(X)))],
    ).fit(X, y)
    assert search.best_estimator_.similarity is model
    for k, v in model.module_.state_dict().items():
        assert torch.equal(v, before[k])
    assert len(model.history_) == 8


def test_pickle_and_save_load_round_trip(tmp_path, data, model):
    X, _ = data
    indices, _ = knn_graph(X[:50], 10)
    expected = model.pair_similarity(X[:50], indices)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(
        copy.pair_similarity(X[:50], indices), expected, atol=1e-6
    )
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = TransformerSimilarity.load(path)
    np.testing.assert_allclose(
        loaded.pair_similarity(X[:50], indices), expected, atol=1e-6
    )
    assert loaded.get_params()["d_model"] == 32
    assert not list(tmp_path.glob(".tmp-*"))


def test_load_rejects_bad_files(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="No model file"):
        TransformerSimilarity.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable"):
        TransformerSimilarity.load(corrupt)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "x", "payload": Evil()}, evil)
    with pytest.raises(ValueError, match="not a readable"):
        TransformerSimilarity.load(evil)
    assert not marker.exists()  # the payload never ran
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(ValueError, match="not a TransformerSimilarity file"):
        TransformerSimilarity.load(other)
    mismatched = tmp_path / "mismatched.pt"
    model.save(mismatched)
    payload = torch.load(mismatched, weights_only=True)
    payload["params"]["d_model"] = 64
    torch.save(payload, mismatched)
    with pytest.raises(ValueError, match="do not match"):
        TransformerSimilarity.load(mismatched)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.ones((20, 4)), None, "needs identity labels"),
        (np.random.default_rng(0).random((20, 4)), np.zeros(19), "inconsistent"),
        (np.random.default_rng(0).random((20, 4)), np.zeros(20), "single identity"),
        (np.full((20, 4), np.nan), np.arange(20) % 2, "NaN"),
        (np.random.default_rng(0).random((5, 4)), np.arange(5) % 2, "at least"),
    ],
)
def test_fit_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        TransformerSimilarity(**SMALL, max_epochs=1).fit(X, y)


def test_inference_errors(data, model):
    X, _ = data
    with pytest.raises(NotFittedError):
        TransformerSimilarity().pair_similarity(X, np.zeros((len(X), 3), int))
    with pytest.raises(ValueError, match="16 features"):
        model.pair_similarity(np.ones((3, 8)), np.zeros((3, 10), int))


def test_residual_model_starts_at_the_training_free_similarity(data):
    """residual=True: before any learning, the model is the calibrated
    cosine of the training graph (its logit plus an MLP that starts at 0)."""
    X, y = data
    m = TransformerSimilarity(**SMALL, learning_rate=1e-12, max_epochs=1)
    m.fit(X, y)
    indices, cosines = knn_graph(X, 10)
    calibration = CalibratedCosineSimilarity().fit_neighbors(indices, cosines)
    expected = np.clip(calibration.calibrate(cosines), 1e-4, 1 - 1e-4)
    s = m.pair_similarity(X, indices)
    # Interpolated in logit space rather than in probability: equal at the
    # grid points, a little apart where the curve turns fast.
    np.testing.assert_allclose(s, expected, atol=0.01)
    assert np.mean(np.abs(s - expected) < 1e-4) > 0.99
    # The paper's model starts anywhere.
    paper = TransformerSimilarity(**SMALL, residual=False, learning_rate=1e-12)
    s = paper.set_params(max_epochs=1).fit(X, y).pair_similarity(X, indices)
    assert np.abs(s - expected).max() > 0.1


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("tokens", ["embedding", "cosines"])
def test_both_token_kinds_train_and_round_trip(tmp_path, data, tokens, residual):
    X, y = data
    m = TransformerSimilarity(
        **SMALL, tokens=tokens, residual=residual, max_epochs=1, random_state=0
    )
    m.fit(X, y)
    indices, _ = knn_graph(X[:40], 10)
    path = tmp_path / "m.pt"
    m.save(path)
    np.testing.assert_allclose(
        TransformerSimilarity.load(path).pair_similarity(X[:40], indices),
        m.pair_similarity(X[:40], indices),
        atol=1e-6,
    )


def test_files_from_before_residual_load_as_the_papers_model(tmp_path, data):
    X, y = data
    m = TransformerSimilarity(**SMALL, residual=False, max_epochs=1, random_state=0)
    m.fit(X, y)
    path = tmp_path / "old.pt"
    m.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["params"]["residual"]
    torch.save(payload, path)
    loaded = TransformerSimilarity.load(path)
    assert loaded.residual is False
    indices, _ = knn_graph(X[:40], 10)
    np.testing.assert_allclose(
        loaded.pair_similarity(X[:40], indices),
        m.pair_similarity(X[:40], indices),
        atol=1e-6,
    )


def test_symmetrize_scores_a_mutual_pair_once_from_both_ends(data, model):
    X, _ = data
    indices, _ = knn_graph(X, 10)
    model.set_params(symmetrize=False)
    try:
        single = model.pair_similarity(X, indices)
    finally:
        model.set_params(symmetrize=True)
    both = model.pair_similarity(X, indices)
    logit = np.log(single / (1 - single))
    mutual = 0
    for i in range(0, len(X), 7):
        for c, j in enumerate(indices[i]):
            back = np.flatnonzero(indices[j] == i)
            if back.size:
                mutual += 1
                assert both[i, c] == pytest.approx(both[j, back[0]], abs=1e-6)
                mean = (logit[i, c] + logit[j, back[0]]) / 2
                assert both[i, c] == pytest.approx(1 / (1 + np.exp(-mean)), abs=1e-5)
            else:
                assert both[i, c] == single[i, c]
    assert mutual > 100
    # Anchors outside the graph (predict): each pair is read from its anchor.
    Xq = X[:30] + 0.01
    rows = np.argsort(-(Xq @ X.T), axis=1)[:, :10]
    model.set_params(symmetrize=False)
    try:
        single = model.pair_similarity(Xq, rows, Y=X)
    finally:
        model.set_params(symmetrize=True)
    np.testing.assert_array_equal(model.pair_similarity(Xq, rows, Y=X), single)


def test_files_from_before_symmetrize_score_from_one_end(tmp_path, model):
    path = tmp_path / "old.pt"
    model.save(path)
    assert TransformerSimilarity.load(path).symmetrize is True
    payload = torch.load(path, weights_only=True)
    del payload["params"]["symmetrize"]
    del payload["params"]["learning_rate_schedule"]
    torch.save(payload, path)
    old = TransformerSimilarity.load(path)
    assert old.symmetrize is False
    # Such files were trained at a constant rate; get_params says so.
    assert old.learning_rate_schedule == "constant"


def test_interrupted_save_keeps_the_old_file(tmp_path, model, monkeypatch):
    path = tmp_path / "m.pt"
    model.save(path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_verbose_training_shows_a_progress_bar_on_stderr(data, capsys):
    X, y = data
    TransformerSimilarity(**SMALL, max_epochs=2, random_state=0, verbose=1).fit(
        X[:200], y[:200]
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "TransformerSimilarity" in captured.err and "2/2" in captured.err


def _crafted(model, tmp_path, name, **changes):
    """``model``'s file with its payload edited as an attacker would."""
    path = tmp_path / "model.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if key in payload["params"]:
            payload["params"][key] = value
        elif value is None:
            del payload[key]
        else:
            payload[key] = value
    crafted = tmp_path / name
    torch.save(payload, crafted)
    return crafted


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"dim_feedforward": 30_000_000}, "do not match the architecture"),
        ({"n_layers": 20_000}, "n_layers=20000 but only"),
        ({"d_model": -3}, "invalid parameter.*d_model"),
        ({"n_features_in": None}, "no 'n_features_in'"),
        ({"params": None}, "no 'params'"),
        ({"n_features_in": "16"}, "must be an integer"),
    ],
)
def test_load_validates_the_file_before_building(model, tmp_path, changes, match):
    crafted = _crafted(model, tmp_path, "crafted.pt", **changes)
    with pytest.raises(ValueError, match=match):
        TransformerSimilarity.load(crafted)


def test_load_of_a_crafted_file_stays_small_in_memory(model, tmp_path):
    # A file of a few KB whose parameters ask for an 8 GB feed-forward block:
    # refused before allocating (measured in a fresh process: peak RSS).
    small = TransformerSimilarity(
        n_neighbors=10,
        d_model=8,
        n_heads=2,
        dim_feedforward=8,
        max_epochs=1,
        random_state=0,
    ).fit(*make_face_embeddings(60, 10, dim=4, random_state=0))
    path = tmp_path / "small.pt"
    small.save(path)
    payload = torch.load(path, weights_only=True)
    payload["params"]["dim_feedforward"] = 30_000_000
    # Only the small tensors, to make the file small: the attack is the
    # parameters, not the weights.
    payload["weights"] = {
        k: w for k, w in payload["weights"].items() if w.numel() <= 64
    }
    crafted = tmp_path / "bomb.pt"
    torch.save(payload, crafted)
    assert crafted.stat().st_size < 10_000
    code = (
        "import resource, sys\n"
        "from sklearn_ndde.similarity import TransformerSimilarity\n"
        "import torch\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    TransformerSimilarity.load({str(crafted)!r})\n"
        "except ValueError as exc:\n"
        "    print('refused', exc, file=sys.stderr)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) / 1024)\n"
    )
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "refused" in proc.stderr
    assert float(proc.stdout.strip()) < 100  # MB of peak growth


@pytest.mark.parametrize("device", ["mps", "xpu", "meta"])
def test_load_and_fit_name_an_unusable_device(model, data, tmp_path, device):
    path = tmp_path / "m.pt"
    model.save(path)
    with pytest.raises(ValueError, match=f"device='{device}' is not supported"):
        TransformerSimilarity.load(path, device=device)
    with pytest.raises(ValueError, match=f"device='{device}' is not supported"):
        TransformerSimilarity(**SMALL, device=device, max_epochs=1).fit(*data)


def test_a_model_wider_than_the_clustering_k_is_a_clear_error(model, data):
    X, _ = data
    with pytest.raises(ValueError, match=f"cluster with k >= {model.n_neighbors}"):
        NDDeTPDiClustering(k=model.n_neighbors - 1, similarity=model).fit(X)


def test_one_short_epoch_trains_with_the_cosine_schedule(data):
    # OneCycleLR divided by zero when the warm-up was under two steps.
    X, y = data
    small = TransformerSimilarity(**{**SMALL, "batch_size": len(X) // 3}, max_epochs=1)
    assert len(small.fit(X, y).history_) == 1


def test_a_failed_refit_leaves_the_model_unfitted(data):
    X, y = data
    # A model of its own: clone() of a fitted model is the model itself
    # (a fitted similarity is kept as it is by the estimator's clone).
    refit = TransformerSimilarity(**SMALL, max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="at least n_neighbors"):
        refit.fit(X[:5], y[:5])
    with pytest.raises(NotFittedError):
        refit.pair_similarity(X, knn_graph(X, 10)[0])


def test_a_random_state_instance_survives_save_and_load(data, tmp_path):
    X, y = data
    seed = np.random.RandomState(7)
    fitted = TransformerSimilarity(**SMALL, max_epochs=1, random_state=seed).fit(X, y)
    fitted.save(tmp_path / "m.pt")
    loaded = TransformerSimilarity.load(tmp_path / "m.pt")
    assert isinstance(loaded.random_state, np.random.RandomState)
    saved, restored = seed.get_state(), loaded.random_state.get_state()
    np.testing.assert_array_equal(restored[1], saved[1])
    assert restored[2:] == saved[2:]


def test_load_refuses_nan_weights(model, tmp_path):
    path = tmp_path / "m.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    first = sorted(payload["weights"])[0]
    payload["weights"][first] = payload["weights"][first].clone().fill_(np.nan)
    torch.save(payload, path)
    with pytest.raises(ValueError, match="NaN or infinite values"):
        TransformerSimilarity.load(path)


def test_load_on_cuda_without_a_gpu_is_refused(model, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    path = tmp_path / "m.pt"
    model.save(path)
    with pytest.raises(ValueError, match="cuda"):
        TransformerSimilarity.load(path, device="cuda")
    assert TransformerSimilarity.load(path).device_ == "cpu"


def test_save_into_a_missing_folder_names_the_folder(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*nodir.* does not exist"):
        model.save(tmp_path / "nodir" / "m.pt")
