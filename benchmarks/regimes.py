"""Quality on every identity regime: defaults against tuned graph baselines.

The cells: for each embedding model, the regimes of the LFW split (as is;
identities with at least 2, 5 or 10 faces, at most 30 faces each; and
identities with at least 20 or 40 faces, every face kept), and the CelebA
subset in its three models (as it is). For each cell it prints BCubed F of

- ``NDDeTPDiClustering()`` at its defaults (nothing tuned on the cell);
- the same with the learned similarity, ``TransformerSimilarity`` trained
  at its defaults on LFW's *train* split (LFW test cells only; skipped
  with ``--no-learned``, or when the split is ``train``);
- Infomap and Chinese whispers on the exact k = 80 cosine graph, each at
  its best cosine-distance threshold on the cell's own labels (0.02-0.12
  for dlib, 0.25-0.95 for the other models), and FC-ES (Liu 2024) at its
  best NEP threshold (0.03-0.60): an upper bound for their users;

and the gap of the defaults to the best baseline. ``--json PATH`` writes
the table as JSON; ``--no-celeba`` leaves CelebA out.

``--libraries`` adds photo libraries made of real faces, scored apart from
the cells above: for each model, every face of the split's people with at
least 20 (or 40) faces, and strangers, people of the split with a single
face, drawn at random (``np.random.default_rng(0)``) until they are 10 %
(or 30 %) of the faces, as in a family library where a few people fill
most photos and passers-by appear once. ``--only-libraries`` leaves the
other cells out.

``--both-splits`` adds, also scored apart, the LFW people of *both* splits
with at least 10, 20 or 40 faces, every face kept: more people with
hundreds of faces than either split holds (George W. Bush's 530 beside
Colin Powell's 236 and 50 others of 20 or more), and pairs of look-alike
people that one split never holds together. The train split's people are
in them, so they check the defaults and are not used to choose them.
``--only-both-splits`` leaves the other cells out.

``--relu-models`` adds two synthetic embedding models made from the two
real ones: each row is mapped by a fixed Gaussian random projection to
1,024 dimensions, shifted by 0.2 and cut at zero. The features are
non-negative and their cosines compressed (MobileFaceNet: 0.63 for the
same person, 0.39 for others, against 0.46 and 0.03), like the third
model of the collection that is not shared; the neighbourhoods are those
of the source model, with the noise of the projection. They test that
the defaults do not depend on one model's range of cosines (no learned
column for them).

A regime ">= m, cap 30" keeps, for every identity with at least m faces
(in increasing order of label), its faces in the order
``np.random.default_rng(0).permutation`` gives over that identity's row
indices (one generator for all identities), the first 30; ">= m" keeps
every face of those identities; the kept rows are sorted. Needs
../shared/data and ``pip install infomap``.

    python benchmarks/regimes.py [--split test] [--no-learned] [--no-celeba]
                                 [--relu-models] [--libraries]
                                 [--only-libraries] [--both-splits]
                                 [--only-both-splits] [--json PATH]
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from baselines import best_tuned_baselines

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.metrics import bcubed_fscore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = {"dlib-128": "lfw_dlib128", "mobileface-256": "lfw_mobileface256"}
CELEBA = {
    "dlib-128": "celeba_dlib128",
    "mobileface-256": "celeba_mobileface256",
    "faceres-1024": "celeba_faceres1024",
}
#: Regime -> (smallest identity, most faces kept per identity or None).
REGIMES = {
    "as is": (None, None),
    ">= 2, cap 30": (2, 30),
    ">= 5, cap 30": (5, 30),
    ">= 10, cap 30": (10, 30),
    ">= 20": (20, None),
    ">= 40": (40, None),
}


def regime_rows(labels, min_faces, cap=30):
    """Rows of the regime: see the module docstring. ``None``: all rows."""
    if min_faces is None:
        return np.arange(labels.size)
    ids, counts = np.unique(labels, return_counts=True)
    if cap is None:
        return np.flatnonzero(np.isin(labels, ids[counts >= min_faces]))
    rng = np.random.default_rng(0)
    kept = []
    for identity in ids:
        rows = np.flatnonzero(labels == identity)
        if rows.size >= min_faces:
            kept.append(rows[rng.permutation(rows.size)][:cap])
    return np.sort(np.concatenate(kept))


#: Photo-library cells of ``--libraries``: (smallest person, strangers' share).
LIBRARIES = ((40, 0.1), (20, 0.1), (20, 0.3))


def library_rows(labels, min_faces, stranger_share, seed=0):
    """Rows of a photo library: see the module docstring."""
    ids, counts = np.unique(labels, return_counts=True)
    people = np.flatnonzero(np.isin(labels, ids[counts >= min_faces]))
    once = np.flatnonzero(np.isin(labels, ids[counts == 1]))
    n_strangers = int(round(stranger_share * people.size / (1 - stranger_share)))
    n_strangers = min(n_strangers, once.size)
    strangers = np.random.default_rng(seed).choice(once, n_strangers, replace=False)
    return np.sort(np.concatenate([people, strangers]))


def relu_features(X, dim=1024, shift=0.2, seed=1):
    """The synthetic non-negative model of ``--relu-models``: unit rows
    projected by a fixed Gaussian matrix, shifted, cut at zero."""
    X = np.asarray(X, dtype=np.float64)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    W = np.random.default_rng(seed).standard_normal((X.shape[1], dim))
    return np.maximum(X @ W + shift, 0.0).astype(np.float32)


def split_faces(file, split):
    """``(X, y)`` of the faces of one LFW ``split`` in the model ``file``
    (``None``: both splits)."""
    data = np.load(DATA / f"{file}.npz")
    rows = (
        np.ones(data["split"].size, dtype=bool)
        if split is None
        else (data["split"] == split)
    )
    return data["features"][rows], data["labels"][rows]


#: The cells of ``--both-splits``: people of both LFW splits with at least
#: this many faces.
BOTH_SPLITS = (10, 20, 40)


def both_split_cells():
    """The cells of ``--both-splits``, as :func:`cells` gives them."""
    for model_name, file in MODELS.items():
        X_all, y_all = split_faces(file, None)
        for min_faces in BOTH_SPLITS:
            rows = regime_rows(y_all, min_faces, None)
            yield (
                "LFW both splits",
                model_name,
                f">= {min_faces}",
                X_all[rows],
                y_all[rows],
                None,
            )


def library_cells(split):
    """The photo libraries of ``--libraries``, as :func:`cells` gives them."""
    for model_name, file in MODELS.items():
        X_all, y_all = split_faces(file, split)
        for min_faces, share in LIBRARIES:
            rows = library_rows(y_all, min_faces, share)
            regime = f">= {min_faces} + {share:.0%} once"
            yield (
                f"LFW {split} library",
                model_name,
                regime,
                X_all[rows],
                y_all[rows],
                None,
            )


def cells(split, relu_models, celeba):
    """``(collection, model, regime, X, y, learned_from)`` for every cell;
    ``learned_from`` is the LFW file whose train split trains the learned
    similarity (None where it is not measured)."""
    models = [(name, file, False) for name, file in MODELS.items()]
    if relu_models:
        models += [(f"{name} relu-1024", file, True) for name, file in MODELS.items()]
    for model_name, file, relu in models:
        X_all, y_all = split_faces(file, split)
        if relu:
            X_all = relu_features(X_all)
        for regime, (min_faces, cap) in REGIMES.items():
            rows = regime_rows(y_all, min_faces, cap)
            yield (
                f"LFW {split}",
                model_name,
                regime,
                X_all[rows],
                y_all[rows],
                None if relu else file,
            )
    if celeba:
        for model_name, file in CELEBA.items():
            data = np.load(DATA / f"{file}.npz")
            X, y = data["features"], data["labels"]
            yield "CelebA", model_name, "as it is", X, y, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--no-learned", action="store_true")
    parser.add_argument("--no-celeba", action="store_true")
    parser.add_argument("--relu-models", action="store_true")
    parser.add_argument("--libraries", action="store_true")
    parser.add_argument("--only-libraries", action="store_true")
    parser.add_argument("--both-splits", action="store_true")
    parser.add_argument("--only-both-splits", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    learned = not args.no_learned and args.split == "test"
    trained = {}
    table = []
    baselines = ("Infomap", "Chinese whispers", "FC-ES")
    chosen = (
        []
        if args.only_libraries or args.only_both_splits
        else [cells(args.split, args.relu_models, not args.no_celeba)]
    )
    if args.libraries or args.only_libraries:
        chosen.append(library_cells(args.split))
    if args.both_splits or args.only_both_splits:
        chosen.append(both_split_cells())
    for collection, model, regime, X, y, lfw_file in itertools.chain(*chosen):
        if learned and lfw_file is not None and lfw_file not in trained:
            from sklearn_ndde.similarity import TransformerSimilarity

            data = np.load(DATA / f"{lfw_file}.npz")
            train = data["split"] == "train"
            trained[lfw_file] = TransformerSimilarity(random_state=0).fit(
                data["features"][train], data["labels"][train]
            )
            print(
                f"{model}: learned similarity trained at its defaults on "
                f"{train.sum()} faces in {trained[lfw_file].fit_time_:.0f} s"
            )
        start = time.perf_counter()
        labels = NDDeTPDiClustering().fit_predict(X)
        seconds = time.perf_counter() - start
        f_default = bcubed_fscore(y, labels)
        f_learned = None
        if learned and lfw_file is not None:
            est = NDDeTPDiClustering(similarity=trained[lfw_file])
            f_learned = bcubed_fscore(y, est.fit_predict(X))
        indices, cosines = knn_graph(X, 80, method="exact")
        best = best_tuned_baselines(indices, cosines, y, model)
        row = {
            "collection": collection,
            "model": model,
            "regime": regime,
            "n_faces": int(y.size),
            "n_identities": int(np.unique(y).size),
            "n_clusters": int(labels.max() + 1),
            "ndde_defaults": f_default,
            "ndde_learned": f_learned,
            "fit_seconds": seconds,
        }
        for name in baselines:
            key = name.lower().replace(" ", "_").replace("-", "_")
            row[f"{key}_tuned"], row[f"{key}_threshold"] = best[name]
        row["best_baseline"] = max(row[f"{b}_tuned"] for b in BASELINE_KEYS)
        row["gap"] = f_default - row["best_baseline"]
        table.append(row)
        learned_text = "" if f_learned is None else f" learned {f_learned:.4f}"
        print(
            f"{collection:9s} {model:24s} {regime:14s} {row['n_faces']:5d} / "
            f"{row['n_identities']:4d}  defaults {f_default:.4f}{learned_text}  "
            f"Infomap {row['infomap_tuned']:.4f}  CW "
            f"{row['chinese_whispers_tuned']:.4f}  FC-ES {row['fc_es_tuned']:.4f}  "
            f"gap {row['gap']:+.4f}",
            flush=True,
        )
    for title, part in [
        ("Defaults against the best tuned baseline", _cells_of(table, "regimes")),
        (
            "Photo libraries, defaults against the best tuned baseline",
            _cells_of(table, "libraries"),
        ),
        (
            "LFW both splits, defaults against the best tuned baseline",
            _cells_of(table, "both splits"),
        ),
    ]:
        if not part:
            continue
        gaps = np.array([r["gap"] for r in part])
        print(f"\n{title}: mean gap {gaps.mean():+.4f},")
        print(
            f"worst cell {gaps.min():+.4f}; cells within 0.005: "
            f"{int((gaps >= -0.005).sum())} of {gaps.size}"
        )
    with_learned = [r for r in table if r["ndde_learned"] is not None]
    if with_learned:
        diff = np.mean([r["ndde_learned"] - r["ndde_defaults"] for r in with_learned])
        print(f"Learned similarity minus defaults, mean over its cells: {diff:+.4f}")
    print(
        "\n| collection | model | regime | faces / people | NDDe defaults | learned | "
        "Infomap | Chinese whispers | FC-ES | gap |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        learned_text = "-" if r["ndde_learned"] is None else f"{r['ndde_learned']:.3f}"
        print(
            f"| {r['collection']} | {r['model']} | {r['regime']} | {r['n_faces']:,} / "
            f"{r['n_identities']:,} | {r['ndde_defaults']:.3f} | {learned_text} | "
            f"{r['infomap_tuned']:.3f} | {r['chinese_whispers_tuned']:.3f} | "
            f"{r['fc_es_tuned']:.3f} | {r['gap']:+.3f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1))


def _cells_of(table, kind):
    """The rows of ``table`` of one kind: ``"libraries"`` (the photo
    libraries), ``"both splits"`` (``--both-splits``) or ``"regimes"``
    (the others)."""

    def kind_of(row):
        if row["collection"].endswith("library"):
            return "libraries"
        return "both splits" if row["collection"] == "LFW both splits" else "regimes"

    return [r for r in table if kind_of(r) == kind]


#: The tuned baselines' keys in a row of the table.
BASELINE_KEYS = ("infomap", "chinese_whispers", "fc_es")


if __name__ == "__main__":
    main()
