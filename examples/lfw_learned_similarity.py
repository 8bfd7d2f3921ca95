"""
Learn the pair similarity on LFW's train identities, cluster the test ones
==========================================================================

The real use of :class:`~sklearn_ndde.similarity.TransformerSimilarity`:
train it on labelled faces (here LFW's train split, 6,458 faces of 2,875
people), then cluster faces of people it never saw (the test split, 6,775
faces of 2,874 other people) and compare with the training-free default,
overall and per hard-cluster bin.

This example needs LFW face embeddings with an identity-disjoint
train/test split (``lfw_dlib128.npz``, in the folder named by the
``SKLEARN_NDDE_LFW`` environment variable) and about 6 minutes of
training on 2 CPU cores, so the documentation shows its code without
running it. Measured with this code
(``python benchmarks/lfw_learned.py`` prints the same for both embedding
models): BCubed F 0.950 for the training-free default and about 0.96 for
the learned similarity clustered with the paper's ``tau=0.7`` and no flow
merge.
Requires ``pip install 'sklearn-ndde[torch]'``.
"""

# %%
import os
from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.metrics import (
    bcubed_precision_recall_fscore,
    hard_cluster_report,
    pairwise_fscore,
)
from sklearn_ndde.similarity import TransformerSimilarity

folder = Path(os.environ.get("SKLEARN_NDDE_LFW", Path("..") / "shared" / "data"))
data = np.load(folder / "lfw_dlib128.npz")
train, test = data["split"] == "train", data["split"] == "test"
X, y = data["features"][test], data["labels"][test]

# %%
# Train on the train identities only, at the defaults (made for a training
# set of a few thousand faces: more, smaller steps than the paper's).
model = TransformerSimilarity(random_state=0).fit(
    data["features"][train], data["labels"][train]
)
print(f"trained in {model.fit_time_:.0f} s")

# %%
# Cluster the unseen test identities: the training-free similarity at the
# defaults, the learned one with the paper's links (tau 0.7, no flow merge),
# which suit it better.
for name, similarity, params in [
    ("training-free", None, {}),
    ("learned", model, {"tau": 0.7, "merge_threshold": None}),
]:
    labels = NDDeTPDiClustering(similarity=similarity, **params).fit_predict(X)
    p, r, f = bcubed_precision_recall_fscore(y, labels)
    print(
        f"{name:14s} BCubed P {p:.3f} R {r:.3f} F {f:.3f}, "
        f"pairwise F {pairwise_fscore(y, labels):.3f}"
    )
    for row in hard_cluster_report(y, labels, X):
        if row["by"] == "size":
            print(
                f"    identities of {row['low']:g}-{row['high']:g} faces: "
                f"BCubed recall {row['bcubed_recall']:.3f}"
            )
