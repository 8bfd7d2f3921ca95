"""How ``link_saturated_peaks`` was chosen: its effect where identities exceed k.

On the LFW **train** split (no test data), where no identity is much larger
than the default k = 80 (largest 236), the clustering runs at k = 20, 30
and 80 with and without the saturated-peak links (``link_saturated``);
lowering k makes identities several times larger than k, as George W. Bush's
530 faces are at k = 80 on the test split. Then the same on synthetic faces
(``make_face_embeddings``, 20,000 x 128). Prints BCubed precision, recall
and F, and pairwise F. Needs ../shared/data for the LFW part.

    python benchmarks/saturated_links.py
"""

from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_precision_recall_fscore, pairwise_fscore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def report(label, X, y, ks):
    for k in ks:
        for linked in (False, True):
            labels = NDDeTPDiClustering(k=k, link_saturated=linked).fit_predict(X)
            p, r, f = bcubed_precision_recall_fscore(y, labels)
            print(
                f"  {label:28s} k={k:<3d} link_saturated={linked!s:5s} "
                f"BCubed P {p:.4f} R {r:.4f} F {f:.4f}  "
                f"pairwise F {pairwise_fscore(y, labels):.4f}",
                flush=True,
            )


def main():
    for name in ["lfw_dlib128", "lfw_mobileface256"]:
        data = np.load(DATA / f"{name}.npz")
        train = data["split"] == "train"
        report(
            f"{name} train",
            data["features"][train],
            data["labels"][train],
            (20, 30, 80),
        )
    for n_identities, spread, k in [(300, (0.5, 1.3), 80), (300, (0.5, 1.3), 30)]:
        X, y = make_face_embeddings(
            20000, n_identities, dim=128, spread=spread, random_state=0
        )
        report(f"synthetic, largest {np.bincount(y).max()}", X, y, (k,))


if __name__ == "__main__":
    main()
