"""scikit-learn's estimator checks on fast instances."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ndde import NDDeTPDiClustering


# k=15: the calibration needs each kNN list to reach a little beyond its own
# cluster (the checks' three blobs hold about 17 samples each), but on 2-D
# blobs under the cosine metric a list much longer than a blob mixes in the
# angularly nearest other blob and merges them (k=20 gives ARI 0.30).
@parametrize_with_checks(
    [
        NDDeTPDiClustering(k=15),
        NDDeTPDiClustering(k=15, density_iter=None, tau=0.5),
    ],
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
