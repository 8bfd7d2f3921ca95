"""
The hard-cluster report: where each method loses faces
======================================================

Score NDDe + TPDi, DBSCAN and HDBSCAN per identity-size bin and per
identity-sparsity bin, as in Figure 1 of the paper. The hard clusters are
the small identities (left of the size panels) and the sparse ones (right
of the sparsity panels). ``sklearn-ndde demo --figure report.png`` draws the
same figure from the command line.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.cluster import DBSCAN, HDBSCAN

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore, hard_cluster_report
from sklearn_ndde.plotting import plot_hard_cluster_report

X, y = make_face_embeddings(3000, 300, dim=128, random_state=0)
methods = {
    "NDDe + TPDi": NDDeTPDiClustering(),
    "DBSCAN": DBSCAN(eps=0.5, min_samples=2, metric="cosine"),
    "HDBSCAN": HDBSCAN(min_cluster_size=2, copy=True),
}
reports = {}
for name, est in methods.items():
    labels = est.fit_predict(X)
    reports[name] = hard_cluster_report(y, labels, X)
    print(f"{name:12s} BCubed F {bcubed_fscore(y, labels):.3f}")

# %%
fig = plot_hard_cluster_report(reports)
plt.show()
