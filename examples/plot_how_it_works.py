"""
How it works, in pictures
=========================

Each stage of :class:`~sklearn_ndde.NDDeTPDiClustering` drawn on 1,500
synthetic faces (:func:`~sklearn_ndde.datasets.make_face_embeddings`: 64-d
unit embeddings, 150 identities of long-tailed sizes and uneven spreads),
from the estimator's own fitted attributes. The formulas are on the
:doc:`method page <../method>`.
"""

# %%
# The kNN graph
# -------------
# Every face lists its ``k`` most similar faces by cosine (itself first).
# With ``k`` larger than most identities, each list holds the face's own
# identity and then unrelated faces: the cosines of the two kinds overlap,
# so no single cosine threshold separates them for every identity.
import matplotlib.pyplot as plt
import numpy as np

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore

X, y = make_face_embeddings(1500, 150, dim=64, random_state=0)
est = NDDeTPDiClustering(k=40).fit(X)
print(
    f"{est.n_clusters_} clusters for 150 identities, BCubed F "
    f"{bcubed_fscore(y, est.labels_):.3f}"
)

neighbors = est.neighbors_
cosines = np.einsum("id,ikd->ik", X, X[neighbors])
itself = neighbors == np.arange(len(X))[:, None]
same = (y[neighbors] == y[:, None]) & ~itself
other = y[neighbors] != y[:, None]

fig, ax = plt.subplots(figsize=(7, 3.2))
bins = np.linspace(cosines.min(), 1, 60)
ax.hist(cosines[same], bins, alpha=0.7, label="same identity")
ax.hist(cosines[other], bins, alpha=0.7, label="other identities")
ax.set_xlabel("cosine of a face and one of its k = 40 neighbours")
ax.set_ylabel("pairs")
ax.set_title("The kNN graph holds both kinds of pairs")
ax.legend()
fig.tight_layout()

# %%
# The calibrated pair similarity
# ------------------------------
# Without labels, the default similarity fits a two-component mixture to the
# graph's own cosines and maps each cosine to the probability that the pair
# is one identity (``pair_similarities_``). The map is steep where the two
# kinds of pairs meet, so the softmax of the next stage weighs the likely
# same-identity neighbours and mutes the others.
grid = np.linspace(cosines.min(), 1, 200)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(grid, est.similarity_.calibrate(grid), color="k")
ax.set_xlabel("cosine")
ax.set_ylabel("pair similarity s")
ax.set_title("CalibratedCosineSimilarity fitted on this graph")
ax.grid(alpha=0.3)
fig.tight_layout()

# %%
# NDDe: a density that does not grow with the identity's size
# -----------------------------------------------------------
# Each face spreads a unit of mass over its neighbours through the row-softmax
# transition matrix; a face's density is the mass it receives. A closed
# identity keeps its mass, so its mean density is about 1 whatever its size,
# where a plain kNN density (the summed similarity of a face's neighbours)
# grows with the size: small identities would never hold a density peak.
sizes = np.bincount(y)[y]
plain = est.pair_similarities_.sum(axis=1)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharex=True)
axes[0].scatter(sizes, plain, s=4, alpha=0.4)
axes[0].set_ylabel("summed similarity of the k neighbours")
axes[0].set_title("plain kNN density")
axes[1].scatter(sizes, est.density_, s=4, alpha=0.4, color="C1")
axes[1].set_ylabel("NDDe density")
axes[1].set_title("NDDe density")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("size of the face's identity")
fig.tight_layout()

# %%
# TPDi: a distance between two faces' neighbourhoods
# --------------------------------------------------
# TPDi compares the transition rows of two faces (one minus the overlap of
# their probability of stepping to each common neighbour). Two faces of one
# identity share their likely neighbours and get a small distance even when
# their own cosine is low; this is what lets sparse identities hold together.
tpdi = est.tpdi_
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, values, name in (
    (axes[0], 1 - cosines, "cosine distance"),
    (axes[1], tpdi, "TPDi"),
):
    edges = np.linspace(0, 1, 50)
    ax.hist(values[same], edges, alpha=0.7, density=True, label="same identity")
    ax.hist(values[other], edges, alpha=0.7, density=True, label="other identities")
    ax.set_xlabel(name)
    ax.set_title(f"{name} of neighbour pairs")
axes[0].set_ylabel("share of pairs (density)")
axes[1].axvline(est.tau, color="k", ls="--", lw=1)
axes[1].text(est.tau, axes[1].get_ylim()[1] * 0.9, f" tau = {est.tau}")
axes[0].legend()
fig.tight_layout()

# %%
# The links: density peaks
# ------------------------
# Each face links to its TPDi-nearest denser neighbour when that distance is
# below ``tau``; the faces without a link are the peaks, one per cluster, and
# the clusters are the trees of the links (``parents_``). Drawn here on 2-D
# points, where the links can be seen (the neighbour graph on Euclidean
# distances, passed with ``metric="precomputed"``).
from sklearn.neighbors import KNeighborsTransformer  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sklearn_ndde.plotting import plot_density_peaks  # noqa: E402

rng = np.random.default_rng(2)
centres = 0.2 * np.array([[0, 0], [1, 0.2], [0.4, 1], [1.2, 1.1], [-0.6, 0.8]])
group_sizes = [80, 10, 30, 5, 40]
spreads = [0.01, 0.005, 0.03, 0.005, 0.02]
P2 = np.vstack(
    [
        c + s * rng.standard_normal((m, 2))
        for c, m, s in zip(centres, group_sizes, spreads)
    ]
)
pipe = make_pipeline(
    KNeighborsTransformer(n_neighbors=39, mode="distance"),
    NDDeTPDiClustering(k=40, metric="precomputed"),
)
pipe.fit(P2)
ax = plot_density_peaks(P2, pipe[-1])
ax.set_title("Links to the denser neighbour; stars are the peaks")
ax.figure.set_size_inches(7, 5)

# %%
# The saturated-peak links and the flow merge
# -------------------------------------------
# TPDi only sees the ``k`` nearest neighbours, so an identity much larger than
# ``k`` breaks into several peaks whose lists barely overlap. A peak whose
# whole list is judged its own identity (saturated) links to the most similar
# denser face two steps away; then clusters that send each other most of
# their transition mass merge (the flow merge). Here, the faces of the
# identities larger than ``k`` (here ``k = 20``), counted in clusters at
# each step:
k = 20
big = np.flatnonzero(np.bincount(y) > k)
variants = {
    "the paper's rule": dict(link_saturated=False, merge_threshold=None),
    "+ saturated-peak links": dict(link_saturated=True, merge_threshold=None),
    "+ flow merge (default)": {},
}
counts = []
for params in variants.values():
    labels = NDDeTPDiClustering(k=k, **params).fit_predict(X)
    counts.append(sum(np.unique(labels[y == i]).size for i in big))
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(variants), counts, color=["C0", "C1", "C2"])
ax.axvline(big.size, color="k", ls="--", lw=1, label="one cluster per identity")
ax.set_xlabel(f"clusters holding the {big.size} identities larger than k = {k}")
ax.set_title("Large identities: fragments left at each step")
ax.legend(loc="lower right")
ax.invert_yaxis()
fig.tight_layout()
plt.show()
