"""How the training-free calibration was chosen, on the LFW train split.

Clusters the identity-disjoint **train** split (the test split is kept for
reporting) with k = 80, tau = 0.7 and the published temperatures, feeding
the pair similarity from: the raw cosine, Gaussian mixtures of 2, 3 and 4
components (3 is the default), and an isotonic regression fitted on the
train labels themselves, a supervised ceiling for any map of the cosine
alone. Prints BCubed F. Needs ../shared/data.

    python benchmarks/calibration_choice.py
"""

from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.metrics import bcubed_fscore
from sklearn_ndde.similarity import CalibratedCosineSimilarity

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class CosineMap:
    """A pair similarity that applies a fixed map to the cosine."""

    def __init__(self, fn):
        self.fn = fn

    def pair_similarity(self, X, indices, Y=None):
        Y = X if Y is None else Y
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        cos = np.einsum("id,ikd->ik", Xn, Yn[indices])
        return np.clip(self.fn(cos), 0.0, 1.0)


def main():
    print(f"{'similarity':44s} {'dlib':>7s} {'mobileface':>11s}")
    rows = {}
    for name in ["lfw_dlib128", "lfw_mobileface256"]:
        data = np.load(DATA / f"{name}.npz")
        train = data["split"] == "train"
        X, y = data["features"][train], data["labels"][train]
        indices, cos = knn_graph(X, 80)
        same = y[indices[:, 1:]] == y[:, None]
        iso = IsotonicRegression(out_of_bounds="clip").fit(
            cos[:, 1:].ravel(), same.ravel()
        )
        candidates = {"raw cosine": CosineMap(lambda c: c)}
        for m in (2, 3, 4):
            label = f"{m}-component mixture" + (" (default)" if m == 3 else "")
            candidates[label] = CalibratedCosineSimilarity(n_components=m)
        candidates["isotonic on the train labels (ceiling)"] = CosineMap(
            lambda c, iso=iso: iso.predict(c.ravel()).reshape(c.shape)
        )
        for label, sim in candidates.items():
            labels = NDDeTPDiClustering(similarity=sim).fit_predict(X)
            rows.setdefault(label, []).append(bcubed_fscore(y, labels))
    for label, scores in rows.items():
        print(f"{label:44s} {scores[0]:7.4f} {scores[1]:11.4f}")


if __name__ == "__main__":
    main()
