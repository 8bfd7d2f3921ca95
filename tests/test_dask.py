"""The Dask path on a ``distributed.LocalCluster`` of 2 single-threaded
worker processes: the same results as the numpy path."""

import subprocess
import sys

import numpy as np
import pytest

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.datasets import make_face_embeddings

pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="1GiB",
        dashboard_address=None,
    )
    with cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def faces():
    X, y = make_face_embeddings(3000, 100, dim=64, random_state=0)
    return X.astype(np.float32), y


def _same_graph(dask_result, numpy_result):
    di, ds = (np.asarray(a) for a in dask_result)
    ni, ns = numpy_result
    assert di.dtype == np.int32 and ds.dtype == np.float32
    np.testing.assert_allclose(ds, ns, atol=1e-6)
    # Ids agree except between neighbours of equal cosine.
    differ = di != ni
    np.testing.assert_allclose(ds[differ], ns[differ], atol=1e-6)
    assert differ.mean() < 1e-3


def test_exact_graph_matches_numpy(client, faces):
    X, _ = faces
    dX = da.from_array(X, chunks=(700, 64))
    indices, sims = knn_graph(dX, 30)
    assert isinstance(indices, da.Array) and indices.chunks[0] == dX.chunks[0]
    _same_graph(da.compute(indices, sims), knn_graph(X, 30, method="exact"))


def test_feature_chunks_and_recall(client, faces):
    """Chunks across the features are joined; the exact search reports 1.0."""
    X, _ = faces
    dX = da.from_array(X, chunks=(1000, 16))
    indices, sims, recall = knn_graph(dX, 10, return_recall=True)
    assert recall == 1.0
    _same_graph(da.compute(indices, sims), knn_graph(X, 10, method="exact"))


def test_bad_dask_input_names_the_row(client, faces):
    X, _ = faces
    bad = X.copy()
    bad[1234] = 0.0
    # Checked on the workers before any search starts.
    with pytest.raises(ValueError, match="first at row 1234"):
        knn_graph(da.from_array(bad, chunks=(500, 64)), 5)
    bad[1234] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity .first at row 1234"):
        knn_graph(da.from_array(bad, chunks=(500, 64)), 5)[0].compute()
    with pytest.raises(ValueError, match="not available for a dask array"):
        knn_graph(da.from_array(X, chunks=(500, 64)), 5, method="pynndescent")
    with pytest.raises(ValueError, match="larger than the number of samples"):
        knn_graph(da.from_array(X[:4], chunks=(2, 64)), 5)


def test_numpy_input_does_not_import_dask():
    code = (
        "import sys, numpy as np\n"
        "from sklearn_ndde import NDDeTPDiClustering, knn_graph\n"
        "X = np.random.default_rng(0).standard_normal((200, 8))\n"
        "knn_graph(X, 5)\n"
        "NDDeTPDiClustering(k=10).fit(X)\n"
        "print('dask' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------ the estimator


def _fit_both(X, chunks, **params):
    from sklearn_ndde import NDDeTPDiClustering

    ref = NDDeTPDiClustering(**params).fit(X)
    est = NDDeTPDiClustering(**params).fit(da.from_array(X, chunks=(chunks, -1)))
    return ref, est


def _assert_same_clustering(ref, est):
    from sklearn.metrics import adjusted_rand_score

    from sklearn_ndde._peaks import components_from_parents

    labels = est.labels_.compute()
    assert isinstance(est.labels_, da.Array) and isinstance(est.density_, da.Array)
    assert adjusted_rand_score(ref.labels_, labels) == 1.0
    assert est.n_clusters_ == ref.n_clusters_
    same_rows = (est.neighbors_.compute() == ref.neighbors_).all(axis=1)
    assert same_rows.mean() > 0.98  # the rest differ by neighbours of equal cosine
    np.testing.assert_allclose(est.density_.compute(), ref.density_, atol=1e-4)
    np.testing.assert_allclose(
        est.tpdi_.compute()[same_rows], ref.tpdi_[same_rows], atol=1e-3
    )
    np.testing.assert_allclose(
        est.pair_similarities_.compute()[same_rows],
        ref.pair_similarities_[same_rows],
        atol=1e-4,
    )
    # The links may name another member of the same cluster where lists
    # tie; they make the same components.
    parents = est.parents_.compute()
    assert (
        adjusted_rand_score(ref.labels_, components_from_parents(parents)) == 1.0
        or (parents == ref.parents_).mean() > 0.98
    )
    assert est.knn_recall_ == ref.knn_recall_ == 1.0
    assert est.n_features_in_ == ref.n_features_in_
    # The calibration sees the same cosines up to the blocks' float rounding
    # (in 64 dimensions that moves the curve by up to 3e-5).
    np.testing.assert_allclose(
        est.similarity_.curve_, ref.similarity_.curve_, atol=1e-4
    )
    # And the calibration of the second merge, refitted to the first
    # clustering, sees the same pairs split the same way (a pair at a bin's
    # edge may move by float rounding: one pair of a few hundred in a bin).
    assert (est.merge_calibration_ is None) == (ref.merge_calibration_ is None)
    if ref.merge_calibration_ is not None:
        np.testing.assert_allclose(
            est.merge_calibration_.curve_, ref.merge_calibration_.curve_, atol=2e-3
        )
    # Every fitted attribute of the numpy path is compared above.
    compared = {
        "labels_", "n_clusters_", "neighbors_", "density_", "tpdi_",
        "pair_similarities_", "parents_", "knn_recall_", "n_features_in_",
        "similarity_", "merge_calibration_",
    }  # fmt: skip
    fitted = {a for a in vars(ref) if a.endswith("_") and not a.startswith("_")}
    assert fitted == compared


def test_fit_gives_the_numpy_partition_on_20000_faces(client):
    """Saturated peaks and the flow merge at work (k = 20, identities of
    up to a few hundred faces): the same partition as the numpy path."""
    X, _ = make_face_embeddings(20000, 294, dim=64, random_state=0)
    ref, est = _fit_both(X.astype(np.float32), 2500, k=20)
    no_steps = type(ref)(k=20, link_saturated=False, merge_threshold=None)
    assert no_steps.fit(X.astype(np.float32)).n_clusters_ > 1.5 * ref.n_clusters_
    _assert_same_clustering(ref, est)
    assert est.labels_.chunks == ((2500,) * 8,)
    labels = est.fit_predict(da.from_array(X.astype(np.float32), chunks=(2500, -1)))
    assert isinstance(labels, da.Array)


def test_fit_gives_the_numpy_partition_on_lfw(client):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/data/lfw_mobileface256.npz"
    if not path.exists():
        pytest.skip("../shared/data is not here")
    X = np.load(path)["features"].astype(np.float32)
    ref, est = _fit_both(X, 3000)
    _assert_same_clustering(ref, est)
    assert ref.merge_calibration_ is not None


@pytest.mark.parametrize(
    "min_faces, one, other",
    [(40, "Jean_Chretien", "Ariel_Sharon"), (20, "Tom_Ridge", "George_W_Bush")],
)
def test_fit_gives_the_numpy_partition_where_a_link_is_refused(
    client, min_faces, one, other
):
    """LFW MobileFaceNet, the people of both splits with at least 40 (20)
    faces: in the second pass a saturated link needs both calibrations
    (refused: a peak of Jean Chretien's to a face of Ariel Sharon's) and,
    between two clusters, flow back (refused: Tom Ridge's to George W.
    Bush's); both paths refuse them alike."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/data/lfw_mobileface256.npz"
    if not path.exists():
        pytest.skip("../shared/data is not here")
    data = np.load(path)
    ids, counts = np.unique(data["labels"], return_counts=True)
    rows = np.flatnonzero(np.isin(data["labels"], ids[counts >= min_faces]))
    X, y = data["features"][rows].astype(np.float32), data["labels"][rows]
    ref, est = _fit_both(X, 500)
    _assert_same_clustering(ref, est)
    names = list(data["identity_names"])
    labels = ref.labels_
    main = [np.bincount(labels[y == names.index(p)]).argmax() for p in (one, other)]
    assert main[0] != main[1]


@pytest.mark.parametrize("dim", [128, 64])
def test_fit_gives_the_numpy_partition_where_closed_groups_join(client, dim):
    """Sparse people of hundreds of faces, left as lone faces by the merges
    and joined as closed groups (in 64 dimensions, after label propagation
    splits the lone faces of 8 people): the same partition on both paths."""
    from sklearn_ndde.metrics import bcubed_fscore

    X, y = make_face_embeddings(
        3000, 12, dim=dim, size_sigma=1.0, spread=(0.8, 1.6), random_state=3
    )
    ref, est = _fit_both(X.astype(np.float32), 750)
    # 0.48 and 0.41 without the closed groups (thousands of lone faces).
    assert bcubed_fscore(y, ref.labels_) > 0.9
    _assert_same_clustering(ref, est)


def test_fit_refuses_what_does_not_run_on_dask_yet(client, faces):
    from sklearn_ndde import NDDeTPDiClustering

    dX = da.from_array(faces[0], chunks=(1000, -1))
    with pytest.raises(
        ValueError, match="not knn_method='pynndescent', density_iter=3"
    ):
        NDDeTPDiClustering(knn_method="pynndescent", density_iter=3).fit(dX)
    with pytest.warns(
        UserWarning, match="k=80 is larger than the number of samples"
    ) as warned:
        NDDeTPDiClustering().fit(da.from_array(faces[0][:50], chunks=(25, -1)))
    assert __file__ in [r.filename for r in warned]


def test_ivf_search_holds_its_recall_target(client):
    """The approximate search on the cluster: cells trained on a sample, a
    filled index per block, nprobe widened until the target holds; an
    independent sample of rows confirms the recall it reports."""
    from sklearn_ndde._knn import _exact_knn, _likely_cosine, _recall_of_likely

    X, _ = make_face_embeddings(40000, 588, dim=32, random_state=1)
    X = X.astype(np.float32)
    dX = da.from_array(X, chunks=(10000, -1))
    indices, sims, reached = knn_graph(
        dX, 20, method="ivf", recall=0.9, random_state=0, return_recall=True
    )
    indices, sims = (np.asarray(a) for a in da.compute(indices, sims))
    assert reached >= 0.9
    assert (indices[:, 0] == np.arange(len(X))).all()
    assert np.all(np.diff(sims[:, 1:], axis=1) <= 1e-6)
    rows = np.sort(np.random.default_rng(5).choice(len(X), 1000, replace=False))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    exact = _exact_knn(Xn, 20, rows)[1]
    floor = _likely_cosine(Xn.astype(np.float32), exact, 20)
    assert _recall_of_likely(exact, sims[rows], floor) >= 0.88


def test_verbose_fit_writes_the_stage_lines(client, faces, capsys):
    from sklearn_ndde import NDDeTPDiClustering

    NDDeTPDiClustering(k=10, verbose=1).fit(da.from_array(faces[0], chunks=(1000, -1)))
    lines = [line for line in capsys.readouterr().err.splitlines() if "(Dask)" in line]
    assert [line.split("] ")[1].split(" (Dask)")[0] for line in lines] == [
        "kNN graph",
        "pair similarity",
        "NDDe density",
        "TPDi distance",
        "density peaks",
        "flow merge",
        "recalibration",
    ]


def test_predict_after_a_dask_fit_matches_numpy(client, faces):
    """Queries are searched against the training blocks on the cluster;
    training points get their own labels, new points those the numpy-fitted
    estimator gives them."""

    X, _ = faces
    ref, est = _fit_both(X, 700, k=20)
    labels = est.labels_.compute()
    np.testing.assert_array_equal(est.predict(X[:300]), labels[:300])
    new = X[:300] + 0.05 * np.random.default_rng(0).standard_normal(X[:300].shape)
    new = new.astype(np.float32)
    np.testing.assert_array_equal(est.predict(new), ref.predict(new))
    assert (est.predict(new) >= 0).mean() > 0.5


def test_cell_groups_hold_every_row_once():
    """The IVF search's cell groups: whole cells, every row in exactly one
    group, and a group without rows adds no candidate."""
    from sklearn_ndde._knn_dask import _block_part, _group_bounds, _group_search

    rng = np.random.default_rng(0)
    counts = np.array([5, 0, 3, 7, 0, 0, 2, 0, 0])
    for n_groups in (1, 2, 3, 5, 20):
        bounds = _group_bounds(counts, n_groups)
        assert bounds[0] == 0 and bounds[-1] == counts.size
        assert np.all(np.diff(bounds) > 0) and bounds.size - 1 <= n_groups
    bounds = _group_bounds(counts, 3)
    cells = np.repeat(np.arange(counts.size), counts)
    order = rng.permutation(cells.size)
    Y = rng.standard_normal((cells.size, 4))
    parts = [
        _block_part(Y[order], cells[order], 100, lo, hi)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    ids = np.concatenate([part[1] for part in parts])
    np.testing.assert_array_equal(np.sort(ids), 100 + np.arange(cells.size))
    for g, (rows, part_ids) in enumerate(parts):
        assert rows.shape == (part_ids.size, 4)
        owned = cells[order][part_ids - 100]
        assert np.all((owned >= bounds[g]) & (owned < bounds[g + 1]))
    Q = rng.standard_normal((3, 4)).astype(np.float32)
    best = (np.zeros((3, 2), dtype=np.int64), np.ones((3, 2), dtype=np.float32))
    empty = (None, None, np.empty(0, dtype=np.int64), 0, 1)
    assert _group_search(Q, empty, 4, 2, 8, best, 1, False) is best
    found, sims = _group_search(Q, empty, 4, 2, 8, None, 1, False)
    assert found.shape == sims.shape == (3, 0)


def test_tpdi_from_owner_pieces_is_the_bhattacharyya_distance():
    """TPDi of a block from its partners' rows fetched owner by owner (the
    chain of tasks) equals ``1 - sum_m sqrt(q_im q_jm)`` computed densely."""
    from sklearn_ndde._dask_blocks import _block_tpdi, _rows_of, _wanted

    rng = np.random.default_rng(0)
    n, k = 60, 6
    indices = np.stack(
        [
            np.concatenate([[i], rng.choice(np.delete(np.arange(n), i), k - 1, False)])
            for i in range(n)
        ]
    ).astype(np.int32)
    q = rng.random((n, k)).astype(np.float32)
    q /= q.sum(axis=1, keepdims=True)
    dense = np.zeros((n, n))
    np.put_along_axis(dense, indices, q, axis=1)
    expected = 1 - np.sqrt(dense) @ np.sqrt(dense).T
    offsets = [0, 25, 40, 60]
    block = slice(25, 40)
    listed = np.unique(indices[block])
    pieces = [
        _rows_of(indices[lo:hi], q[lo:hi], lo, _wanted(listed, lo, hi))
        for lo, hi in zip(offsets[:-1], offsets[1:])
    ]
    assert sum(p[0].size for p in pieces) == listed.size
    got = _block_tpdi(indices[block], q[block], n, *pieces)
    want = np.take_along_axis(expected[block], indices[block].astype(np.intp), 1)
    np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=1e-5)
    # An owner that holds none of the block's partners adds nothing.
    none = (np.empty(0, np.int64), np.empty((0, k), np.int32), np.empty((0, k)))
    np.testing.assert_array_equal(
        _block_tpdi(indices[block], q[block], n, none, *pieces), got
    )


def test_saturated_peaks_in_their_own_lists():
    """Each block's saturated peaks take the listed sample ranked above them
    of highest cosine, ties to the smaller id, -1 when none is ranked above;
    on an exact graph that is the best denser sample two steps away."""
    from sklearn_ndde._dask_blocks import _saturated_in_list
    from sklearn_ndde._kernels import nearest_denser_two_hops

    rng = np.random.default_rng(1)
    n, k = 200, 8
    X = rng.standard_normal((n, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    indices, cosines = knn_graph(X, k, method="exact")
    parents = np.full(n, -1)
    rank = rng.permutation(n).astype(np.int64)
    offset, stop = 50, 150
    rounded = np.round(cosines, 1)  # ties on purpose

    class EveryPairAlike:
        def calibrate(self, cosines):
            return np.ones_like(cosines)

    peaks, candidate, cosine = _saturated_in_list(
        indices[offset:stop],
        rounded[offset:stop],
        parents[offset:stop],
        rank,
        offset,
        0.5,
        EveryPairAlike(),
    )
    np.testing.assert_array_equal(peaks, np.arange(offset, stop))
    for p, c, value in zip(peaks, candidate, cosine):
        above = [
            (-rounded[p, a], j) for a, j in enumerate(indices[p]) if rank[j] > rank[p]
        ]
        if above:
            assert (c, value) == (min(above)[1], -min(above)[0])
        else:
            assert c == -1
    assert 0 < (candidate >= 0).sum() < peaks.size
    # With the graph's own cosines: the two-step search's answer.
    peaks, candidate, _ = _saturated_in_list(
        indices[offset:stop],
        cosines[offset:stop],
        parents[offset:stop],
        rank,
        offset,
        0.5,
        EveryPairAlike(),
    )
    listed = candidate >= 0
    far = nearest_denser_two_hops(peaks, indices.astype(np.int64), rank, X, 1)
    np.testing.assert_array_equal(candidate[listed], far[listed])


def test_one_random_cluster_warns_as_on_numpy(client):
    # One person's faces: one cluster whose pairs are like random pairs.
    rng = np.random.default_rng(0)
    X = (rng.standard_normal(32) + 0.2 * rng.standard_normal((300, 32))).astype(
        np.float32
    )
    with pytest.warns(UserWarning, match="One cluster holds") as on_numpy:
        expected = NDDeTPDiClustering().fit(X).labels_
    with pytest.warns(UserWarning, match="One cluster holds") as on_dask:
        est = NDDeTPDiClustering().fit(da.from_array(X, chunks=(100, -1)))
    np.testing.assert_array_equal(est.labels_.compute(), expected)
    (numpy_message,) = [
        str(w.message) for w in on_numpy if "One cluster" in str(w.message)
    ]
    (dask_message,) = [
        str(w.message) for w in on_dask if "One cluster" in str(w.message)
    ]
    assert dask_message == numpy_message
    assert all(
        w.filename == __file__ for w in on_dask if "One cluster" in str(w.message)
    )
