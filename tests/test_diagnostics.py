"""The warning for one cluster that holds most samples and whose pairs are
no more alike than random pairs (``_diagnostics``)."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde._diagnostics import (
    MIN_CONTRAST,
    largest_cluster_contrast,
    warn_if_one_random_cluster,
)
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MESSAGE = "One cluster holds"


def unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def fit_recording(X, **params):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = NDDeTPDiClustering(**params).fit(X)
    return est, [str(w.message) for w in caught if MESSAGE in str(w.message)]


def test_contrast_of_random_rows_in_one_cluster_is_zero():
    X = unit(np.random.default_rng(0).standard_normal((500, 32)))
    share, contrast = largest_cluster_contrast(X, np.zeros(500, dtype=int))
    assert share == 1.0
    assert abs(contrast) < 0.1


def test_contrast_of_a_true_cluster_is_large():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 100)
    X = unit(3 * rng.standard_normal((5, 32))[y] + rng.standard_normal((500, 32)))
    # Labels need not be consecutive.
    share, contrast = largest_cluster_contrast(X, 7 * y + 3)
    assert share == pytest.approx(0.2)
    assert contrast > 2 * MIN_CONTRAST


def test_contrast_of_a_single_sample_cluster_is_nan():
    X = unit(np.random.default_rng(0).standard_normal((10, 8)))
    share, contrast = largest_cluster_contrast(X, np.arange(10))
    assert share == pytest.approx(0.1)
    assert np.isnan(contrast)


def test_one_person_collection_warns_and_keeps_its_labels():
    rng = np.random.default_rng(0)
    X = rng.standard_normal(32) + 0.2 * rng.standard_normal((300, 32))
    est, messages = fit_recording(X)
    assert len(messages) == 1
    assert "of the 300 samples" in messages[0]
    assert "k=80" in messages[0] and "k=15" in messages[0]
    # The warning changes nothing: the same fit without it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = NDDeTPDiClustering().fit(X)
    np.testing.assert_array_equal(est.labels_, again.labels_)


def test_small_collections_are_not_checked():
    # Random rows in one cluster: too few to judge below 100 samples.
    X = unit(np.random.default_rng(0).standard_normal((100, 8)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_one_random_cluster(X[:99], np.zeros(99, dtype=int), k=80)
    assert caught == []
    with pytest.warns(UserWarning, match="100% of the 100 samples") as record:
        warn_if_one_random_cluster(X, np.zeros(100, dtype=int), k=80)
    assert "try a smaller k such as k=10" in str(record[0].message)
    # No advice to lower a k that is already as small.
    with pytest.warns(UserWarning, match="with k=10, each sample") as record:
        warn_if_one_random_cluster(X, np.zeros(100, dtype=int), k=10)
    assert "smaller k" not in str(record[0].message)


def test_collection_of_many_people_does_not_warn():
    X, y = make_face_embeddings(1000, 50, dim=64, random_state=0)
    est, messages = fit_recording(X)
    assert messages == []
    assert bcubed_fscore(y, est.labels_) > 0.9


def test_warning_points_at_the_callers_line():
    rng = np.random.default_rng(0)
    X = rng.standard_normal(32) + 0.2 * rng.standard_normal((300, 32))
    with pytest.warns(UserWarning, match=MESSAGE) as record:
        NDDeTPDiClustering().fit(X)
    assert any(Path(w.filename).resolve() == Path(__file__).resolve() for w in record)


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent")
def test_small_collection_of_strangers_warns_and_a_smaller_k_separates_them():
    data = np.load(DATA / "lfw_dlib128.npz")
    rows = np.random.default_rng(0).choice(data["labels"].size, 200, replace=False)
    X, y = data["features"][rows], data["labels"][rows]
    est, messages = fit_recording(X)
    # Nearly every face is a different person, yet one cluster holds them.
    assert est.n_clusters_ <= 5
    assert len(messages) == 1 and "k=10" in messages[0]
    smaller, messages = fit_recording(X, k=10)
    assert messages == []
    assert bcubed_fscore(y, smaller.labels_) > 0.9
