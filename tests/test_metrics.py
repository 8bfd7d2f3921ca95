"""Pairwise and BCubed scores, the hard-cluster report."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sklearn_ndde.metrics import (
    bcubed_precision_recall_fscore,
    hard_cluster_report,
    pairwise_precision_recall_fscore,
)


def slow_scores(t, p):
    n = len(t)
    same_t = t[:, None] == t[None, :]
    same_p = p[:, None] == p[None, :]
    off = ~np.eye(n, dtype=bool)
    tp = (same_t & same_p & off).sum()
    pp = tp / max((same_p & off).sum(), 1) if (same_p & off).any() else 1.0
    pr = tp / max((same_t & off).sum(), 1) if (same_t & off).any() else 1.0
    both = (same_t & same_p).sum(axis=1)
    bp = np.mean(both / same_p.sum(axis=1))
    br = np.mean(both / same_t.sum(axis=1))
    return pp, pr, bp, br


labels = st.lists(st.integers(0, 4), min_size=1, max_size=30)


@given(labels, st.randoms())
def test_scores_match_pair_counting(true, rnd):
    t = np.array(true)
    p = np.array([rnd.randint(0, 4) for _ in true])
    pp, pr, bp, br = slow_scores(t, p)
    assert pairwise_precision_recall_fscore(t, p)[:2] == pytest.approx((pp, pr))
    assert bcubed_precision_recall_fscore(t, p)[:2] == pytest.approx((bp, br))


def test_noise_label_counts_as_singletons():
    t = [0, 0, 1, 1]
    assert pairwise_precision_recall_fscore(t, [-1, -1, -1, -1]) == (1.0, 0.0, 0.0)
    p, r, f = bcubed_precision_recall_fscore(t, [-1, -1, 5, 5])
    assert (p, r) == (1.0, 0.75)


def test_perfect_and_hand_computed():
    assert pairwise_precision_recall_fscore([1, 1, 2], [7, 7, 3]) == (1.0, 1.0, 1.0)
    # one cluster of 4 over two identities of 2: 2 of 6 pairs right
    p, r, f = pairwise_precision_recall_fscore([0, 0, 1, 1], [0, 0, 0, 0])
    assert (p, r) == (pytest.approx(1 / 3), 1.0)
    p, r, f = bcubed_precision_recall_fscore([0, 0, 1, 1], [0, 0, 0, 0])
    assert (p, r) == (0.5, 1.0)


def test_five_million_labels_is_fast_enough_to_run():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 100_000, 5_000_000)
    p = np.where(rng.random(t.size) < 0.9, t, rng.integers(0, 100_000, t.size))
    assert 0.8 < bcubed_precision_recall_fscore(t, p)[2] < 1.0


def test_hard_cluster_report_bins():
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(20), np.arange(1, 21))
    X = rng.standard_normal((t.size, 5))
    rows = hard_cluster_report(t, t, X, n_bins=5)
    assert [r["by"] for r in rows] == ["size"] * 5 + ["sparsity"] * 5
    assert sum(r["n_identities"] for r in rows[:5]) == 20
    assert rows[0]["high"] <= rows[1]["low"]
    assert all(r["bcubed_f"] == 1.0 for r in rows)


@pytest.mark.parametrize(
    "t, p, error, match",
    [
        ([0, 1], [0], ValueError, "different lengths"),
        ([0.5, 1], [0, 1], ValueError, "integer cluster ids"),
        (["a", "b"], [0, 1], TypeError, "integer cluster ids"),
        ([[0, 1]], [[0, 1]], ValueError, "1-D"),
        ([], [], ValueError, "empty"),
    ],
)
def test_metric_bad_input(t, p, error, match):
    with pytest.raises(error, match=match):
        bcubed_precision_recall_fscore(t, p)


def test_hard_cluster_report_sizes_are_integers_and_singletons_have_no_sparsity():
    t = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    X = np.random.default_rng(0).standard_normal((t.size, 4))
    rows = hard_cluster_report(t, t, X, n_bins=3)
    sizes = [r for r in rows if r["by"] == "size"]
    assert all(type(r["low"]) is int and type(r["high"]) is int for r in sizes)
    sparse = [r for r in rows if r["by"] == "sparsity"]
    # The single face of identity 0 has no pair: 3 identities in the bins.
    assert sum(r["n_identities"] for r in sparse) == 3
    assert all(isinstance(r["low"], float) for r in sparse)


def test_hard_cluster_report_refuses_nan_features():
    t = np.array([0, 0, 1, 1])
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        hard_cluster_report(t, t, X, n_bins=2)
