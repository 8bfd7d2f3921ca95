"""Hostile inputs, determinism and guards of the estimator.

Every test here is a row of the bad-input table in ``docs/bad_input.md``.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

from sklearn_ndde import NDDeTPDiClustering, _memory
from sklearn_ndde import _numpy_stages as pipeline_module
from sklearn_ndde.__main__ import main
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.io import load_features, save_labels
from sklearn_ndde.metrics import bcubed_fscore

K = 10
X, Y = make_face_embeddings(240, 24, dim=16, spread=(0.4, 1.0), random_state=0)
REFERENCE = NDDeTPDiClustering(k=K).fit_predict(X)


def same_partition(a, b):
    """True when ``a`` and ``b`` group the samples alike, whatever the ids."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == np.unique(a).size == np.unique(b).size


def assert_valid_partition(labels, n):
    labels = np.asarray(labels)
    assert labels.shape == (n,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))


# ------------------------------------------------ inputs that must just work


@pytest.mark.parametrize(
    "variant",
    [
        "float32",
        "fortran_order",
        "strided_view",
        "scaled_1e30",
        "scaled_1e-300_subnormal",
        "dataframe",
    ],
)
def test_equivalent_inputs_give_identical_labels(variant):
    if variant == "float32":
        data = X.astype(np.float32)
    elif variant == "fortran_order":
        data = np.asfortranarray(X)
    elif variant == "strided_view":
        data = np.repeat(X, 2, axis=1)[::1, ::2]
        assert not data.flags.c_contiguous
    elif variant == "scaled_1e30":
        data = X.astype(np.float64) * 1e30
    elif variant == "scaled_1e-300_subnormal":
        data = X.astype(np.float64) * 1e-310  # float64 subnormals
        assert np.abs(data).max() < np.finfo(np.float64).tiny
    else:
        pd = pytest.importorskip("pandas")
        data = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    labels = NDDeTPDiClustering(k=K).fit_predict(data)
    assert same_partition(labels, REFERENCE)


@pytest.mark.parametrize(
    "variant", ["float16", "int_rounded", "float32_subnormal", "float32_1e30"]
)
def test_lossy_inputs_keep_the_clustering(variant):
    if variant == "float16":
        data = X.astype(np.float16)
    elif variant == "int_rounded":
        data = np.round(X * 1000).astype(np.int64)
    elif variant == "float32_subnormal":
        data = (X * 2.0**-140).astype(np.float32)  # 8-10 significant bits left
    else:
        data = (X * 1e30).astype(np.float32)
    labels = NDDeTPDiClustering(k=K).fit_predict(data)
    assert_valid_partition(labels, len(X))
    assert bcubed_fscore(REFERENCE, labels) > 0.95


def test_dataframe_feature_names_are_checked_at_predict():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = NDDeTPDiClustering(k=K).fit(frame)
    assert list(est.feature_names_in_) == list(frame.columns)
    assert np.array_equal(est.predict(frame.iloc[:5]), est.labels_[:5])
    with pytest.raises(ValueError, match="feature names"):
        est.predict(frame.iloc[:5].rename(columns={"f0": "other"}))


def test_many_exact_duplicates_share_one_cluster():
    # 3 * K copies of one face: more duplicates than neighbours.
    data = np.vstack([X, np.repeat(X[:1], 3 * K, axis=0)])
    labels = NDDeTPDiClustering(k=K).fit_predict(data)
    assert np.unique(labels[[0, *range(len(X), len(data))]]).size == 1
    assert bcubed_fscore(REFERENCE, labels[: len(X)]) > 0.95


@pytest.mark.parametrize("k", [30, 80])
@pytest.mark.parametrize("share", [0.05, 0.5, 1.0])
def test_exact_copies_change_nothing_else(k, share):
    # Photo libraries are full of copies: each joins its original and the
    # rest of the partition is exactly the same (issue: 1,972 clusters and
    # BCubed F 0.19 when every row was doubled).
    data, _ = make_face_embeddings(2000, 200, dim=64, spread=(0.4, 1.0), random_state=0)
    copied = np.random.default_rng(0).choice(len(data), int(share * len(data)), False)
    alone = NDDeTPDiClustering(k=k).fit(data)
    doubled = NDDeTPDiClustering(k=k).fit(np.vstack([data, data[copied]]))
    labels = doubled.labels_
    # The same partition, numbered the same (by each cluster's first sample).
    np.testing.assert_array_equal(labels[: len(data)], alone.labels_)
    np.testing.assert_array_equal(labels[len(data) :], labels[copied])
    np.testing.assert_array_equal(doubled.parents_[len(data) :], copied)
    np.testing.assert_array_equal(doubled.density_[len(data) :], alone.density_[copied])
    # predict sees each training face once, so a copy changes no new label.
    queries = data[:50] + 0.01
    np.testing.assert_array_equal(doubled.predict(queries), alone.predict(queries))


def test_constant_data_is_one_cluster():
    labels = NDDeTPDiClustering(k=K).fit_predict(np.ones((50, 4)))
    assert np.all(labels == 0)


@pytest.mark.parametrize("n, k", [(2, 2), (2, 80), (3, 2), (5, K)])
def test_tiny_inputs(n, k):
    data = X[:n]
    if k > n:
        with pytest.warns(UserWarning, match=f"k={k} is larger"):
            labels = NDDeTPDiClustering(k=k).fit_predict(data)
    else:
        labels = NDDeTPDiClustering(k=k).fit_predict(data)
    assert_valid_partition(labels, n)


# --------------------------------------------------- inputs that must raise


@pytest.mark.parametrize(
    "data, params, error, match",
    [
        (np.where(np.arange(240)[:, None] == 7, np.nan, X), {}, ValueError, "NaN"),
        (np.where(np.arange(240)[:, None] == 7, np.inf, X), {}, ValueError, "inf"),
        (np.where(np.arange(240)[:, None] == 7, -np.inf, X), {}, ValueError, "inf"),
        (
            np.where(np.arange(240)[:, None] != 7, 0.0, X),
            {},
            ValueError,
            "1 non-zero row",
        ),
        (X[:1], {}, ValueError, "minimum of 2 is required"),
        (X[:0], {}, ValueError, "0 sample"),
        (X[None], {}, ValueError, "dim 3"),
        (np.full((5, 3), "a"), {}, ValueError, "float"),
        (X, {"k": 1}, InvalidParameterError, "'k' parameter"),
        (X, {"tau": 0.0}, InvalidParameterError, "'tau' parameter"),
        (X, {"knn_method": "faiss"}, InvalidParameterError, "'knn_method'"),
    ],
    ids=[
        "nan",
        "inf",
        "minus_inf",
        "all_but_one_zero",
        "one_sample",
        "no_sample",
        "3d",
        "strings",
        "k_1",
        "tau_0",
        "unknown_knn_method",
    ],
)
def test_bad_input_is_a_named_error(data, params, error, match):
    with pytest.raises(error, match=match):
        NDDeTPDiClustering(**{"k": K, **params}).fit(data)


def test_predict_bad_input():
    with pytest.raises(NotFittedError):
        NDDeTPDiClustering(k=K).predict(X)
    est = NDDeTPDiClustering(k=K).fit(X)
    with pytest.raises(ValueError, match="16 features"):
        est.predict(X[:, :8])
    with pytest.raises(ValueError, match="NaN"):
        est.predict(np.full((2, 16), np.nan))
    with pytest.warns(UserWarning, match="2 all-zero row"):
        np.testing.assert_array_equal(est.predict(np.zeros((2, 16))), -1)


# ------------------------------------------------------------------- files


@pytest.mark.parametrize("name", ["empty.npy", "empty.csv", "empty.bin", "empty.npz"])
def test_empty_files_are_named(tmp_path, name, capsys):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_features(path)
    assert main(["cluster", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is empty" in err


def test_zero_row_array_file_is_named(tmp_path, capsys):
    path = tmp_path / "none.npy"
    np.save(path, np.zeros((0, 8), dtype=np.float32))
    assert main(["cluster", str(path)]) == 2
    assert "0 sample" in capsys.readouterr().err


def test_interrupted_label_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "labels.npy"
    save_labels(path, np.arange(5))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_labels(path, np.zeros(5, dtype=int))
    monkeypatch.undo()
    assert np.array_equal(np.load(path), np.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["labels.npy"]


def _cli_refuses_before_work(argv, capsys, monkeypatch, match):
    """``main(argv)`` exits 2 with one line matching ``match``, never fitting."""
    fits = []
    monkeypatch.setattr(
        NDDeTPDiClustering, "fit", lambda *a, **k: fits.append(1) or a[0]
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err
    assert fits == []


@pytest.mark.parametrize(
    "output, match",
    [
        ("{features}", "also an input"),
        ("missing/labels.npy", "does not exist"),
        ("labels.txt", "must end in .npy or .csv"),
        ("labels", "no suffix"),
        ("{readonly}", "read-only"),
        (".", "must end in"),
    ],
)
def test_cluster_checks_the_output_path_before_any_work(
    tmp_path, capsys, monkeypatch, output, match
):
    features = tmp_path / "self.npy"
    np.save(features, X)
    readonly = tmp_path / "readonly.npy"
    np.save(readonly, np.arange(3))
    readonly.chmod(0o444)
    output = output.format(features=features, readonly=readonly)
    if not output.startswith("/"):
        output = str(tmp_path / output)
    argv = ["cluster", str(features), "-o", output]
    _cli_refuses_before_work(argv, capsys, monkeypatch, match)
    # The input and the read-only file are untouched.
    np.testing.assert_array_equal(np.load(features), X)
    np.testing.assert_array_equal(np.load(readonly), np.arange(3))


def test_train_and_evaluate_check_their_outputs_first(tmp_path, capsys, monkeypatch):
    features, labels = tmp_path / "f.npy", tmp_path / "y.npy"
    np.save(features, X)
    np.save(labels, REFERENCE)
    fitted = []
    from sklearn_ndde.similarity import TransformerSimilarity

    monkeypatch.setattr(TransformerSimilarity, "fit", lambda *a, **k: fitted.append(1))
    for output in [str(tmp_path / "no" / "m.pt"), str(tmp_path / "m.bin")]:
        assert (
            main(["train", str(features), "--labels", str(labels), "-o", output]) == 2
        )
    assert fitted == []
    assert "does not exist" in capsys.readouterr().err
    figure = str(tmp_path / "report.txt")
    argv = ["evaluate", str(labels), "--labels", str(labels), "--figure", figure]
    assert main(argv) == 2
    assert "must end in .png or .pdf or .svg" in capsys.readouterr().err


def test_a_replaced_output_keeps_its_mode(tmp_path):
    path = tmp_path / "labels.npy"
    save_labels(path, np.arange(3))
    path.chmod(0o600)
    save_labels(path, np.arange(4))
    assert path.stat().st_mode & 0o777 == 0o600
    np.testing.assert_array_equal(np.load(path), np.arange(4))
    fresh = tmp_path / "fresh.csv"
    save_labels(fresh, np.arange(2))
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------ guards


def test_memory_guard_raises_before_any_stage(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 10**3)
    monkeypatch.setattr(
        pipeline_module,
        "knn_graph",
        lambda *a, **k: pytest.fail("the kNN search ran despite the guard"),
    )
    est = NDDeTPDiClustering(k=K)
    with pytest.raises(MemoryError, match=r"240 samples with k=10 needs about"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_knn_graph_memory_guard(monkeypatch):
    from sklearn_ndde import knn_graph

    monkeypatch.setattr(_memory, "available_bytes", lambda: 10**3)
    with pytest.raises(MemoryError, match="knn_graph on 240 samples"):
        knn_graph(X, K)


def test_memory_estimate_scales_with_the_input():
    small = _memory.fit_bytes(1000, 256, 80, "exact")
    large = _memory.fit_bytes(584_013, 256, 80, "pynndescent")
    # The 584K x 80 run measured 4.2 GB at its peak (benchmarks/scale.py).
    assert 4.2e9 < large < 8e9
    assert small < 0.5e9
    # fit with the IVF search on unit float32 rows, memory-mapped, used
    # without a copy: the peak beyond the input (benchmarks/scale_fit.py,
    # GiB), within 20 %.
    for n, measured in [(584_013, 1.86), (1_740_301, 4.48), (5_206_761, 12.30)]:
        estimate = _memory.fit_bytes(n, 256, 80, "ivf", rows_copied=False)
        assert 0.8 * measured < estimate / 1024**3 < 1.2 * measured
        # A copy of the rows when they are not unit float32 rows.
        copied = _memory.fit_bytes(n, 256, 80, "ivf")
        assert copied == estimate + 4 * n * 256


@pytest.mark.parametrize("refit", [False, True])
def test_interrupted_fit_leaves_the_estimator_unfitted(monkeypatch, refit):
    est = NDDeTPDiClustering(k=K)
    if refit:
        est.fit(X)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module, "tpdi_of_sorted_graph", interrupted)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert not [name for name in vars(est) if name.endswith("_")]
    monkeypatch.undo()
    assert same_partition(est.fit(X).labels_, REFERENCE)


# ------------------------------------------------------------- determinism

_CHILD = """
import json, sys
import numpy as np
from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings
X, _ = make_face_embeddings(600, 60, dim=16, random_state=3)
est = NDDeTPDiClustering(k=10, knn_method=sys.argv[1], random_state=7).fit(X)
print(json.dumps(est.labels_.tolist()))
"""


def test_same_random_state_same_labels_across_processes():
    # The approximate search is the only random stage: a fresh process and
    # this one must agree label for label.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, "pynndescent"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    there = json.loads(child.strip().splitlines()[-1])
    X3, _ = make_face_embeddings(600, 60, dim=16, random_state=3)
    here = NDDeTPDiClustering(k=10, knn_method="pynndescent", random_state=7)
    assert here.fit(X3).labels_.tolist() == there
    other = NDDeTPDiClustering(k=10, knn_method="pynndescent", random_state=8)
    assert bcubed_fscore(there, other.fit(X3).labels_) > 0.9


# -------------------------------------------------- properties (hypothesis)


@st.composite
def embeddings(draw):
    """Small face-like data sets, some with exact duplicates."""
    n_ids = draw(st.integers(2, 12))
    n = draw(st.integers(max(n_ids, 12), 60))
    seed = draw(st.integers(0, 2**31 - 1))
    dim = draw(st.sampled_from([3, 8, 32]))
    data, _ = make_face_embeddings(n, n_ids, dim=dim, random_state=seed)
    n_dup = draw(st.integers(0, 12))
    if n_dup:
        source = draw(st.integers(0, n - 1))
        data = np.vstack([data, np.repeat(data[source : source + 1], n_dup, 0)])
    else:
        source = None
    return data, source, n


settings_ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(case=embeddings(), k=st.integers(2, 15), tau=st.floats(0.05, 1.0))
def test_property_labels_partition_and_fit_predict_agree(case, k, tau):
    data, source, n = case
    k = min(k, len(data))
    est = NDDeTPDiClustering(k=k, tau=tau)
    labels = est.fit(data).labels_
    assert_valid_partition(labels, len(data))
    assert est.n_clusters_ == labels.max() + 1
    assert np.array_equal(NDDeTPDiClustering(k=k, tau=tau).fit_predict(data), labels)
    if source is not None:
        assert np.unique(labels[[source, *range(n, len(data))]]).size == 1


@settings_
@given(case=embeddings(), k=st.integers(2, 12), seed=st.integers(0, 2**31 - 1))
def test_property_copies_change_nothing_else(case, k, seed):
    data, _, n = case
    data = data[:n]
    k = min(k, n)
    rng = np.random.default_rng(seed)
    copied = rng.choice(n, int(rng.integers(1, 2 * n)), replace=True)
    labels = NDDeTPDiClustering(k=k).fit_predict(data)
    with_copies = NDDeTPDiClustering(k=k).fit_predict(np.vstack([data, data[copied]]))
    assert same_partition(with_copies[:n], labels)
    np.testing.assert_array_equal(with_copies[n:], with_copies[copied])


@settings_
@given(case=embeddings(), k=st.integers(2, 12), seed=st.integers(0, 2**31 - 1))
def test_property_row_order_does_not_matter(case, k, seed):
    # Without exact duplicates: which of several identical copies fills a kNN
    # list is a tie, broken by row order (docs/bad_input.md).
    data, _, n = case
    data = data[:n]
    k = min(k, len(data))
    perm = np.random.default_rng(seed).permutation(len(data))
    est = NDDeTPDiClustering(k=k).fit(data)
    # Samples alike in density and in their neighbours' density are ordered
    # by index (density_peaks' documented tie rule): small k makes such
    # ties (two mutual neighbours with saturated similarities).
    around = est.density_[est.neighbors_].sum(axis=1)
    keys = np.unique(np.stack([est.density_, around]), axis=1)
    assume(keys.shape[1] == len(data))
    permuted = NDDeTPDiClustering(k=k).fit_predict(data[perm])
    assert same_partition(est.labels_[perm], permuted)


@settings_
@given(
    case=embeddings(),
    k=st.integers(2, 12),
    scale=st.one_of(st.integers(-60, 60).map(lambda e: 2.0**e), st.floats(1e-3, 1e3)),
)
def test_property_positive_scaling_does_not_matter(case, k, scale):
    data, _, _ = case
    k = min(k, len(data))
    labels = NDDeTPDiClustering(k=k).fit_predict(data)
    assert same_partition(NDDeTPDiClustering(k=k).fit_predict(data * scale), labels)


@settings_
@given(case=embeddings(), k=st.integers(2, 12))
def test_property_predict_on_training_points_gives_labels(case, k):
    data, _, _ = case
    k = min(k, len(data))
    est = NDDeTPDiClustering(k=k).fit(data)
    # Each training point is its own nearest neighbour at TPDi 0 (or shares
    # a cluster with an exact duplicate), so the rule returns its label.
    assert np.array_equal(est.predict(data), est.labels_)


def test_without_torch_the_package_imports_and_the_model_says_how(tmp_path):
    # A child process where ``import torch`` fails, as on a machine without it.
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('No module named torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import sklearn_ndde, numpy as np\n"
        "from sklearn_ndde.similarity import TransformerSimilarity\n"
        "X = np.random.default_rng(0).random((30, 4))\n"
        "try:\n"
        "    TransformerSimilarity(n_neighbors=5).fit(X, np.arange(30) % 3)\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'sklearn-ndde[torch]'" in out


@pytest.mark.parametrize("k", [np.int32(2300), np.uint8(10), np.int64(80)])
def test_numpy_integer_parameters_do_not_overflow_the_memory_estimate(k):
    # np.int32(2300) * 20000 * ... wrapped to a negative estimate, which
    # skipped the MemoryError guard; np.uint8 raised OverflowError.
    for n, d in [(20000, 128), (584_013, 256)]:
        estimate = _memory.fit_bytes(n, d, k, "exact")
        assert estimate == _memory.fit_bytes(n, d, int(k), "exact") > 0
    labels = NDDeTPDiClustering(k=np.uint8(10)).fit_predict(X)
    assert_valid_partition(labels, len(X))


@pytest.mark.parametrize("n_jobs", [0, np.int64(0)])
def test_n_jobs_zero_is_refused_before_any_work(n_jobs):
    with pytest.raises(InvalidParameterError, match="'n_jobs' parameter"):
        NDDeTPDiClustering(k=K, n_jobs=n_jobs).fit(X)


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "bogus"])
def test_unusable_devices_are_one_clear_error(device, tmp_path, capsys):
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=f"device='{device}' is not"):
        NDDeTPDiClustering(k=K, device=device).fit(X)
    features = tmp_path / "f.npy"
    np.save(features, X)
    assert main(["cluster", str(features), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"device='{device}' is not" in err


@pytest.mark.parametrize(
    "name, content",
    [
        ("cut.npz", "npz_cut"),
        ("text.npz", b"this is not a zip file at all"),
        ("cut.npy", "npy_cut"),
    ],
)
def test_damaged_files_are_one_named_error(tmp_path, capsys, name, content):
    from sklearn_ndde.io import load_knn

    path = tmp_path / name
    whole = tmp_path / ("whole" + path.suffix)
    if content == "npz_cut":
        np.savez(whole, data=np.zeros((50, 2, 4), dtype=np.float32))
        content = whole.read_bytes()[:300]
    elif content == "npy_cut":
        np.save(whole, X)
        content = whole.read_bytes()[:500]
    path.write_bytes(content)
    loaders = [load_features, load_knn] if path.suffix == ".npz" else [load_features]
    for loader in loaders:
        with pytest.raises(ValueError, match=re.escape(repr(str(path)))):
            loader(path)
    assert main(["cluster", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err


@pytest.mark.parametrize("dim", [0, -4, 2.5, True])
def test_bin_dim_must_be_a_positive_integer(tmp_path, dim):
    path = tmp_path / "f.bin"
    X.astype("<f4").tofile(path)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        load_features(path, dim=dim)


def test_cli_bin_dim_zero_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "f.bin"
    X.astype("<f4").tofile(path)
    assert main(["cluster", str(path), "--dim", "0"]) == 2
    assert "dim must be a positive integer" in capsys.readouterr().err


def test_labels_with_a_byte_order_mark_load(tmp_path):
    from sklearn_ndde.io import load_labels

    path = tmp_path / "l.meta"
    path.write_bytes("\ufeff3\n3\n7\n".encode())
    np.testing.assert_array_equal(load_labels(path), [3, 3, 7])


@pytest.mark.parametrize("n, k, within", [(300_000, 80, 5.0), (20_000, 400, 2.0)])
def test_ctrl_c_inside_tpdi_is_a_prompt_keyboard_interrupt(n, k, within):
    # numba reported it as "SystemError: CPUDispatcher(...) returned a result
    # with an exception set", 4-6 s late.
    code = (
        # A shell that starts the tests in the background ignores SIGINT in
        # its children; Python then installs no KeyboardInterrupt handler.
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import numpy as np, sys\n"
        "from sklearn_ndde import transition_matrix, tpdi\n"
        "def graph(n, k=80):\n"
        "    rng = np.random.default_rng(0)\n"
        "    idx = np.hstack([np.arange(n)[:, None], rng.integers(0, n, (n, k - 1))])\n"
        "    s = np.sort(rng.random((n, k)).astype(np.float32), axis=1)[:, ::-1]\n"
        "    s = np.ascontiguousarray(s); s[:, 0] = 1\n"
        "    idx = idx.astype(np.int32)\n"
        "    return transition_matrix(idx, s, sigma=0.05), idx\n"
        "tpdi(*graph(100))\n"  # compile first
        f"Q, idx = graph({n}, {k})\n"
        "print('start', flush=True)\n"
        "tpdi(Q, idx)\n"
        "print('finished', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "start"
    time.sleep(1.0)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    waited = time.perf_counter() - sent
    assert "finished" not in out, "TPDi ended before the interrupt: make it longer"
    assert err.rstrip().endswith("KeyboardInterrupt"), err[-500:]
    assert "SystemError" not in err
    # The old kernel ran on to the end of its pass (about 8 s more here), and
    # at k = 400 on to the end of a slice as long as at k = 80 (6-9 s).
    assert waited < within


@pytest.mark.parametrize("name", ["distance_sigma", "density_sigma"])
def test_temperatures_so_small_the_softmax_underflows_still_cluster(name):
    # Used to fail with "P must hold finite non-negative probabilities".
    labels = NDDeTPDiClustering(k=K, **{name: 1e-45}).fit_predict(X)
    assert_valid_partition(labels, len(X))


def test_the_similarity_class_instead_of_an_instance_is_named():
    from sklearn_ndde.similarity import CalibratedCosineSimilarity

    with pytest.raises(TypeError, match=r"an instance, such as Calibrated\w+\(\)"):
        NDDeTPDiClustering(k=K, similarity=CalibratedCosineSimilarity).fit(X)


@pytest.mark.parametrize("labels", [np.array([0.5, 1.0]), np.zeros((2, 2), int)])
def test_save_labels_refuses_what_is_not_labels(tmp_path, labels):
    with pytest.raises(ValueError, match="1-D array of integers"):
        save_labels(tmp_path / "l.npy", labels)
    assert list(tmp_path.iterdir()) == []


def test_sparsity_bins_and_json_stay_finite_with_a_zero_row(tmp_path, capsys):
    from sklearn_ndde.metrics import hard_cluster_report

    data = np.vstack([X, np.zeros((1, X.shape[1]))])
    truth = np.append(REFERENCE, REFERENCE.max() + 1)
    rows = hard_cluster_report(truth, np.arange(len(truth)), data)
    values = [v for row in rows for v in row.values() if isinstance(v, float)]
    assert np.all(np.isfinite(values))
    for name, array in [("y.npy", truth), ("p.npy", np.arange(len(truth)))]:
        np.save(tmp_path / name, array)
    np.save(tmp_path / "f.npy", data)
    argv = ["evaluate", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy")]
    assert main([*argv, "--features", str(tmp_path / "f.npy"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out)["n_samples"] == len(truth)


@pytest.mark.parametrize("n_bins", [2.5, True])
def test_fractional_n_bins_is_refused(n_bins):
    from sklearn_ndde.metrics import hard_cluster_report

    with pytest.raises(ValueError, match="n_bins must be an integer"):
        hard_cluster_report(REFERENCE, REFERENCE, n_bins=n_bins)


def test_knn_ids_beyond_int32_are_not_wrapped(tmp_path):
    from sklearn_ndde.io import load_knn

    knn = np.zeros((2, 2, 3), dtype=np.float64)
    knn[:, 0] = [[0, 1, 2**31 + 5], [1, 0, 2]]
    np.savez(tmp_path / "k.npz", data=knn)
    indices, _ = load_knn(tmp_path / "k.npz")
    assert indices.dtype == np.int64 and indices[0, 2] == 2**31 + 5
    knn[0, 0, 2] = -7
    np.savez(tmp_path / "k.npz", data=knn)
    with pytest.raises(ValueError, match=">= 0"):
        load_knn(tmp_path / "k.npz")


def test_demo_runs_on_as_few_samples_as_it_accepts(capsys):
    assert main(["demo", "--n-samples", "25", "--no-figure"]) == 0
    assert "NDDe + TPDi (defaults)" in capsys.readouterr().out


def test_fractional_parents_are_refused_not_truncated():
    import scipy.sparse as sp

    from sklearn_ndde import merge_by_flow

    with pytest.raises(ValueError, match="integer sample ids"):
        merge_by_flow(np.array([-1.0, 0.5, -1.0]), sp.identity(3, format="csr"))


def test_cluster_checks_the_labels_and_a_real_write_before_any_work(
    tmp_path, capsys, monkeypatch
):
    features, short = tmp_path / "f.npy", tmp_path / "y.npy"
    np.save(features, X)
    np.save(short, np.arange(3))
    argv = ["cluster", str(features), "--labels", str(short)]
    _cli_refuses_before_work(argv, capsys, monkeypatch, "3 labels for 240 samples")
    # /proc takes no new file whatever its mode bits say.
    if Path("/proc").is_dir():
        argv = ["cluster", str(features), "-o", "/proc/labels.npy"]
        _cli_refuses_before_work(argv, capsys, monkeypatch, "is not writable")


def test_a_zip_bomb_npz_is_refused_before_it_is_decompressed(tmp_path):
    # 2 GB of zeros in 1.9 MB: refused from the array's declared shape.
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, features=np.zeros((20000, 25000), np.float32))
    with pytest.raises(ValueError, match="likely zip bomb"):
        load_features(path)
    np.savez_compressed(tmp_path / "knn.npz", data=np.zeros((20000, 2, 12500)))
    from sklearn_ndde.io import load_knn

    with pytest.raises(ValueError, match="likely zip bomb"):
        load_knn(tmp_path / "knn.npz")
    # Real embeddings hardly compress: loaded as before.
    real = np.random.default_rng(0).random((500, 64), dtype=np.float32)
    np.savez_compressed(tmp_path / "real.npz", features=real)
    np.testing.assert_array_equal(load_features(tmp_path / "real.npz"), real)


@pytest.mark.parametrize("name", ["density_k", "knn_recall", "tau", "merge_threshold"])
def test_a_bool_for_a_number_is_refused(name):
    X = np.random.default_rng(0).standard_normal((40, 8))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter .* bool"):
        NDDeTPDiClustering(k=10, **{name: True}).fit(X)


def test_density_k_above_k_is_said():
    X = np.random.default_rng(0).standard_normal((40, 8))
    with pytest.warns(UserWarning, match="density_k=30 is larger than k=10") as w:
        NDDeTPDiClustering(k=10, density_k=30).fit(X)
    # At the user's call (it named the interpreter's "sys" before).
    assert [r.filename for r in w] == [__file__]


def test_a_refit_that_fails_validation_leaves_the_estimator_unfitted():
    X = np.random.default_rng(0).standard_normal((40, 8))
    est = NDDeTPDiClustering(k=10).fit(X)
    with pytest.raises(InvalidParameterError):
        est.set_params(tau=5.0).fit(X)
    with pytest.raises(NotFittedError):
        est.predict(X)


def test_ivf_on_a_few_samples_searches_exactly_without_faiss_warnings(capfd):
    X = np.random.default_rng(0).standard_normal((20, 8))
    est = NDDeTPDiClustering(k=5, knn_method="ivf").fit(X)
    assert est.knn_recall_ == 1.0
    assert "training points" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "convert, match",
    [
        (lambda G: G * 100, r"distances up to .* lie in \[0, 2\]"),
        (lambda G: G.astype(np.int64), "as floats, got dtype int64"),
        (lambda G: G.astype(bool), "as floats, got dtype bool"),
    ],
)
def test_a_precomputed_graph_that_is_not_cosine_distances_is_refused(convert, match):
    from sklearn.neighbors import KNeighborsTransformer

    X = np.random.default_rng(0).standard_normal((60, 8))
    G = KNeighborsTransformer(n_neighbors=19, mode="distance", metric="cosine")
    G = G.fit_transform(X)
    with pytest.raises(ValueError, match=match):
        NDDeTPDiClustering(k=20, metric="precomputed").fit(convert(G))


@pytest.mark.parametrize(
    "rows",
    [
        # Two points, each repeated 50 times: two clusters, not one.
        np.repeat(np.random.default_rng(0).standard_normal((2, 8)), 50, axis=0),
        # One feature, +x and -x: opposite directions are never one identity.
        np.concatenate([np.full((30, 1), 1.0), np.full((30, 1), -2.0)]),
    ],
)
def test_one_distinct_pair_cosine_is_no_evidence_of_one_identity(rows):
    with pytest.warns(UserWarning, match="k=80 is larger than the number of"):
        labels = NDDeTPDiClustering().fit_predict(rows)
    assert labels.max() + 1 == 2


@pytest.mark.parametrize("dim", [32, 128])
def test_unrelated_groups_of_copies_stay_apart(dim):
    # 20 unrelated directions, each repeated 5 times up to 1e-12: the
    # distinct rows are pure noise, with no pair more alike than unrelated
    # samples are; each group is a cluster (it was one or two clusters).
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(20), 5)
    X = rng.standard_normal((20, dim))[y] + 1e-12 * rng.standard_normal((100, dim))
    with pytest.warns(UserWarning, match="distinct samples"):
        labels = NDDeTPDiClustering().fit_predict(X)
    assert adjusted_rand_score(y, labels) == 1.0


def test_few_identities_are_still_found_where_the_lists_hold_every_sample():
    from sklearn_ndde.datasets import make_face_embeddings

    for n, n_people in [(40, 2), (60, 4), (100, 5)]:
        X, y = make_face_embeddings(n, n_people, dim=64, random_state=0)
        labels = NDDeTPDiClustering().fit_predict(X)
        assert adjusted_rand_score(y, labels) == 1.0


@pytest.mark.parametrize("n", [80, 81])
def test_n_equal_to_k_keeps_the_identities_apart(n):
    # The lists hold every sample (issue 32 reported 9 identities merged).
    from sklearn_ndde.datasets import make_face_embeddings

    X, y = make_face_embeddings(n, 9, dim=128, random_state=0)
    labels = NDDeTPDiClustering(k=80).fit_predict(X)
    assert adjusted_rand_score(y, labels) == 1.0


def test_the_k_warning_counts_distinct_samples_and_rows():
    X = np.repeat(np.random.default_rng(0).standard_normal((2, 8)), 50, axis=0)
    with pytest.warns(UserWarning, match=r"distinct samples \(2 of 100 rows"):
        NDDeTPDiClustering().fit(X)


def test_calibrate_refuses_nan():
    from sklearn_ndde.similarity import CalibratedCosineSimilarity

    X = np.random.default_rng(0).standard_normal((50, 8))
    sim = CalibratedCosineSimilarity(n_neighbors=10).fit(X)
    with pytest.raises(ValueError, match="contain NaN"):
        sim.calibrate(np.array([0.5, np.nan]))


def test_a_csv_of_empty_lines_holds_no_numbers(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n\n\n")
    with pytest.raises(ValueError, match="holds no numbers"):
        load_features(path)


def test_a_meta_integer_too_large_is_named(tmp_path):
    from sklearn_ndde.io import load_labels

    path = tmp_path / "big.meta"
    path.write_text("1\n12345678901234567890123\n")
    with pytest.raises(ValueError, match="too large for 64 bits"):
        load_labels(path)


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*nodir.* does not exist"):
        save_labels(tmp_path / "nodir" / "labels.npy", np.arange(3))


def test_demo_checks_its_figure_path_before_running(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sklearn_ndde", "demo", "--figure", "nodir/x.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert time.perf_counter() - start < 30  # refused before the demo's work
