"""The learned pair similarity on LFW: train on the train split, cluster test.

For each embedding model: trains ``TransformerSimilarity`` on the
identity-disjoint train split (6,458 faces), clusters the test split (6,775
faces) with default clustering parameters and with the paper's ``tau=0.7``
without the flow merge, and prints BCubed / pairwise F beside the
training-free default, the training time, the inference
throughput, and the hard-cluster report (BCubed recall per size and sparsity
bin). CPU unless CUDA is available. Needs ../shared/data.

The architecture is the paper's (d_model 256, 8 heads, feed-forward 2048,
dropout 0.2); the optimiser settings are scaled to a small training set (a few
hundred steps instead of the paper's thousands): learning rate 1e-3, batches
of 64 anchors, 10 epochs, the default one-cycle schedule (warm-up, cosine
decay). ``--constant-rate`` trains at a constant rate instead; ``--small``
trains d_model 128 / feed-forward 512 instead; ``--precision`` sets the
model's ``precision``; ``--paper-model`` trains the paper's model alone
(``residual=False``) instead of a correction to the calibrated cosine;
``--one-end`` scores each pair from its anchor's sequence alone
(``symmetrize=False``); ``--validation-fraction 0.1`` holds out that fraction
of the training identities and stops early on their loss.

    python benchmarks/lfw_learned.py [--epochs 10] [--small] [--precision auto]
        [--constant-rate] [--paper-model] [--one-end] [--validation-fraction F]
        [--seed 0]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.metrics import (
    bcubed_precision_recall_fscore,
    hard_cluster_report,
    pairwise_fscore,
)
from sklearn_ndde.similarity import TransformerSimilarity

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--small", action="store_true")
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "float32", "bfloat16"]
    )
    parser.add_argument("--constant-rate", action="store_true")
    parser.add_argument("--paper-model", action="store_true")
    parser.add_argument("--one-end", action="store_true")
    parser.add_argument("--validation-fraction", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ["lfw_dlib128", "lfw_mobileface256"]:
        data = np.load(DATA / f"{name}.npz")
        train, test = data["split"] == "train", data["split"] == "test"
        X, y = data["features"][test], data["labels"][test]
        model = TransformerSimilarity(
            d_model=128 if args.small else 256,
            dim_feedforward=512 if args.small else 2048,
            precision=args.precision,
            residual=not args.paper_model,
            symmetrize=not args.one_end,
            validation_fraction=args.validation_fraction,
            learning_rate=1e-3,
            learning_rate_schedule="constant" if args.constant_rate else "cosine",
            batch_size=64,
            max_epochs=args.epochs,
            random_state=args.seed,
        ).fit(data["features"][train], data["labels"][train])
        indices, _ = knn_graph(X, 80)
        start = time.perf_counter()
        model.pair_similarity(X, indices)
        throughput = len(X) / (time.perf_counter() - start)
        print(
            f"\n{name}: trained on {train.sum()} faces in {model.fit_time_:.0f} s "
            f"({len(model.history_)} epochs, device {model.device_}); inference "
            f"{throughput:.0f} faces/s (k=80)"
        )
        results = {}
        paper_links = dict(tau=0.7, merge_threshold=None)
        for label, similarity, params in [
            ("training-free default", None, {}),
            ("learned, default clustering", model, {}),
            ("learned, tau 0.7, no flow merge", model, paper_links),
        ]:
            start = time.perf_counter()
            labels = NDDeTPDiClustering(similarity=similarity, **params).fit_predict(X)
            seconds = time.perf_counter() - start
            p, r, f = bcubed_precision_recall_fscore(y, labels)
            print(
                f"  {label:32s} BCubed P {p:.4f} R {r:.4f} F {f:.4f}  "
                f"pairwise F {pairwise_fscore(y, labels):.4f}  ({seconds:.1f} s)"
            )
            results[label] = hard_cluster_report(y, labels, X)
        print("  hard clusters, BCubed recall per bin (0 = smallest / densest):")
        for label, rows in results.items():
            for by in ("size", "sparsity"):
                recalls = " ".join(
                    f"{row['bcubed_recall']:.3f}" for row in rows if row["by"] == by
                )
                print(f"    {label:32s} {by:8s} {recalls}")


if __name__ == "__main__":
    main()
