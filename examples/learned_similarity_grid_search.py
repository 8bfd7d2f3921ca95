"""
Train the learned pair similarity once, then tune the clustering around it
==========================================================================

:class:`~sklearn_ndde.similarity.TransformerSimilarity` learns from labelled
faces which kNN pairs share an identity. Trained once, it plugs into
:class:`~sklearn_ndde.NDDeTPDiClustering`; a trained model is frozen under
:func:`~sklearn.base.clone`, so :class:`~sklearn.model_selection.GridSearchCV`
tunes ``tau`` without retraining it or losing its weights. Identities of the
clustered set are disjoint from the training identities, as in real use.

For the real thing on LFW (train split -> test split, with the hard-cluster
report against the training-free default) run ``benchmarks/lfw_learned.py``.
Requires ``pip install 'sklearn-ndde[torch]'``.
"""

# %%
import numpy as np
from sklearn.model_selection import GridSearchCV

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore, bcubed_scorer
from sklearn_ndde.similarity import TransformerSimilarity

X, y = make_face_embeddings(1200, 300, dim=32, spread=(0.4, 1.0), random_state=0)
train = y < 150  # identity-disjoint split
model = TransformerSimilarity(
    n_neighbors=20,
    d_model=32,
    n_heads=4,
    dim_feedforward=64,
    learning_rate=3e-3,
    batch_size=64,
    max_epochs=4,
    random_state=0,
).fit(X[train], y[train])
last_loss = model.history_[-1]["train_loss"]
print(f"trained in {model.fit_time_:.1f} s, last loss {last_loss:.3f}")

# %%
X_test, y_test = X[~train], y[~train]
scores = {}
for name, similarity in [("training-free", None), ("learned", model)]:
    labels = NDDeTPDiClustering(k=20, similarity=similarity).fit_predict(X_test)
    scores[name] = bcubed_fscore(y_test, labels)
    print(f"{name:14s} BCubed F {scores[name]:.3f}")

# %%
# The training loss per epoch, and the two similarities on the unseen
# identities.
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
epochs = [h["epoch"] for h in model.history_]
axes[0].plot(epochs, [h["train_loss"] for h in model.history_], "o-")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss (BCE)")
axes[0].set_title("TransformerSimilarity.fit")
axes[1].barh(list(scores), list(scores.values()), color=["C0", "C1"])
axes[1].set_xlim(min(scores.values()) - 0.05, 1)
axes[1].set_xlabel("BCubed F on the unseen identities")
axes[1].set_title("training-free against learned")
fig.tight_layout()

# %%
everything = np.arange(len(X_test))
search = GridSearchCV(
    NDDeTPDiClustering(k=20, similarity=model),
    {"tau": [0.5, 0.7, 0.9]},
    scoring=bcubed_scorer,
    cv=[(everything, everything)],
).fit(X_test, y_test)
assert search.best_estimator_.similarity is model  # the same trained weights
print(f"best {search.best_params_}: BCubed F {search.best_score_:.3f}")
