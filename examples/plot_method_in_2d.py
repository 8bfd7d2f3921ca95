"""
The method in two dimensions: density, peaks and links
=======================================================

Five groups of 2-D points of different sizes and spreads. The neighbour
graph comes from :class:`~sklearn.neighbors.KNeighborsTransformer` (here on
Euclidean distances, passed with ``metric="precomputed"``: any distance
graph will do). NDDe gives each group a density peak of its own whatever
its size (the mean density of a closed group is 1), and each point links to
its TPDi-nearest denser neighbour; links with TPDi above ``tau`` are cut and
the connected components are the clusters.

Two dimensions are a hard case for the method: the calibrated similarity
expects many unrelated neighbours in every kNN list, as in face embeddings,
so ``k`` matters more here than on real data.
"""

# %%
import sys

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KNeighborsTransformer
from sklearn.pipeline import make_pipeline

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.metrics import bcubed_fscore
from sklearn_ndde.plotting import plot_density_peaks

rng = np.random.default_rng(2)
centres = 0.2 * np.array([[0, 0], [1, 0.2], [0.4, 1], [1.2, 1.1], [-0.6, 0.8]])
sizes = [80, 10, 30, 5, 40]
spreads = [0.01, 0.005, 0.03, 0.005, 0.02]
X = np.vstack(
    [c + s * rng.standard_normal((m, 2)) for c, m, s in zip(centres, sizes, spreads)]
)
y = np.repeat(np.arange(len(sizes)), sizes)

pipe = make_pipeline(
    KNeighborsTransformer(n_neighbors=39, mode="distance"),
    NDDeTPDiClustering(k=40, metric="precomputed"),
)
labels = pipe.fit_predict(X)
est = pipe[-1]
ari = adjusted_rand_score(y, labels)
print(f"{est.n_clusters_} clusters for {len(sizes)} groups, ARI {ari:.2f}")
print(f"BCubed F {bcubed_fscore(y, labels):.3f}")
# The links form a forest: one root (parents_ == -1) per cluster.
print("roots:", int((est.parents_ < 0).sum()))
print(
    "mean NDDe density per true group:",
    np.round(np.bincount(y, est.density_) / np.bincount(y), 2),
)

# %%
ax = plot_density_peaks(X, est)
# python examples/plot_method_in_2d.py docs/_static/method.png
if sys.argv[-1].endswith(".png"):
    ax.figure.savefig(sys.argv[-1], dpi=80, bbox_inches="tight")
plt.show()
