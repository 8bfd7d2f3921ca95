"""
A precomputed kNN graph in a Pipeline, and GridSearchCV over tau and k
======================================================================

``NDDeTPDiClustering(metric="precomputed")`` takes the sparse distance graph
that :class:`~sklearn.neighbors.KNeighborsTransformer` makes, so the
neighbour search can be swapped for any transformer. With labelled data,
:class:`~sklearn.model_selection.GridSearchCV` tunes ``tau`` and ``k`` with
the BCubed scorer (fit and score on the same samples: clustering has no
held-out fold).
"""

# %%
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsTransformer
from sklearn.pipeline import make_pipeline

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore, bcubed_scorer

X, y = make_face_embeddings(3000, 300, dim=64, spread=(0.4, 1.0), random_state=0)

pipe = make_pipeline(
    KNeighborsTransformer(n_neighbors=39, mode="distance", metric="cosine"),
    NDDeTPDiClustering(k=40, metric="precomputed"),
)
labels = pipe.fit_predict(X)
print(f"pipeline: BCubed F {bcubed_fscore(y, labels):.3f}")

# %%
everything = list(range(len(X)))
search = GridSearchCV(
    NDDeTPDiClustering(),
    {"tau": [0.5, 0.7, 0.9], "k": [20, 40]},
    scoring=bcubed_scorer,
    cv=[(everything, everything)],
).fit(X, y)
print(f"best {search.best_params_}: BCubed F {search.best_score_:.3f}")

# %%
# The grid: BCubed F of each ``(k, tau)`` (the search's own scores).
import matplotlib.pyplot as plt  # noqa: E402

results = search.cv_results_
fig, ax = plt.subplots(figsize=(6, 3.5))
for k in (20, 40):
    rows = [i for i, params in enumerate(results["params"]) if params["k"] == k]
    taus = [results["params"][i]["tau"] for i in rows]
    ax.plot(taus, results["mean_test_score"][rows], "o-", label=f"k = {k}")
ax.set_xlabel("tau")
ax.set_ylabel("BCubed F")
ax.set_title("GridSearchCV over k and tau")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
