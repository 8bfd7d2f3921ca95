"""Time and memory of the stages after the kNN graph at MS1M part1 size.

Input: a synthetic kNN graph of n = 584,013 samples and k = 80 (the size of
the paper's MS1M part1 test set): self first, then 79 distinct random
neighbours, with pair similarities in [0, 1] sorted in decreasing order.
``--layout random`` (default) draws neighbours anywhere, a graph with no
structure at all (the worst case for the caches); ``--layout block`` draws
them inside blocks of 2,000 samples, as when samples are stored by
identity; ``--layout shuffled`` is the block graph with its sample ids
permuted at random, as a real kNN graph over samples stored in no
particular order (TPDi recovers the blocks through its visiting order).
Each repeat
runs in a fresh process, which loads the input and then runs the
transitions, NDDe, TPDi, density peaks and the flow merge exactly as
``NDDeTPDiClustering`` does at its defaults (with ``--layout faces``, where
the embeddings exist, the saturated peak links too, and with a real graph
the second merge of ``recalibrate``); the extra memory is the
growth of the peak resident set over the loaded input.

    python benchmarks/speed_after_knn.py [--n 584013] [--k 80] [--repeats 5]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_faces_input(n, k, folder, cache=None, seed=0):
    """The pynndescent graph of ``make_face_embeddings(n, n // 68)``."""
    from sklearn_ndde import knn_graph
    from sklearn_ndde.datasets import make_face_embeddings

    X, _ = make_face_embeddings(n, max(1, n // 68), dim=256, random_state=seed)
    if cache is not None and Path(cache).exists():
        data = np.load(cache)
        indices, cosines = data["indices"], data["cosines"]
    else:
        indices, cosines = knn_graph(X, k, method="pynndescent", random_state=seed)
        if cache is not None:
            np.savez(cache, indices=indices, cosines=cosines)
    np.save(folder / "X.npy", X)
    np.save(folder / "indices.npy", indices)
    np.save(folder / "cosines.npy", cosines)


def make_input(n, k, folder, layout, seed=0):
    rng = np.random.default_rng(seed)
    if layout == "random":
        block = n  # neighbours anywhere, as a search over unordered samples returns
    else:
        block = 2000
    block = min(block, n)
    base = np.minimum((np.arange(n) // block) * block, n - block)
    width = np.full(n, block)
    # Distinct, non-self neighbours: increasing offsets inside the block.
    step = rng.integers(1, max(2, block // k), (n, k - 1)).cumsum(axis=1)
    others = (
        base[:, None] + (np.arange(n)[:, None] - base[:, None] + step) % width[:, None]
    )
    indices = np.hstack([np.arange(n)[:, None], others]).astype(np.int32)
    sims = np.sort(rng.random((n, k - 1)).astype(np.float32) ** 3, axis=1)[:, ::-1]
    sims = np.hstack([np.ones((n, 1), np.float32), sims])
    if layout == "shuffled":
        new_id = rng.permutation(n)
        shuffled = np.empty_like(indices)
        shuffled[new_id] = new_id[indices]
        indices = shuffled.astype(np.int32)
        sims = sims[np.argsort(new_id)]
    np.save(folder / "indices.npy", indices)
    np.save(folder / "sims.npy", np.ascontiguousarray(sims))


def peak_rss_gb():
    """Peak resident set of this process (VmHWM; ru_maxrss survives exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak():
    """Start VmHWM again from the current resident set (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_once(folder):
    from sklearn_ndde import (
        NDDeTPDiClustering,
        density_peaks,
        merge_by_flow,
        ndde_density,
        tpdi,
        transition_matrix,
    )

    defaults = NDDeTPDiClustering()

    indices = np.load(folder / "indices.npy")
    times = {}
    if (folder / "cosines.npy").exists():
        # A real kNN graph: calibrate its cosines as the estimator does.
        from sklearn_ndde.similarity import CalibratedCosineSimilarity

        cosines = np.load(folder / "cosines.npy")
        X = np.load(folder / "X.npy")
        t = time.perf_counter()
        sim = CalibratedCosineSimilarity().fit_neighbors(indices, cosines, X=X)
        sims = sim.calibrate(cosines)
        order = np.argsort(-sims, axis=1, kind="stable")
        indices = np.take_along_axis(indices, order, axis=1)
        sims = np.take_along_axis(sims, order, axis=1)
        cosines = np.take_along_axis(cosines, order, axis=1)
        times["similarity (not in total)"] = time.perf_counter() - t
        del order
    else:
        sims = np.load(folder / "sims.npy")
    X = np.load(folder / "X.npy") if (folder / "X.npy").exists() else None
    reset_peak()
    rss0 = peak_rss_gb()
    t = time.perf_counter()
    P = transition_matrix(indices, sims, sigma=0.5, top=20)
    Q = transition_matrix(indices, sims, sigma=0.05)
    times["transitions"] = time.perf_counter() - t
    t = time.perf_counter()
    density = ndde_density(P)
    times["ndde"] = time.perf_counter() - t
    t = time.perf_counter()
    distances = tpdi(Q, indices)
    times["tpdi"] = time.perf_counter() - t
    t = time.perf_counter()
    labels, parents = density_peaks(density, indices, distances, tau=defaults.tau)
    times["peaks"] = time.perf_counter() - t
    peaks = parents
    if X is not None:
        # The embeddings are at hand: link the saturated peaks as fit does.
        from sklearn_ndde import link_saturated_peaks

        t = time.perf_counter()
        labels, parents = link_saturated_peaks(
            peaks, density, indices, sims, X, sim, cosines=cosines
        )
        times["saturated links"] = time.perf_counter() - t
    t = time.perf_counter()
    labels, _ = merge_by_flow(parents, P, threshold=defaults.merge_threshold)
    times["flow merge"] = time.perf_counter() - t
    if (folder / "cosines.npy").exists() and defaults.recalibrate:
        # The links and the merge again with the calibration refitted to
        # that clustering.
        t = time.perf_counter()
        from sklearn.base import clone

        from sklearn_ndde import link_isolated_peaks, link_saturated_peaks
        from sklearn_ndde._merge import likely_connectivity

        refit = clone(sim).fit_labels(indices, cosines, labels)
        refitted = refit.calibrate(cosines)
        _, parents = link_saturated_peaks(
            peaks, density, indices, refitted, X, refit, cosines=cosines
        )
        _, parents = link_isolated_peaks(parents, density, indices, refitted)
        refitted = refitted[:, :20]
        P = transition_matrix(indices[:, :20], refitted, sigma=0.5)
        labels, _ = merge_by_flow(
            parents,
            P,
            threshold=defaults.merge_threshold,
            connectivity=likely_connectivity(indices[:, :20], refitted),
        )
        times["recalibration"] = time.perf_counter() - t
    times["total"] = sum(v for key, v in times.items() if "not in total" not in key)
    times["extra_memory_gb"] = peak_rss_gb() - rss0
    times["n_clusters"] = int(labels.max() + 1)
    print(json.dumps(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=584_013)
    parser.add_argument("--k", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--layout",
        choices=["shuffled", "block", "random", "faces"],
        default="shuffled",
        help="neighbours inside blocks of 2,000 samples, with the ids permuted "
        "at random (shuffled, the default: a clustered graph over unordered "
        "samples) or not (block); or anywhere in [0, n) with no structure "
        "(random, the worst case); or faces: the real pynndescent graph of "
        "make_face_embeddings(n, n // 68, dim=256), calibrated as fit does",
    )
    parser.add_argument(
        "--cache", help="with --layout faces: reuse (or write) the graph here (.npz)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_once(Path(args.child))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.layout == "faces":
            make_faces_input(args.n, args.k, folder, args.cache)
        else:
            make_input(args.n, args.k, folder, args.layout)
        # Compile the numba kernels once, outside the timed runs.
        subprocess.run(
            [sys.executable, __file__, "--child", str(folder)],
            check=True,
            capture_output=True,
        )
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(folder)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"n = {args.n:,}, k = {args.k}, {args.layout} layout, {args.repeats} runs, "
        "median (min-max):"
    )
    keys = ["transitions", "ndde", "tpdi", "peaks", "flow merge", "total"]
    if "saturated links" in runs[0]:
        keys.insert(4, "saturated links")
    if "recalibration" in runs[0]:
        keys.insert(-1, "recalibration")
    if args.layout == "faces":
        keys.insert(0, "similarity (not in total)")
    for key in keys:
        v = np.array([r[key] for r in runs])
        print(f"  {key:26s} {np.median(v):7.2f} s  ({v.min():.2f}-{v.max():.2f})")
    mem = np.array([r["extra_memory_gb"] for r in runs])
    print(f"  extra peak memory {np.median(mem):.2f} GB (max {mem.max():.2f})")


if __name__ == "__main__":
    main()
