"""The Dask path on a ``distributed.LocalCluster`` of 2 single-threaded
worker processes: the same results as the numpy path."""

import subprocess
import sys

import numpy as np
import pytest

from sklearn_ndde import knn_graph
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
    indices, _ = knn_graph(da.from_array(bad, chunks=(500, 64)), 5)
    with pytest.raises(ValueError, match="first at row 1234"):
        indices.compute()
    bad[1234] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity .first at row 1234"):
        knn_graph(da.from_array(bad, chunks=(500, 64)), 5)[0].compute()
    with pytest.raises(ValueError, match="not available for a dask array"):
        knn_graph(da.from_array(X, chunks=(500, 64)), 5, method="ivf")
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
