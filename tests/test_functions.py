"""The pure functions: hand-computed cases, properties, a slow reference."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components

import sklearn_ndde._tpdi as _tpdi
from sklearn_ndde import (
    NDDeTPDiClustering,
    density_peaks,
    knn_graph,
    link_saturated_peaks,
    merge_by_flow,
    ndde_density,
    row_softmax,
    tpdi,
    transition_matrix,
)
from sklearn_ndde._peaks import components_from_parents, density_rank
from sklearn_ndde.datasets import make_face_embeddings


def random_graph(rng, n, k):
    """A random kNN-like graph: self first, k - 1 distinct others per row."""
    others = np.argsort(rng.random((n, n)) + np.eye(n) * 2, axis=1)[:, : k - 1]
    indices = np.hstack([np.arange(n)[:, None], others])
    sims = np.hstack([np.ones((n, 1)), rng.random((n, k - 1))])
    return indices, sims


@st.composite
def graphs(draw, max_n=25):
    n = draw(st.integers(2, max_n))
    k = draw(st.integers(2, n))
    seed = draw(st.integers(0, 2**31 - 1))
    return random_graph(np.random.default_rng(seed), n, k)


# ---------------------------------------------------------------- knn_graph


def test_knn_graph_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    indices, sims = knn_graph(X, 10, method="exact")
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    np.fill_diagonal(S, np.inf)
    expected = np.argsort(-S, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, expected)
    np.fill_diagonal(S, 1.0)
    np.testing.assert_allclose(sims, np.take_along_axis(S, indices, 1), atol=1e-5)
    assert np.all(np.diff(sims[:, 1:], axis=1) <= 0)


def test_knn_graph_self_first_with_duplicates():
    X = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]])
    indices, sims = knn_graph(X, 3)
    np.testing.assert_array_equal(indices[:, 0], np.arange(5))
    np.testing.assert_allclose(sims[:4], 1.0, atol=1e-6)


def test_knn_graph_pynndescent_recall():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 16))
    X = centres[rng.integers(0, 40, 2000)] + 0.3 * rng.standard_normal((2000, 16))
    exact, _ = knn_graph(X, 15, method="exact")
    approx, sims = knn_graph(X, 15, method="pynndescent", random_state=0)
    np.testing.assert_array_equal(approx[:, 0], np.arange(2000))
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(approx, exact)])
    assert recall > 0.95
    assert np.all(np.diff(sims[:, 1:], axis=1) <= 1e-7)


def _true_recall(exact, approx):
    k = exact.shape[1]
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(approx, exact)])


def _likely_recall(X, exact, exact_sims, sims):
    """Recall of the likely neighbours over every row, the likely ones as
    the estimator's calibration of the whole exact graph says."""
    from sklearn_ndde._knn import _recall_of_likely
    from sklearn_ndde.similarity import CalibratedCosineSimilarity

    cal = CalibratedCosineSimilarity().fit_neighbors(exact, exact_sims, X=X)
    floor = cal.grid_[np.flatnonzero(cal.curve_ >= 0.5)[0]]
    return _recall_of_likely(exact_sims, sims, floor)


def test_recall_of_likely_counts_the_likely_neighbours_only():
    from sklearn_ndde._knn import _recall_of_likely

    exact = np.array([[1.0, 0.9, 0.8, 0.3, 0.2], [1.0, 0.4, 0.3, 0.2, 0.1]])
    # Row 0 finds one of its two likely neighbours (0.9, not 0.8) and
    # misses unrelated ones; row 1 has no likely neighbour.
    found = np.array([[1.0, 0.9, 0.3, 0.25, 0.2], [1.0, 0.3, 0.2, 0.1, 0.05]])
    assert _recall_of_likely(exact, found, 0.5) == 0.5
    # Nothing likely anywhere: nothing to miss.
    assert _recall_of_likely(exact, found, np.inf) == 1.0
    # Ties at the lowest likely cosine count whichever sample a search returns.
    assert _recall_of_likely(exact, exact, 0.5) == 1.0


def test_likely_floor_of_a_sample_is_the_estimators():
    """The floor of a likely match, fitted on 1,000 rows' exact lists, is
    where the estimator's calibration of the whole graph reaches 0.5, and
    the pairs above it are the same identity."""
    from sklearn_ndde._calibration import (
        background_level,
        likely_floor,
        random_pair_cosines,
        row_hashes,
    )
    from sklearn_ndde.similarity import CalibratedCosineSimilarity

    X, y = make_face_embeddings(20000, 300, dim=32, random_state=3)
    Xn = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    rows = np.sort(np.random.default_rng(0).choice(len(X), 1000, replace=False))
    indices, sims = knn_graph(X, 30, method="exact")
    background = background_level(
        random_pair_cosines(row_hashes(Xn), Xn.__getitem__), len(X), 30
    )
    floor = likely_floor(sims[rows], background)
    whole = CalibratedCosineSimilarity().fit_neighbors(indices, sims, X=X)
    assert whole.calibrate(floor - 0.01) < 0.5 <= whole.calibrate(floor + 0.01)
    same = y[indices[:, 1:]] == y[:, None]
    assert same[sims[:, 1:] >= floor].mean() > 0.97


@pytest.mark.parametrize("target", [0.8, 0.97])
def test_knn_graph_ivf_reaches_its_recall_target(target):
    """The recall measured on the sample is the graph's, and meets the target."""
    X, _ = make_face_embeddings(6000, 300, dim=32, spread=(0.8, 1.6), random_state=0)
    exact, exact_sims = knn_graph(X, 20, method="exact")
    approx, sims, reached = knn_graph(
        X, 20, method="ivf", recall=target, random_state=0, return_recall=True
    )
    assert reached >= target
    true = _likely_recall(X, exact, exact_sims, sims)
    assert true >= target - 0.02
    assert abs(true - reached) < 0.03
    np.testing.assert_array_equal(approx[:, 0], np.arange(6000))
    assert np.all(np.diff(sims[:, 1:], axis=1) <= 1e-7)
    # The cosines returned are the true ones.
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(sims, np.einsum("id,ikd->ik", Xn, Xn[approx]), atol=1e-5)
    again = knn_graph(X, 20, method="ivf", recall=target, random_state=0)
    np.testing.assert_array_equal(again[0], approx)


def _unit_rows(rng, n, d=8):
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_offered_pairs_complete_each_list_from_the_other_end():
    """Each row ends with the best k of its own list and of the rows that
    list it, by cosine, each id once (brute force on small graphs)."""
    from sklearn_ndde._knn_kernels import offer_reverse_pairs

    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(5, 40))
        k = int(rng.integers(2, min(n, 10)))
        X = _unit_rows(rng, n)
        S = X @ X.T
        indices = np.array(
            [
                np.r_[i, rng.permutation(np.delete(np.arange(n), i))[: k - 1]]
                for i in range(n)
            ],
            dtype=np.int32,
        )
        indices[0, -1] = -1  # a missing result (faiss's -1) is replaced first
        sims = np.where(indices >= 0, S[np.arange(n)[:, None], indices], -np.inf)
        sims = sims.astype(np.float32)
        got_i, got_s = indices.copy(), sims.copy()
        offer_reverse_pairs(got_i, got_s, 2, np.ones(indices.shape, bool))
        for j in range(n):
            offers = {i for i in range(n) if i != j and j in indices[i]}
            pool = (set(indices[j]) - {-1}) | offers
            best = np.sort([S[j, c] for c in pool])[::-1][:k]
            kept = np.sort(got_s[j][got_i[j] >= 0])[::-1]
            np.testing.assert_allclose(kept, best[: kept.size], rtol=1e-6)
            assert kept.size == min(k, len(pool))
            assert len(set(got_i[j][got_i[j] >= 0])) == kept.size
            np.testing.assert_allclose(
                got_s[j][got_i[j] >= 0], S[j, got_i[j][got_i[j] >= 0]], rtol=1e-6
            )


def test_rows_sorted_self_first_as_lexsort_orders_them():
    from sklearn_ndde._knn import _sort_rows

    rng = np.random.default_rng(1)
    for case in range(200):
        n, k = int(rng.integers(1, 30)), int(rng.integers(1, 12))
        indices = rng.integers(-1, 40, (n, k))
        rows = rng.integers(0, 40, n) if case % 2 else np.arange(n)
        if case % 3 == 0:
            indices[:, 0] = rows
        sims = rng.choice([0.1, 0.5, 0.5, 0.9, -np.inf], (n, k)).astype(np.float32)
        order = np.lexsort((indices, -sims, indices != rows[:, None]), axis=-1)
        expected = [np.take_along_axis(a, order, 1) for a in (indices, sims)]
        got = _sort_rows(indices, sims, rows)
        # In place: no (n, k) array allocated.
        assert got[0] is indices and got[1] is sims
        np.testing.assert_array_equal(indices, expected[0])
        np.testing.assert_array_equal(sims, expected[1])


def test_kept_range_counts_the_pairs_a_calibration_keeps():
    # Count, min and max of the values that are not a row's own sample and
    # lie below the floor, whatever the number of chunks.
    from sklearn_ndde._kernels import kept_range

    rng = np.random.default_rng(0)
    for _ in range(20):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 8))
        indices = rng.integers(0, n, size=(n, k)).astype(np.int32)
        values = rng.uniform(-1, 1, size=(n, k)).astype(np.float32)
        values[rng.random((n, k)) < 0.2] = 1.0
        rows = np.arange(n)
        floor = np.float32(1.0 - 1e-6)
        kept = (indices != rows[:, None]) & (values < floor)
        for n_chunks in (1, 3, max(1, n)):
            count, lo, hi = kept_range(indices, values, rows, floor, n_chunks)
            assert count == kept.sum()
            if count:
                assert (lo, hi) == (values[kept].min(), values[kept].max())
            else:
                assert (lo, hi) == (np.inf, -np.inf)


def test_locality_order_links_only_likely_pairs_when_given_similarities():
    """Two groups whose first neighbours include one unlikely pair are one
    component without the similarities and two contiguous runs with them;
    the caller's arrays are left as they were."""
    from sklearn_ndde._tpdi import locality_order

    # Samples 0, 2, 4 form one group, 1, 3, 5 the other; sample 4's own
    # neighbours are sample 1 (similarity 0.2) and sample 0 (0.1).
    indices = np.array(
        [[0, 2, 4], [1, 3, 5], [2, 0, 4], [3, 1, 5], [4, 1, 0], [5, 3, 1]],
        dtype=np.int32,
    )
    s = np.array(
        [[1, 0.9, 0.8], [1, 0.9, 0.8], [1, 0.9, 0.8], [1, 0.9, 0.8],
         [1, 0.2, 0.1], [1, 0.9, 0.8]],
        dtype=np.float32,
    )  # fmt: skip
    kept = indices.copy(), s.copy()
    np.testing.assert_array_equal(locality_order(indices, 3), np.arange(6))
    np.testing.assert_array_equal(
        locality_order(indices, 3, similarities=s), [0, 2, 4, 1, 3, 5]
    )
    np.testing.assert_array_equal(indices, kept[0])
    np.testing.assert_array_equal(s, kept[1])


def test_tpdi_of_a_sorted_graph_is_tpdi_of_its_transition_matrix():
    """The estimator's TPDi (square roots made in place, rows permuted by
    cycles) gives what the two public functions give."""
    from sklearn_ndde import tpdi, transition_matrix
    from sklearn_ndde._tpdi import tpdi_of_sorted_graph

    rng = np.random.default_rng(5)
    for n, k in [(1, 1), (7, 3), (300, 12), (2000, 20)]:
        X = rng.normal(size=(n, 8))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        S = X @ X.T
        indices = np.argsort(-S, axis=1)[:, :k].astype(np.int32)
        s = np.clip(np.take_along_axis(S, indices, 1), 0, 1).astype(np.float32)
        s = -np.sort(-s, axis=1)  # rows by decreasing similarity
        expected = tpdi(transition_matrix(indices, s, sigma=0.05), indices)
        got = tpdi_of_sorted_graph(indices, s, 0.05)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == np.float32


def test_unit_float32_rows_are_used_as_they_are():
    """A float32 array of unit rows (a memory-mapped file of normalised
    embeddings) is not copied: a read-only view is returned, and each row
    normalises the same alone as in any block."""
    from sklearn_ndde._validation import _normalize_rows

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X = X.astype(np.float32)
    Xn = _normalize_rows(X)
    assert np.shares_memory(Xn, X) and not Xn.flags.writeable
    assert X.flags.writeable  # the caller's array is left as it was
    # One row scaled: the array is copied, and every other row kept as is.
    Y = X.copy()
    Y[7] *= 3.0
    Yn = _normalize_rows(Y, block=64)
    assert not np.shares_memory(Yn, Y)
    np.testing.assert_array_equal(np.delete(Yn, 7, 0), np.delete(X, 7, 0))
    np.testing.assert_allclose(Yn[7], X[7], rtol=1e-6)
    for start in (0, 64, 448):
        np.testing.assert_array_equal(
            _normalize_rows(Y[start : start + 64]), Yn[start : start + 64]
        )
    # float64 unit rows are still made float32 (a copy).
    assert _normalize_rows(X.astype(np.float64)).dtype == np.float32


def test_fit_on_unit_float32_rows_keeps_one_copy():
    from sklearn_ndde import NDDeTPDiClustering
    from sklearn_ndde.datasets import make_face_embeddings

    X, y = make_face_embeddings(600, 20, dim=32, random_state=0)
    X = X.astype(np.float32)
    before = X.copy()
    est = NDDeTPDiClustering(k=20).fit(X)
    assert np.shares_memory(est._fit_X, X)
    np.testing.assert_array_equal(X, before)
    labels = NDDeTPDiClustering(k=20).fit(X.astype(np.float64)).labels_
    np.testing.assert_array_equal(est.labels_, labels)


def _random_graph(rng, n, k, X):
    """Rows of ``k`` random other ids, self first, sorted by cosine."""
    S = X @ X.T
    indices = np.array(
        [
            np.r_[i, rng.permutation(np.delete(np.arange(n), i))[: k - 1]]
            for i in range(n)
        ],
        dtype=np.int32,
    )
    sims = S[np.arange(n)[:, None], indices].astype(np.float32)
    order = np.argsort(-sims[:, 1:], axis=1, kind="stable") + 1
    order = np.c_[np.zeros(n, dtype=int), order]
    return np.take_along_axis(indices, order, 1), np.take_along_axis(sims, order, 1), S


def test_neighbours_of_neighbours_as_brute_force():
    """Each row ends with the best k of its list and of the likely
    neighbours of its first sources met through a new pair, self first,
    each id once, with their true cosines."""
    from sklearn_ndde._knn_kernels import neighbours_of_neighbours

    rng = np.random.default_rng(0)
    for case in range(60):
        n = int(rng.integers(6, 40))
        k = int(rng.integers(3, min(n, 9)))
        X = _unit_rows(rng, n)
        indices, sims, S = _random_graph(rng, n, k, X)
        new = rng.random((n, k)) < (1.0 if case % 2 else 0.5)
        sources, each = int(rng.integers(1, k + 1)), int(rng.integers(1, k + 1))
        floor = np.float32(rng.uniform(-0.5, 0.3))
        order = rng.permutation(n) if case % 3 else np.arange(n)
        got_i, got_s, measured = neighbours_of_neighbours(
            X, indices, sims, new, sources, each, floor, 3, order
        )
        # The visiting order changes the speed only.
        by_id = neighbours_of_neighbours(
            X, indices, sims, new, sources, each, floor, 2, np.arange(n)
        )
        np.testing.assert_array_equal(by_id[0], got_i)
        np.testing.assert_array_equal(by_id[1], got_s)
        assert by_id[2] == measured
        total = 0
        for i in range(n):
            met = set()
            for a in range(min(sources, k)):
                if sims[i, a] < floor:
                    break
                j = indices[i, a]
                if j == i:
                    continue
                for b in range(min(each, k)):
                    if sims[j, b] < floor:
                        break
                    if new[i, a] or new[j, b]:
                        met.add(int(indices[j, b]))
            met -= set(indices[i].tolist())
            total += len(met)
            pool = set(indices[i, 1:].tolist()) | met
            best = np.sort([S[i, q] for q in pool])[::-1][: k - 1]
            assert got_i[i, 0] == i
            np.testing.assert_allclose(got_s[i, 1:], best, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_s[i], S[i, got_i[i]], rtol=1e-5, atol=1e-6)
            assert len(set(got_i[i].tolist())) == k
        assert measured == total


def test_new_entries_and_merge_found():
    from sklearn_ndde._knn_kernels import merge_found, new_entries

    rng = np.random.default_rng(2)
    n, k = 30, 6
    X = _unit_rows(rng, n)
    indices, sims, S = _random_graph(rng, n, k, X)
    rows = np.array([3, 7, 11])
    found = np.array([rng.permutation(n)[:5] for _ in rows], dtype=np.int32)
    found[0, 0] = -1  # faiss's missing result
    found_sims = S[rows[:, None], np.maximum(found, 0)].astype(np.float32)
    merged_i, merged_s = indices.copy(), sims.copy()
    merge_found(merged_i, merged_s, rows, found, found_sims)
    for r, i in enumerate(rows):
        pool = set(indices[i, 1:].tolist()) | (set(found[r].tolist()) - {-1, i})
        best = np.sort([S[i, q] for q in pool])[::-1][: k - 1]
        assert merged_i[i, 0] == i
        np.testing.assert_allclose(merged_s[i, 1:], best, rtol=1e-6)
    others = np.setdiff1d(np.arange(n), rows)
    np.testing.assert_array_equal(merged_i[others], indices[others])
    flags = new_entries(indices, merged_i, 2)
    expected = np.array(
        [[q not in set(indices[i].tolist()) for q in merged_i[i]] for i in range(n)]
    )
    np.testing.assert_array_equal(flags, expected)


def test_rerank_keeps_the_best_candidates_by_exact_cosine():
    from sklearn_ndde._knn_kernels import rerank

    rng = np.random.default_rng(3)
    X = _unit_rows(rng, 50)
    rows = np.array([0, 5, 9])
    candidates = np.array([rng.permutation(50)[:12] for _ in rows])
    candidates[1, 3:] = -1  # fewer candidates than neighbours
    sims, ids = rerank(X, rows, candidates, 6)
    for r, i in enumerate(rows):
        pool = candidates[r][candidates[r] >= 0]
        best = np.sort(X[pool] @ X[i])[::-1][:6]
        got = ids[r][ids[r] >= 0]
        np.testing.assert_allclose(sims[r][: got.size], best, rtol=1e-5)
        np.testing.assert_allclose(sims[r][: got.size], X[got] @ X[i], rtol=1e-5)
        assert got.size == min(6, pool.size)
    assert (ids[1, 3:] == -1).all() and np.isneginf(sims[1, 3:]).all()


def test_rerank_orders_ties_and_signs_as_a_stable_sort():
    """Equal cosines keep the candidates' order, whatever their sign
    (zero included), as a stable argsort of the negated cosines."""
    from sklearn_ndde._knn_kernels import rerank

    X = np.zeros((7, 2), dtype=np.float32)
    X[0] = [1, 0]
    X[1:] = [[0, 1], [-1, 0], [0.6, 0.8], [0, -1], [0.6, -0.8], [-0.6, 0.8]]
    candidates = np.array([[1, 2, 3, 4, 5, 6, 0, -1]])
    sims, ids = rerank(X, np.array([0]), candidates, 8)
    cosines = X[candidates[0, :7]] @ X[0]
    order = np.argsort(-cosines, kind="stable")
    np.testing.assert_array_equal(ids[0, :7], candidates[0, order])
    np.testing.assert_array_equal(sims[0, :7], cosines[order])
    assert ids[0, 7] == -1 and np.isneginf(sims[0, 7])


def _widening_case(seed, m, n, k=10, found=0.0):
    """A graph of ``n`` rows whose ``m`` sample rows hold their exact lists
    (the other rows' cosines ``found``), the rows' closeness to their cell
    and a cell order: ``(rng, exact, closeness, sample, sims, order)``."""
    rng = np.random.default_rng(seed)
    exact = np.sort(rng.uniform(0.6, 0.9, (m, k)), axis=1)[:, ::-1]
    exact[:, 0] = 1.0
    closeness = rng.uniform(0.2, 0.9, n)
    sample = np.sort(rng.choice(n, m, replace=False))
    sims = np.full((n, k), found, dtype=np.float32)
    sims[:, 0] = 1.0
    sims[sample] = exact
    return rng, exact, closeness, sample, sims, rng.permutation(n)


def test_rows_to_widen_are_the_least_close_with_the_misses():
    from sklearn_ndde._knn import _rows_to_widen

    _, exact, closeness, sample, sims, order = _widening_case(0, 200, 1000)
    far = sample[closeness[sample] < 0.35]
    sims[far, 1:] = 0.0  # the sample's misses are all in its far rows
    rows = _rows_to_widen(order, closeness, sample, exact, sims, 0.5, 1.0)
    cutoff = closeness[rows].max()
    assert np.isin(far, rows).sum() >= 0.9 * far.size
    assert cutoff < 0.35
    np.testing.assert_array_equal(rows, order[closeness[order] <= cutoff])


def test_rows_to_widen_follow_the_shortfall():
    # The same misses under two targets: a sample just under its target
    # widens a few of the least close rows, one far under it most of them.
    from sklearn_ndde._knn import _rows_to_widen

    _, exact, closeness, sample, sims, order = _widening_case(1, 400, 4000)
    far = sample[closeness[sample] < 0.4]
    sims[far, 1:3] = 0.0  # two misses in each far sample row
    likely = (exact.shape[1] - 1) * sample.size
    reached = 1.0 - 2 * far.size / likely
    just_under = _rows_to_widen(
        order, closeness, sample, exact, sims, 0.5, reached + 0.001
    )
    far_under = _rows_to_widen(order, closeness, sample, exact, sims, 0.5, 1.0)
    # 3 times the misses needed: 3 * 0.001 * likely of 2 * far.size.
    needed = 3 * 0.001 * likely / (2 * far.size)
    assert 0 < just_under.size < far_under.size
    assert np.isin(far, just_under).mean() == pytest.approx(needed, abs=0.05)
    assert np.isin(far, far_under).mean() >= 0.9
    # The least close rows, in cell order, as before.
    cutoff = closeness[just_under].max()
    np.testing.assert_array_equal(just_under, order[closeness[order] <= cutoff])


def test_rows_to_widen_find_the_rows_with_no_likely_neighbour():
    # The misses are in rows that found none of their likely neighbours,
    # anywhere in the cells: those few rows are widened, not the least
    # close ones.
    from sklearn_ndde._knn import _rows_to_widen

    rng, exact, closeness, sample, sims, order = _widening_case(2, 400, 4000, found=0.7)
    # Five sample rows and about 35 others found no likely neighbour.
    lost = np.unique(np.concatenate([sample[::80], rng.choice(4000, 35)]))
    sims[lost, 1:] = 0.1
    rows = _rows_to_widen(order, closeness, sample, exact, sims, 0.5, 1.0)
    np.testing.assert_array_equal(np.sort(rows), np.sort(lost))
    np.testing.assert_array_equal(rows, order[np.isin(order, lost)])


def test_far_rows_pass_probes_cells_growing_as_the_root_of_the_cells():
    # 5 % of the cells at 584,013 faces; a fixed share would make the pass
    # grow as n^2 (8 % of the rows times a share of all rows).
    from sklearn_ndde._knn import _FIRST_PASS_ROOT, _far_cells, _ivf_lists

    nlists = [_ivf_lists(n, _FIRST_PASS_ROOT) for n in (584_013, 5_206_761)]
    cells = [_far_cells(nlist) for nlist in nlists]
    assert cells[0] == round(0.05 * nlists[0])
    assert cells[1] / cells[0] == pytest.approx(
        np.sqrt(nlists[1] / nlists[0]), rel=0.01
    )
    assert _far_cells(10) == 10 and _far_cells(20) == 16


def test_knn_graph_ivf_at_full_recall_is_the_exact_graph():
    X, _ = make_face_embeddings(3000, 150, dim=16, random_state=1)
    exact, exact_sims = knn_graph(X, 10, method="exact")
    approx, sims, reached = knn_graph(
        X, 10, method="ivf", recall=1.0, random_state=0, return_recall=True
    )
    assert reached == 1.0
    np.testing.assert_allclose(sims, exact_sims, atol=1e-6)


def test_knn_graph_recall_of_other_methods():
    X, _ = make_face_embeddings(2000, 100, dim=16, random_state=2)
    assert knn_graph(X, 10, method="exact", return_recall=True)[2] == 1.0
    approx, sims, reached = knn_graph(
        X, 10, method="pynndescent", random_state=0, return_recall=True
    )
    exact, exact_sims = knn_graph(X, 10, method="exact")
    assert abs(reached - _likely_recall(X, exact, exact_sims, sims)) < 0.02


def test_knn_graph_auto_is_ivf_above_the_exact_size(monkeypatch):
    import sklearn_ndde._knn as _knn

    calls = []
    real = _knn._ivf_knn

    def spy(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(_knn, "_ivf_knn", spy)
    monkeypatch.setattr(_knn, "EXACT_MAX_SAMPLES", 1000)
    X, _ = make_face_embeddings(2000, 100, dim=16, random_state=3)
    knn_graph(X, 10, recall=0.9, device="cpu")
    assert calls == [0.9]


@pytest.mark.parametrize("recall", [0, -0.5, 1.5])
def test_knn_graph_recall_out_of_range(recall):
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'recall'"):
        knn_graph(np.eye(3), 2, recall=recall)


@pytest.mark.parametrize(
    "X, n_neighbors, match",
    [
        (np.ones(5), 2, "2-D"),
        (np.ones((3, 2)), 4, "larger than the number of samples"),
        (np.array([[1.0, np.nan], [1.0, 2.0]]), 2, "NaN"),
        (np.array([[0.0, 0.0], [1.0, 2.0]]), 2, "zero vector"),
    ],
)
def test_knn_graph_bad_input(X, n_neighbors, match):
    with pytest.raises(ValueError, match=match):
        knn_graph(X, n_neighbors)


# ---------------------------------------------------------- transitions


def test_transition_matrix_hand_computed():
    indices = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    sims = np.array([[1.0, 0.5, 0.0], [1.0, 0.0, 0.5], [1.0, 1.0, 0.0]])
    P = transition_matrix(indices, sims, sigma=0.5, top=2).toarray()
    e = np.exp(1.0)  # exp(0.5 / 0.5) against exp(1 / 0.5): ratio e
    np.testing.assert_allclose(
        P,
        [
            [e / (1 + e), 1 / (1 + e), 0],
            [1 / (1 + e), e / (1 + e), 0],
            [0.5, 0, 0.5],
        ],
    )


def test_row_softmax_extreme_temperature_stays_finite():
    p = row_softmax(np.array([[1.0, 0.0, -1.0]]), sigma=1e-6)
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0]])


@given(graphs(), st.floats(0.01, 10))
def test_transition_rows_sum_to_one(graph, sigma):
    indices, sims = graph
    P = transition_matrix(indices, sims, sigma=sigma)
    np.testing.assert_allclose(np.asarray(P.sum(axis=1)).ravel(), 1.0)
    assert P.nnz == indices.size


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"sigma": 1.0, "top": 0}, ValueError, "top"),
    ],
)
def test_transition_matrix_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        transition_matrix(np.array([[0, 1], [1, 0]]), np.ones((2, 2)), **kwargs)


def test_transition_matrix_bad_arrays():
    with pytest.raises(ValueError, match="shape of indices"):
        transition_matrix(np.array([[0, 1], [1, 0]]), np.ones((2, 3)), sigma=1)
    with pytest.raises(ValueError, match="NaN"):
        transition_matrix(np.array([[0, 1], [1, 0]]), [[1, np.nan], [1, 1]], sigma=1)
    with pytest.raises(ValueError, match="lie in"):
        transition_matrix(np.array([[0, 5], [1, 0]]), np.ones((2, 2)), sigma=1)


# ---------------------------------------------------------------- NDDe


@given(graphs())
def test_one_step_density_sums_to_n(graph):
    indices, sims = graph
    rho = ndde_density(transition_matrix(indices, sims, sigma=0.5))
    assert rho.sum() == pytest.approx(len(rho))
    assert np.all(rho >= 0)


@given(st.lists(st.integers(1, 6), min_size=1, max_size=5), st.integers(0, 1000))
@settings(deadline=None)
def test_density_mean_is_one_in_closed_components(sizes, seed):
    """Clusters the walk never leaves keep mean density 1, whatever their size."""
    rng = np.random.default_rng(seed)
    blocks = [sp.csr_matrix(rng.random((m, m)) + 0.01) for m in sizes]
    P = sp.block_diag(blocks).tocsr()
    P = sp.diags(1 / np.asarray(P.sum(axis=1)).ravel()) @ P
    for n_iter in (1, 3, None):
        rho = ndde_density(P, n_iter=n_iter)
        _, comp = connected_components(P)
        for c in np.unique(comp):
            assert rho[comp == c].mean() == pytest.approx(1.0)


def test_iterated_density_converges_to_stationary():
    # Self-loops are dropped: 0 -> 1, 1 -> {0, 2}, 2 -> 1, whose stationary
    # distribution is (1/4, 1/2, 1/4), times n = 3.
    P = sp.csr_matrix(np.array([[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.0, 1.0, 0.0]]))
    rho = ndde_density(P, n_iter=None, tol=1e-12)
    np.testing.assert_allclose(rho, [0.75, 1.5, 0.75], atol=1e-9)


def test_iterated_density_warns_without_convergence():
    from sklearn.exceptions import ConvergenceWarning

    import sklearn_ndde._density as density_module

    # 0 -> 1 -> {0, 2} -> 1: without damping the walk oscillates forever.
    P = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]))
    old = density_module.MAX_ITER
    density_module.MAX_ITER = 2
    try:
        with pytest.warns(ConvergenceWarning, match="did not converge"):
            ndde_density(P, n_iter=None, damping=0.0, tol=1e-12)
    finally:
        density_module.MAX_ITER = old


def test_density_rejects_non_stochastic():
    with pytest.raises(ValueError, match="sum to 1"):
        ndde_density(sp.csr_matrix(np.ones((2, 2))))
    with pytest.raises(TypeError, match="sparse"):
        ndde_density(np.eye(2))


# ---------------------------------------------------------------- TPDi


def test_tpdi_hand_computed():
    Q = sp.csr_matrix(np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]))
    D = tpdi(Q, np.array([[0, 1], [1, 2], [2, 0]]))
    # rows 0 and 1 share column 1: 1 - sqrt(0.25); rows 1 and 2 share column 2
    expected = [[0.0, 0.5], [0.0, 1 - np.sqrt(0.5)], [0.0, 1.0]]
    np.testing.assert_allclose(D, expected, atol=1e-12)


@given(graphs(), st.floats(0.02, 2))
def test_tpdi_in_unit_interval_zero_on_self_and_symmetric(graph, sigma):
    indices, sims = graph
    Q = transition_matrix(indices, sims, sigma=sigma)
    D = tpdi(Q, indices)
    assert np.all((D >= 0) & (D <= 1))
    np.testing.assert_allclose(D[:, 0], 0.0, atol=1e-12)
    n = len(indices)
    full = tpdi(Q, np.tile(np.arange(n), (n, 1)))
    np.testing.assert_allclose(full, full.T, atol=1e-12)


@given(graphs(max_n=40), st.sampled_from([np.float32, np.float64]))
def test_tpdi_fast_path_matches_general_path(graph, dtype):
    """When Q lists exactly the pairs (as the estimator builds it), tpdi
    renumbers the rows and computes mutual pairs once; it must agree with
    the general path, which a column-sorted copy of Q takes."""
    indices, sims = graph
    order = np.argsort(-sims, axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, 1)
    sims = np.take_along_axis(sims, order, 1)
    Q = transition_matrix(indices, sims, sigma=0.05).astype(dtype)
    D = tpdi(Q, indices)
    assert D.dtype == dtype
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_tpdi, "_rows_are_pairs", lambda *args: False)
        general = tpdi(Q, indices)
    np.testing.assert_allclose(D, general, atol=1e-6, rtol=0)


@given(graphs(max_n=30), st.sampled_from([np.float32, np.float64]))
def test_mirror_mean_matches_reference(graph, dtype):
    """Each pair listed from both ends gets the mean of its two values; the
    others keep theirs."""
    from sklearn_ndde._kernels import mirror_mean

    indices, sims = graph
    values = sims.astype(dtype)
    out = mirror_mean(values, indices.astype(np.int64))
    assert out.dtype == dtype
    expected = values.copy()
    for i, row in enumerate(indices):
        for c, j in enumerate(row):
            back = np.flatnonzero(indices[j] == i)
            if back.size:
                expected[i, c] = (values[i, c] + values[j, back[0]]) / 2
    np.testing.assert_array_equal(out, expected)


def test_tpdi_fast_path_with_progress_slices(monkeypatch):
    """The rows split into slices for the progress bar give the same
    distances, mutual pairs included (a sample's partner in a later slice)."""
    rng = np.random.default_rng(3)
    indices, sims = random_graph(rng, 300, 12)
    order = np.argsort(-sims, axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, 1)
    sims = np.take_along_axis(sims, order, 1)
    Q = transition_matrix(indices, sims, sigma=0.05)
    whole = tpdi(Q, indices)
    calls = []
    kernel = _tpdi.tpdi_forward_pairs

    def spy(*args):
        calls.append(args[3:5])
        return kernel(*args)

    monkeypatch.setattr(_tpdi, "tpdi_forward_pairs", spy)
    monkeypatch.setattr(_tpdi, "_PROGRESS_STEP", 64)
    monkeypatch.setattr(_tpdi, "_MIN_STEP", 1)
    sliced = tpdi(Q, indices, verbose=True)
    assert calls == [(0, 64), (64, 128), (128, 192), (192, 256), (256, 300)]
    np.testing.assert_array_equal(sliced, whole)
    np.testing.assert_allclose(whole, tpdi(Q.sorted_indices(), indices), atol=1e-12)


# -------------------------------------------------------- density peaks


def test_density_peaks_ties_ordered_by_index_and_tau_exclusive():
    # Equal densities and equal neighbour densities: the smaller index
    # counts as denser, so sample 0 is the root and nobody links "up" to an
    # equal that links back.
    density = np.array([1.0, 1.0, 1.0])
    indices = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    distances = np.array([[0, 0.3, 0.5], [0, 0.3, 0.7], [0, 0.7, 0.5]])
    labels, parents = density_peaks(density, indices, distances, tau=0.7)
    np.testing.assert_array_equal(parents, [-1, 0, 0])
    np.testing.assert_array_equal(labels, [0, 0, 0])
    labels, parents = density_peaks(density, indices, distances, tau=0.5)
    np.testing.assert_array_equal(parents, [-1, 0, -1])
    np.testing.assert_array_equal(labels, [0, 0, 1])


def _roots_per_component(labels, parents):
    return np.bincount(labels[parents < 0], minlength=labels.max() + 1)


@pytest.mark.parametrize("seed", range(10))
def test_density_peaks_every_cluster_has_one_root_under_ties(seed):
    # Densities from a handful of values and mutual zero distances: the
    # case "rho_j >= rho_i" turns into rootless two-cycles.
    rng = np.random.default_rng(seed)
    n, k = 200, 8
    indices, _ = random_graph(rng, n, k)
    density = rng.integers(0, 3, size=n).astype(float)
    distances = np.zeros((n, k))
    labels, parents = density_peaks(density, indices, distances, tau=0.5)
    np.testing.assert_array_equal(_roots_per_component(labels, parents), 1)
    rank = density_rank(density, indices)
    linked = parents >= 0
    assert (rank[parents[linked]] > rank[linked]).all()


def test_estimator_duplicated_rows_leave_no_rootless_cluster():
    # Exact copies saturate the similarity and tie the densities.
    X, _ = make_face_embeddings(300, 30, dim=16, random_state=0)
    X = np.vstack([X, X[:100]])
    est = NDDeTPDiClustering(k=15).fit(X)
    components = components_from_parents(est.parents_)
    roots = np.bincount(components[est.parents_ < 0], minlength=components.max() + 1)
    np.testing.assert_array_equal(roots, 1)


def test_density_peaks_bad_input():
    with pytest.raises(ValueError, match="density must have shape"):
        density_peaks(np.ones(3), np.zeros((2, 2), int), np.zeros((2, 2)), tau=0.5)
    with pytest.raises(ValueError, match="tau"):
        density_peaks(np.ones(2), np.zeros((2, 2), int), np.zeros((2, 2)), tau=0)


# ----------------------------------------------- slow per-point reference


def reference_steps_3_to_7(indices, sims, tau, density_k=20, s1=0.5, s2=0.05):
    """Steps 3-7 of the method, one point at a time, in plain Python."""
    n, k = len(indices), len(indices[0])
    order = [sorted(range(k), key=lambda c: -sims[i][c]) for i in range(n)]
    nbrs = [[int(indices[i][c]) for c in order[i]] for i in range(n)]
    s = [[float(sims[i][c]) for c in order[i]] for i in range(n)]

    def softmax(row, sigma):
        m = max(row)
        e = [np.exp((v - m) / sigma) for v in row]
        return [v / sum(e) for v in e]

    rho = [0.0] * n
    for i in range(n):
        top = min(density_k, k)
        for j, p in zip(nbrs[i][:top], softmax(s[i][:top], s1)):
            rho[j] += p
    q = [dict(zip(nbrs[i], softmax(s[i], s2))) for i in range(n)]
    dist = [
        [1 - sum(np.sqrt(q[i][m] * q[j].get(m, 0.0)) for m in q[i]) for j in nbrs[i]]
        for i in range(n)
    ]
    parent = [-1] * n
    around = [sum(rho[j] for j in nbrs[i]) for i in range(n)]
    for i in range(n):
        for c in sorted(range(k), key=lambda c: dist[i][c]):
            j = nbrs[i][c]
            if (rho[j], around[j], -j) > (rho[i], around[i], -i):
                if dist[i][c] < tau:
                    parent[i] = j
                break
    # union-find over the links
    root = list(range(n))

    def find(a):
        while root[a] != a:
            a = root[a]
        return a

    for i in range(n):
        if parent[i] >= 0:
            root[find(i)] = find(parent[i])
    return [find(i) for i in range(n)], rho, dist, nbrs


@pytest.mark.parametrize("seed", range(20))
def test_fast_path_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 60)), int(rng.integers(2, 30))
    k = min(k, n)
    # Sharpened similarities make many links; random ones break ties.
    indices, sims = random_graph(rng, n, k)
    sims = sims**3
    tau = float(rng.uniform(0.3, 1.0))
    ref_roots, ref_rho, ref_dist, ref_nbrs = reference_steps_3_to_7(indices, sims, tau)

    order = np.argsort(-sims, axis=1, kind="stable")
    idx = np.take_along_axis(indices, order, 1)
    s = np.take_along_axis(sims, order, 1)
    np.testing.assert_array_equal(idx, ref_nbrs)
    rho = ndde_density(transition_matrix(idx, s, sigma=0.5, top=20))
    D = tpdi(transition_matrix(idx, s, sigma=0.05), idx)
    labels, _ = density_peaks(rho, idx, D, tau=tau)
    np.testing.assert_allclose(rho, ref_rho, rtol=1e-10)
    np.testing.assert_allclose(D, ref_dist, atol=1e-10)
    # Same partition, exactly.
    _, ref_labels = np.unique(ref_roots, return_inverse=True)
    pairs_ref = ref_labels[:, None] == ref_labels[None, :]
    pairs = labels[:, None] == labels[None, :]
    np.testing.assert_array_equal(pairs, pairs_ref)


def test_knn_graph_repairs_pynndescent_placeholders(monkeypatch):
    """Rows where pynndescent left -1 (or missed the point itself) are redone."""
    import pynndescent

    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 6))

    class Stub:
        def __init__(self, data, n_neighbors, **kwargs):
            exact, _ = knn_graph(data, n_neighbors, method="exact")
            exact = exact.astype(np.int64)
            exact[::7, 3:] = -1  # short rows
            exact[1::7, :2] = exact[1::7, 1::-1]  # self second
            self.neighbor_graph = (exact, np.zeros(exact.shape))

    monkeypatch.setattr(pynndescent, "NNDescent", Stub)
    indices, sims = knn_graph(X, 10, method="pynndescent", random_state=0)
    expected, expected_sims = knn_graph(X, 10, method="exact")
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-6)


def test_exact_search_as_torch_products_matches_numpy():
    torch = pytest.importorskip("torch")
    from sklearn_ndde._knn import _exact_knn, _exact_knn_torch, _sort_rows

    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 24)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    numpy_graph = _sort_rows(*_exact_knn(X, 15))
    torch_graph = _sort_rows(*_exact_knn_torch(X, 15, device))
    np.testing.assert_array_equal(torch_graph[0], numpy_graph[0])
    np.testing.assert_allclose(torch_graph[1], numpy_graph[1], atol=1e-5)


def test_exact_search_through_faiss_matches_numpy():
    faiss = pytest.importorskip("faiss")
    from sklearn_ndde._knn import (
        _exact_knn_faiss,
        _exact_knn_numpy,
        _sort_rows,
        exact_knn_to,
    )

    rng = np.random.default_rng(1)
    X = rng.standard_normal((900, 24)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[850:] = X[0]  # 50 copies of one row, more than k: the row stays in its list
    rows = np.arange(0, 900, 7)
    numpy_graph = _sort_rows(*_exact_knn_numpy(X, 15))
    faiss_graph = _sort_rows(*_exact_knn_faiss(faiss, X, 15, None, False, 1))
    # Which of the 51 equal rows fills a list is a tie: compare the others.
    copies = np.r_[0, 850:900]
    untied = ~np.isin(numpy_graph[0], copies).any(axis=1)
    assert untied.sum() > 700
    np.testing.assert_array_equal(faiss_graph[0][untied], numpy_graph[0][untied])
    np.testing.assert_allclose(faiss_graph[1], numpy_graph[1], atol=1e-5)
    np.testing.assert_array_equal(faiss_graph[0][:, 0], np.arange(900))
    part = _exact_knn_faiss(faiss, X, 15, rows, False, None)[0]
    assert (part == rows[:, None]).any(axis=1).all()
    # predict's search: the same nearest rows as a full sort.
    Q = rng.standard_normal((40, 24)).astype(np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    expected = np.argsort(-(Q @ X[:850].T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(exact_knn_to(Q, X[:850], 10), expected)


@pytest.mark.parametrize(
    "device, match",
    [("cuda", "CUDA is not available"), ("tpu-nine", "not a torch device")],
)
def test_knn_graph_device_errors(device, match):
    torch = pytest.importorskip("torch")
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match=match):
        knn_graph(np.eye(5) + 0.1, 3, device=device)
    labels_cpu = knn_graph(np.eye(5) + 0.1, 3, device="cpu")[0]
    np.testing.assert_array_equal(labels_cpu[:, 0], np.arange(5))


# ------------------------------------------------ link_saturated_peaks


class _Cosine:
    """Pair similarity: the clipped cosine, whatever the context."""

    def pair_similarity(self, X, indices, Y=None):
        Y = X if Y is None else Y
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        return np.clip(np.einsum("id,ikd->ik", Xn, Yn[indices]), 0, 1)


def reference_link_saturated(
    parents, density, indices, sims, X, threshold, min_shared=0.1
):
    """link_saturated_peaks, one peak at a time, in plain Python."""
    parents = list(parents)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    n, k = indices.shape
    for i in range(n):
        row = [int(j) for j in indices[i]]
        others = [c for c in range(k) if row[c] != i]
        if parents[i] >= 0 or not others:
            continue
        if any(sims[i][c] < threshold for c in others):
            continue
        best, best_cos = -1, -np.inf
        for j in sorted({int(j) for m in row for j in indices[m]}):
            if density[j] > density[i] and float(Xn[i] @ Xn[j]) > best_cos:
                best, best_cos = j, float(Xn[i] @ Xn[j])
        shared = best >= 0 and len(set(row) & set(indices[best].tolist())) / k
        if best >= 0 and max(best_cos, 0.0) >= threshold and shared >= min_shared:
            parents[i] = best
    return np.array(parents)


@pytest.mark.parametrize("seed", range(10))
def test_link_saturated_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 50)), int(rng.integers(2, 12))
    k = min(k, n)
    indices, sims = random_graph(rng, n, k)
    sims = np.sqrt(sims)  # most rows saturated at threshold 0.3
    X = rng.normal(size=(n, 4)) + 2.0
    density = rng.random(n) * 2
    parents = np.where(rng.random(n) < 0.5, -1, rng.integers(0, n, n))
    expected = reference_link_saturated(parents, density, indices, sims, X, 0.3)
    labels, got = link_saturated_peaks(
        parents, density, indices, sims, X, _Cosine(), threshold=0.3
    )
    src = np.flatnonzero(got >= 0)
    links = sp.csr_matrix((np.ones(src.size), (src, got[src])), shape=(n, n))
    _, components = connected_components(links, connection="weak")
    same = components[:, None] == components[None, :]
    np.testing.assert_array_equal(labels[:, None] == labels[None, :], same)
    np.testing.assert_array_equal(got, expected)
    linked = got != parents
    assert (parents[linked] == -1).all()
    assert (density[got[linked]] > density[linked]).all()


@pytest.mark.parametrize("seed", range(5))
def test_link_saturated_with_cosines_matches_the_two_step_search(seed):
    # On an exact cosine kNN graph the one-step shortcut changes nothing.
    X, _ = make_face_embeddings(400, 20, dim=16, spread=(0.3, 0.9), random_state=seed)
    indices, cosines = knn_graph(X, 15, method="exact")
    rng = np.random.default_rng(seed)
    sims = np.ones_like(cosines)  # every row saturated
    density = rng.random(len(X))
    parents = np.full(len(X), -1)
    full = link_saturated_peaks(
        parents, density, indices, sims, X, _Cosine(), threshold=0.3
    )
    fast = link_saturated_peaks(
        parents, density, indices, sims, X, _Cosine(), threshold=0.3, cosines=cosines
    )
    np.testing.assert_array_equal(fast[1], full[1])
    assert (full[1] >= 0).sum() > 100


def test_link_saturated_leaves_unsaturated_peaks_and_links_alone():
    indices = np.array([[0, 1], [1, 0], [2, 0]])
    sims = np.array([[1.0, 0.4], [1.0, 0.9], [1.0, 0.9]])
    X = np.eye(3) + 1.0
    density = np.array([0.5, 1.0, 1.5])
    parents = np.array([-1, -1, 1])
    _, out = link_saturated_peaks(parents, density, indices, sims, X, _Cosine())
    # 0 is not saturated (0.4 < 0.5); 1 is, but nothing is denser two steps away
    # except 2, which is not in reach (1 -> 0 -> 1); 2 keeps its link.
    np.testing.assert_array_equal(out, parents)
    assert out is not parents


def test_saturated_links_keep_only_the_links_a_second_calibration_confirms():
    """With ``confirm``, a saturated peak keeps its link only when that
    calibration too maps the pair's cosine to at least the threshold: the
    links without it, less those it refuses, the rest unchanged."""
    from sklearn_ndde._peaks import saturated_links

    class Step:
        def __init__(self, at):
            self.at = at

        def calibrate(self, cosines):
            return (np.asarray(cosines) >= self.at).astype(np.float64)

    X, _ = make_face_embeddings(400, 20, dim=16, spread=(0.3, 0.9), random_state=0)
    indices, cosines = knn_graph(X, 15, method="exact")
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    rank = np.random.default_rng(0).permutation(len(X)).astype(np.int64)

    def links(confirm):
        return saturated_links(
            np.full(len(X), -1),
            indices,
            np.ones_like(cosines),  # every row saturated
            X,
            Step(-1.0),  # every link accepted
            rank,
            cosines=cosines,
            confirm=confirm,
        )

    every = links(None)
    linked = np.flatnonzero(every >= 0)
    cosine = np.einsum("id,id->i", Xn[linked], Xn[every[linked]])
    at = float(np.median(cosine))
    expected = every.copy()
    expected[linked[cosine < at - 1e-4]] = -1
    got = links(Step(at))
    near = np.abs(cosine - at) <= 1e-4  # the list's cosine may round apart
    keep = np.ones(len(X), dtype=bool)
    keep[linked[near]] = False
    np.testing.assert_array_equal(got[keep], expected[keep])
    assert 0 < (got >= 0).sum() < linked.size
    np.testing.assert_array_equal(links(Step(-1.0)), every)


def test_links_with_flow_back_refuses_one_way_links_between_clusters():
    """A new link between two clusters stays when the target's samples list
    the source's samples as likely at least once per source sample; a lone
    sample's link and links inside a cluster always stay; old links stay;
    the counts are asked for only where such a link exists, and only for
    the target clusters' rows."""
    from sklearn_ndde._merge import likely_counts, links_with_flow_back

    # Clusters: 0 = {0, 1}, 1 = {2, 3, 4}, 2 = {5} (alone), 3 = {6, 7}.
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    before = np.array([-1, 0, -1, 2, 2, -1, -1, 6])
    linked = np.array([2, 0, -1, 2, 2, 3, 2, 6])  # new: 0 -> 2, 5 -> 3, 6 -> 2
    # Likely pairs: 2 -> 0 and 3 -> 1 (cluster 1 lists cluster 0 twice),
    # 4 -> 6 (cluster 1 lists cluster 3 once, which has two samples).
    indices = np.array([[0, 1], [1, 0], [2, 0], [3, 1], [4, 6], [5, 5], [6, 7], [7, 6]])
    sims = np.array([[1, 0.9], [1, 0.9], [1, 0.6], [1, 0.7], [1, 0.5], [1, 1],
                     [1, 0.9], [1, 0.9]])  # fmt: skip
    asked = []

    def counts_of(targets):
        asked.append(np.flatnonzero(targets))
        return likely_counts(indices, sims, labels, 4, targets)

    out = links_with_flow_back(linked, before, labels, counts_of)
    np.testing.assert_array_equal(out, [2, 0, -1, 2, 2, 3, -1, 6])
    assert out is not linked
    np.testing.assert_array_equal(asked[0], [1])
    counts = counts_of(np.ones(4, dtype=bool))
    assert counts[1, 0] == 2 and counts[1, 3] == 1 and counts[0, 1] == 0
    # Only the rows of the target clusters are read.
    only = counts_of(np.array([True, False, False, False])).toarray()
    assert only[0, 0] == 4 and only[1:].sum() == 0
    # Below 0.5 a pair is not a likely match: cluster 0 loses its flow back.
    sims[2, 1] = sims[3, 1] = 0.49
    out = links_with_flow_back(linked, before, labels, counts_of)
    np.testing.assert_array_equal(out, [-1, 0, -1, 2, 2, 3, -1, 6])
    # No link between clusters of two or more: the counts are not asked for.
    asked.clear()
    out = links_with_flow_back(
        np.array([1, 0, -1, 2, 2, 3, -1, 6]), before, labels, counts_of
    )
    assert not asked


def test_link_saturated_bad_shapes():
    indices = np.array([[0, 1], [1, 0]])
    sims = np.ones((2, 2))
    with pytest.raises(ValueError, match="density must have shape"):
        link_saturated_peaks([-1, -1], [1.0], indices, sims, np.eye(2), _Cosine())
    with pytest.raises(ValueError, match="X must have shape"):
        link_saturated_peaks([-1, -1], [1.0, 2.0], indices, sims, np.eye(3), _Cosine())
    with pytest.raises(ValueError, match="parents must have shape"):
        link_saturated_peaks([-1], [1.0, 2.0], indices, sims, np.eye(2), _Cosine())


# ------------------------------------------------------------ flow merge


def test_merge_by_flow_joins_a_fragment_not_a_lone_face():
    # {0, 1, 2} is one cluster. Sample 3 sends all its flow there and gets
    # 0.3 back from each member: a fragment, merged. Sample 4 also sends all
    # its flow there but gets nothing back: a lone face beside it, kept.
    P = sp.csr_matrix(
        np.array(
            [
                [0.4, 0.2, 0.1, 0.3, 0.0],
                [0.2, 0.4, 0.1, 0.3, 0.0],
                [0.1, 0.2, 0.4, 0.3, 0.0],
                [0.4, 0.3, 0.3, 0.0, 0.0],
                [0.4, 0.3, 0.3, 0.0, 0.0],
            ]
        )
    )
    parents = np.array([-1, 0, 0, -1, -1])
    labels, merged = merge_by_flow(parents, P)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(merged, [-1, 0, 0, 0, -1])
    # Only above the threshold: sqrt(1.0 * 0.9) / 1 = 0.95.
    labels, _ = merge_by_flow(parents, P, threshold=0.96)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 2])


def test_merge_by_flow_merges_only_connected_clusters():
    # {0, 1} and {2, 3} exchange flow both ways; sample 4 is a fragment of
    # {2, 3}. Each merge needs a stored non-zero pair between the clusters.
    P = sp.csr_matrix(
        np.array(
            [
                [0.5, 0.3, 0.2, 0.0, 0.0],
                [0.3, 0.5, 0.0, 0.2, 0.0],
                [0.2, 0.0, 0.4, 0.2, 0.2],
                [0.0, 0.2, 0.2, 0.4, 0.2],
                [0.0, 0.0, 0.5, 0.5, 0.0],
            ]
        )
    )
    parents = np.array([-1, 0, -1, 2, -1])

    def connect(pairs, values=None, n=5):
        rows, cols = np.array(pairs).T
        values = np.ones(len(pairs)) if values is None else np.array(values)
        return sp.csr_matrix((values, (rows, cols)), shape=(n, n))

    free, _ = merge_by_flow(parents, P, threshold=0.1)
    np.testing.assert_array_equal(free, [0, 0, 0, 0, 0])
    # 4 is connected to 3 (listed the other way round), 0 to nobody.
    labels, merged = merge_by_flow(
        parents, P, threshold=0.1, connectivity=connect([(3, 4)])
    )
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(merged, [-1, 0, -1, 2, 2])
    # A stored zero connects nothing; a pair across does, through merges.
    explicit_zero = connect([(3, 4), (0, 2)], values=[1.0, 0.0])
    assert explicit_zero.nnz == 2
    labels, _ = merge_by_flow(parents, P, threshold=0.1, connectivity=explicit_zero)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1])
    labels, _ = merge_by_flow(
        parents, P, threshold=0.1, connectivity=connect([(3, 4), (4, 1)])
    )
    np.testing.assert_array_equal(labels, free)
    with pytest.raises(ValueError, match=r"connectivity must have shape \(5, 5\)"):
        merge_by_flow(parents, P, connectivity=sp.identity(4, format="csr"))
    with pytest.raises(ValueError, match="connectivity"):
        merge_by_flow(parents, P, connectivity=np.ones((5, 5)))


@pytest.mark.parametrize("seed", range(10))
def test_merge_by_flow_keeps_a_forest_and_only_merges(seed):
    rng = np.random.default_rng(seed)
    n, k = 150, 10
    indices, sims = random_graph(rng, n, k)
    P = transition_matrix(indices, sims**4, sigma=0.1)
    density = ndde_density(P)
    before, parents = density_peaks(density, indices, rng.random((n, k)), tau=0.5)
    labels, merged = merge_by_flow(parents, P, threshold=0.05)
    np.testing.assert_array_equal(_roots_per_component(labels, merged), 1)
    # Links are only added, at roots; every old cluster lies inside a new one.
    np.testing.assert_array_equal(merged[parents >= 0], parents[parents >= 0])
    together = before[:, None] == before[None, :]
    assert (labels[:, None] == labels[None, :])[together].all()
    assert labels.max() < before.max()


def test_merge_by_flow_does_not_depend_on_sample_order():
    X, _ = make_face_embeddings(400, 40, dim=16, spread=(0.6, 1.0), random_state=3)
    perm = np.random.default_rng(0).permutation(len(X))
    a = NDDeTPDiClustering(k=20).fit_predict(X)
    b = NDDeTPDiClustering(k=20).fit_predict(X[perm])
    a = a[perm]
    assert np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


def _lone_group_graph(n_group, seed=0):
    """40 samples in one cluster (0-39, rooted at 0), ``n_group`` lone
    samples whose 20 listed neighbours are among themselves, and 20 lone
    samples whose lists point into the cluster."""
    rng = np.random.default_rng(seed)
    group = np.arange(40, 40 + n_group)
    n = 40 + n_group + 20
    lists = np.empty((n, 21), dtype=np.int64)
    for i in range(n):
        if 40 <= i < 40 + n_group:
            pool = group[group != i]
        else:
            pool = np.arange(40)
            pool = pool[pool != i]
        lists[i] = np.concatenate([[i], rng.choice(pool, 20, replace=False)])
    parents = np.full(n, -1)
    parents[1:40] = 0
    return parents, lists


def test_closed_groups_join_lone_samples_that_list_one_another():
    from sklearn_ndde._groups import closed_group_links, small_cluster_rows
    from sklearn_ndde._peaks import components_from_parents

    parents, lists = _lone_group_graph(40)
    n = parents.size
    labels = components_from_parents(parents)
    rows = small_cluster_rows(labels)
    assert rows.tolist() == list(range(40, n))
    rank = np.arange(n)
    out = closed_group_links(parents.copy(), labels, rank, rows, lists[rows])
    new = components_from_parents(out)
    # The 40 that list one another are one cluster, rooted at the densest.
    assert np.unique(new[40:80]).size == 1
    assert out[79] == -1 and (out[40:79] == 79).all()
    # Those whose lists point into the cluster stay alone; the cluster too.
    assert np.unique(new[80:]).size == 20
    assert (out[:40] == parents[:40]).all()
    assert (out < 0).sum() == 1 + 1 + 20


def test_closed_groups_are_at_most_half_and_keep_their_lists():
    from sklearn_ndde._groups import closed_group_links, small_cluster_rows
    from sklearn_ndde._peaks import components_from_parents

    # 100 of 160 samples: more than half.
    parents, lists = _lone_group_graph(100)
    labels = components_from_parents(parents)
    rows = small_cluster_rows(labels)
    out = closed_group_links(
        parents.copy(), labels, np.arange(parents.size), rows, lists[rows]
    )
    assert (out == parents).all()
    # Lists of 9 other samples are too short to show a group.
    parents, lists = _lone_group_graph(40)
    labels = components_from_parents(parents)
    rows = small_cluster_rows(labels)
    out = closed_group_links(
        parents.copy(), labels, np.arange(parents.size), rows, lists[rows, :10]
    )
    assert (out == parents).all()
    # A group whose lists leave it (half of each list outside) is not closed.
    parents, lists = _lone_group_graph(40)
    lists[40:80, 11:] = np.arange(10)
    labels = components_from_parents(parents)
    rows = small_cluster_rows(labels)
    out = closed_group_links(
        parents.copy(), labels, np.arange(parents.size), rows, lists[rows]
    )
    assert (out == parents).all()


def test_closed_groups_split_a_chain_of_two_people():
    """Two groups of 40 lone samples that each list only themselves, but
    with one mutual pair between them: the chain holds more than half of
    the samples, so label propagation splits it and each half joins."""
    from sklearn_ndde._groups import closed_group_links, small_cluster_rows
    from sklearn_ndde._peaks import components_from_parents

    rng = np.random.default_rng(0)
    n = 120
    lists = np.empty((n, 21), dtype=np.int64)
    for i in range(n):
        start = 0 if i < 40 else (40 if i < 80 else 80)
        pool = np.arange(start, start + 40)
        lists[i] = np.concatenate([[i], rng.choice(pool[pool != i], 20, replace=False)])
    lists[40, 20], lists[80, 20] = 80, 40  # the one link between the two
    parents = np.full(n, -1)
    parents[1:40] = 0
    labels = components_from_parents(parents)
    rows = small_cluster_rows(labels)
    out = closed_group_links(parents.copy(), labels, np.arange(n), rows, lists[rows])
    new = components_from_parents(out)
    assert np.unique(new[40:80]).size == 1 and np.unique(new[80:]).size == 1
    assert new[40] != new[80] and (out[:40] == parents[:40]).all()


def test_merge_by_flow_bad_input():
    P = sp.identity(3, format="csr")
    with pytest.raises(ValueError, match="parents must have shape"):
        merge_by_flow(np.full(2, -1), P)
    with pytest.raises(ValueError, match="forest"):
        merge_by_flow(np.array([1, 0, -1]), P)
    with pytest.raises(ValueError, match=r"ids in \[0, 3\)"):
        merge_by_flow(np.array([5, -1, -1]), P)
    with pytest.raises(ValueError, match="threshold"):
        merge_by_flow(np.full(3, -1), P, threshold=0)


def test_knn_graph_auto_is_pynndescent_without_faiss(monkeypatch):
    import sklearn_ndde._knn as _knn

    monkeypatch.setattr(_knn, "EXACT_MAX_SAMPLES", 100)
    monkeypatch.setattr(_knn, "_faiss", lambda: None)
    monkeypatch.setattr(_knn, "_ivf_knn", lambda *a: pytest.fail("IVF without faiss"))
    X, _ = make_face_embeddings(1000, 50, dim=16, random_state=3)
    indices, _, reached = knn_graph(
        X, 10, random_state=0, device="cpu", return_recall=True
    )
    exact, _ = knn_graph(X, 10, method="exact")
    assert reached > 0.9 and _true_recall(exact, indices) > 0.9


def test_ivf_search_says_each_part_and_both_recalls_with_verbose(capfd):
    X, _ = make_face_embeddings(6000, 300, dim=32, random_state=0)
    knn_graph(X, 20, method="ivf", recall=0.9, random_state=0, verbose=True)
    err = capfd.readouterr().err
    assert "cells trained on" in err and "6,000 rows searched" in err
    assert "likely neighbours (cosine >= " in err and "of all 20" in err
