"""The baselines at thresholds chosen on other collections, as a user tunes them.

``regimes.py`` gives each baseline its best threshold on each cell's own
labels: an upper bound that no user reaches, since a user with the labels
of their collection has no need to cluster it. A user who tunes a
baseline does it on labelled faces they have, and uses that threshold on
the collection they cluster. This script measures that: for each
embedding model, each baseline's threshold is the one with the best mean
BCubed F over the model's *design* cells (LFW's train split in the six
regimes of ``regimes.py``, and CelebA in that model), and it is scored on
the *report* cells (LFW's test split in the six regimes, and CelebA),
beside the defaults of ``NDDeTPDiClustering()``, which are chosen on no
cell. CelebA is in both sets, as the project designs and reports on it;
faceres-1024 exists only in CelebA, so its one cell is left out (its
threshold would be tuned on its own labels).

For every report cell it prints the defaults, each baseline at its
transferred threshold, the gap of the defaults to the best of them, and
for reference the gap to the per-cell best (the figure of
``regimes.py``). Needs ../shared/data and ``pip install infomap``.

    python benchmarks/threshold_transfer.py [--json PATH]
"""

import argparse
import json
import warnings

import numpy as np
from baselines import tuned_grid_scores
from regimes import CELEBA, DATA, MODELS, REGIMES, regime_rows, split_faces

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.metrics import bcubed_fscore

BASELINES = ("Infomap", "Chinese whispers", "FC-ES")


def model_cells(model, file, split):
    """``(name, X, y)`` of the six LFW regimes of ``split`` and CelebA."""
    X_all, y_all = split_faces(file, split)
    for regime, (min_faces, cap) in REGIMES.items():
        rows = regime_rows(y_all, min_faces, cap)
        yield f"LFW {split}, {regime}", X_all[rows], y_all[rows]
    data = np.load(DATA / f"{CELEBA[model]}.npz")
    yield "CelebA", data["features"], data["labels"]


def grid_scores(model, cells):
    """Each cell's baseline scores over the grids, by cell name."""
    out = {}
    for name, X, y in cells:
        indices, cosines = knn_graph(X, 80, method="exact")
        out[name] = (tuned_grid_scores(indices, cosines, y, model), X, y)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    table = []
    for model, file in MODELS.items():
        design = grid_scores(model, model_cells(model, file, "train"))
        report = grid_scores(
            model,
            (c for c in model_cells(model, file, "test") if c[0] != "CelebA"),
        )
        report["CelebA"] = design["CelebA"]
        chosen = {}
        for method in BASELINES:
            grid = next(iter(design.values()))[0][method][0]
            mean = np.mean([d[0][method][1] for d in design.values()], axis=0)
            chosen[method] = int(np.argmax(mean))
            print(
                f"{model}: {method} threshold {grid[chosen[method]]:g} "
                f"(mean F {mean[chosen[method]]:.4f} over the design cells)"
            )
        for name, (scores, X, y) in report.items():
            defaults = bcubed_fscore(y, NDDeTPDiClustering().fit_predict(X))
            row = {"model": model, "cell": name, "ndde_defaults": defaults}
            for method in BASELINES:
                grid, f = scores[method]
                row[method] = float(f[chosen[method]])
                row[f"{method} threshold"] = float(grid[chosen[method]])
                row[f"{method} best on the cell"] = float(f.max())
            row["gap"] = defaults - max(row[m] for m in BASELINES)
            row["gap to the per-cell best"] = defaults - max(
                row[f"{m} best on the cell"] for m in BASELINES
            )
            table.append(row)
            oracle_gap = row["gap to the per-cell best"]
            print(
                f"  {name:26s} defaults {defaults:.4f}  "
                + "  ".join(f"{m} {row[m]:.4f}" for m in BASELINES)
                + f"  gap {row['gap']:+.4f} (per-cell best {oracle_gap:+.4f})",
                flush=True,
            )
    gaps = np.array([r["gap"] for r in table])
    oracle = np.array([r["gap to the per-cell best"] for r in table])
    print(
        f"\nAgainst the transferred thresholds: mean gap {gaps.mean():+.4f}, worst "
        f"{gaps.min():+.4f}, cells within 0.005: {int((gaps >= -0.005).sum())} of "
        f"{gaps.size}; ahead in {int((gaps > 0).sum())}"
    )
    print(
        f"Against each cell's own best threshold: mean gap {oracle.mean():+.4f}, "
        f"worst {oracle.min():+.4f}, cells within 0.005: "
        f"{int((oracle >= -0.005).sum())} of {oracle.size}"
    )
    print("\n| model | cell | defaults | Infomap | Chinese whispers | FC-ES | gap |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['model']} | {r['cell']} | {r['ndde_defaults']:.3f} | "
            + " | ".join(f"{r[m]:.3f}" for m in BASELINES)
            + f" | {r['gap']:+.3f} |"
        )
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
