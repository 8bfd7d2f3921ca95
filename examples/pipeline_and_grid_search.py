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
