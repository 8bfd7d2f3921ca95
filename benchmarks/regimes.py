"""Quality on every identity regime: defaults against tuned graph baselines.

For each embedding model and each regime of the LFW split (as is, and
restricted to identities with at least 2, 5 or 10 faces, at most 30 faces
each), prints BCubed F of

- ``NDDeTPDiClustering()`` at its defaults (nothing tuned on the cell);
- the same with the learned similarity, ``TransformerSimilarity`` trained
  at its defaults on the *train* split (skipped with ``--no-learned``, or
  when the split is ``train``);
- Infomap and Chinese whispers on the exact k = 80 cosine graph, each at
  the best of 24 cosine thresholds chosen on the cell's own labels (an
  upper bound for their users);

and the gap of the defaults to the best baseline. ``--json PATH`` writes
the table as JSON.

``--relu-models`` adds two synthetic embedding models made from the two
real ones: each row is mapped by a fixed Gaussian random projection to
1,024 dimensions, shifted by 0.2 and cut at zero. The features are
non-negative and their cosines compressed (MobileFaceNet: 0.63 for the
same person, 0.39 for others, against 0.46 and 0.03), like the third
model of the collection that is not shared; the neighbourhoods are those
of the source model, with the noise of the projection. They test that
the defaults do not depend on one model's range of cosines (no learned
column for them).

A regime ">= m" keeps, for every identity with at least m faces (in
increasing order of label), its faces in the order
``np.random.default_rng(0).permutation`` gives over that identity's row
indices (one generator for all identities), the first 30; the kept rows
are sorted. Needs ../shared/data and ``pip install infomap``.

    python benchmarks/regimes.py [--split test] [--no-learned] [--relu-models]
                                 [--json PATH]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from baselines import best_graph_baselines

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.metrics import bcubed_fscore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = {"dlib-128": "lfw_dlib128", "mobileface-256": "lfw_mobileface256"}
REGIMES = {"as is": None, ">= 2, cap 30": 2, ">= 5, cap 30": 5, ">= 10, cap 30": 10}


def regime_rows(labels, min_faces, cap=30):
    """Rows of the regime: see the module docstring. ``None``: all rows."""
    if min_faces is None:
        return np.arange(labels.size)
    rng = np.random.default_rng(0)
    kept = []
    for identity in np.unique(labels):
        rows = np.flatnonzero(labels == identity)
        if rows.size >= min_faces:
            kept.append(rows[rng.permutation(rows.size)][:cap])
    return np.sort(np.concatenate(kept))


def relu_features(X, dim=1024, shift=0.2, seed=1):
    """The synthetic non-negative model of ``--relu-models``: unit rows
    projected by a fixed Gaussian matrix, shifted, cut at zero."""
    X = np.asarray(X, dtype=np.float64)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    W = np.random.default_rng(seed).standard_normal((X.shape[1], dim))
    return np.maximum(X @ W + shift, 0.0).astype(np.float32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--no-learned", action="store_true")
    parser.add_argument("--relu-models", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    learned = not args.no_learned and args.split == "test"
    models = [(name, file, False) for name, file in MODELS.items()]
    if args.relu_models:
        models += [(f"{name} relu-1024", file, True) for name, file in MODELS.items()]
    table = []
    for model_name, file, relu in models:
        data = np.load(DATA / f"{file}.npz")
        split = data["split"] == args.split
        X_all, y_all = data["features"][split], data["labels"][split]
        if relu:
            X_all = relu_features(X_all)
        similarity = None
        if learned and not relu:
            from sklearn_ndde.similarity import TransformerSimilarity

            train = data["split"] == "train"
            similarity = TransformerSimilarity(random_state=0).fit(
                data["features"][train], data["labels"][train]
            )
            print(
                f"{model_name}: learned similarity trained at its defaults on "
                f"{train.sum()} faces in {similarity.fit_time_:.0f} s"
            )
        for regime, min_faces in REGIMES.items():
            rows = regime_rows(y_all, min_faces)
            X, y = X_all[rows], y_all[rows]
            start = time.perf_counter()
            f_default = bcubed_fscore(y, NDDeTPDiClustering().fit_predict(X))
            seconds = time.perf_counter() - start
            f_learned = None
            if similarity is not None:
                labels = NDDeTPDiClustering(similarity=similarity).fit_predict(X)
                f_learned = bcubed_fscore(y, labels)
            indices, cosines = knn_graph(X, 80, method="exact")
            best = best_graph_baselines(indices, cosines, y)
            table.append(
                {
                    "model": model_name,
                    "regime": regime,
                    "n_faces": int(y.size),
                    "n_identities": int(np.unique(y).size),
                    "ndde_defaults": f_default,
                    "ndde_learned": f_learned,
                    "infomap_tuned": best["Infomap"][0],
                    "infomap_threshold": float(best["Infomap"][1]),
                    "chinese_whispers_tuned": best["Chinese whispers"][0],
                    "chinese_whispers_threshold": float(best["Chinese whispers"][1]),
                    "fit_seconds": seconds,
                }
            )
            row = table[-1]
            best_f = max(row["infomap_tuned"], row["chinese_whispers_tuned"])
            learned_text = "" if f_learned is None else f" learned {f_learned:.4f}"
            print(
                f"{model_name:24s} {regime:14s} {row['n_faces']:5d} / "
                f"{row['n_identities']:4d}  defaults {f_default:.4f}{learned_text}  "
                f"Infomap {row['infomap_tuned']:.4f}  CW "
                f"{row['chinese_whispers_tuned']:.4f}  gap {f_default - best_f:+.4f}",
                flush=True,
            )
    gaps = [
        r["ndde_defaults"] - max(r["infomap_tuned"], r["chinese_whispers_tuned"])
        for r in table
    ]
    print(f"\nDefaults against the best tuned baseline: mean gap {np.mean(gaps):+.4f},")
    print(
        f"worst cell {min(gaps):+.4f}; cells within 0.005: "
        f"{sum(g >= -0.005 for g in gaps)} of {len(gaps)}"
    )
    print(
        "\n| model | regime | faces / identities | NDDe defaults | learned | "
        "Infomap tuned | Chinese whispers tuned | gap |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r, gap in zip(table, gaps):
        learned_text = "-" if r["ndde_learned"] is None else f"{r['ndde_learned']:.3f}"
        print(
            f"| {r['model']} | {r['regime']} | {r['n_faces']:,} / "
            f"{r['n_identities']:,} | {r['ndde_defaults']:.3f} | {learned_text} | "
            f"{r['infomap_tuned']:.3f} | {r['chinese_whispers_tuned']:.3f} | "
            f"{gap:+.3f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
