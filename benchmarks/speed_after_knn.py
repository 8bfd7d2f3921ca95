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
transitions, NDDe, TPDi, density peaks and the flow merge as
``NDDeTPDiClustering`` does at its defaults; with ``--layout faces`` (a
real graph, with its embeddings) it runs the estimator's own stages after
the graph, every one of them, and times each; the extra memory is the
growth of the peak resident set over the loaded input.

With ``--authors PATH`` (a checkout of ``echoanran/On-Mitigating-Hard-Clusters``
fetched into a cache folder outside this repository; never commit it), each
repeat also runs the authors' four stages after the graph on the same graph
(``utils/compute_density.py``: the one-step NDDe over the top 20 and TPDi
on as many processes as there are cores; ``utils/dpc.py``: the density
peaks at tau = 0.7), in a fresh process as ours, and the script prints
the ratio of the medians of the paper's four stages (transitions, NDDe,
TPDi, density peaks at tau = 0.7). Rows stay in the generator's order.

    python benchmarks/speed_after_knn.py [--n 584013] [--k 80] [--repeats 5]
                                         [--authors PATH]
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


def run_faces(folder):
    """Every stage after the graph as ``NDDeTPDiClustering`` runs them at
    its defaults (``_numpy_stages.cluster_graph``, timed stage by stage)."""
    from contextlib import contextmanager

    from sklearn_ndde import NDDeTPDiClustering
    from sklearn_ndde._numpy_stages import cluster_graph

    indices = np.load(folder / "indices.npy")
    cosines = np.load(folder / "cosines.npy")
    X = np.load(folder / "X.npy")
    times = {}

    @contextmanager
    def stage(name):
        start = time.perf_counter()
        yield
        times[name] = time.perf_counter() - start

    reset_peak()
    rss0 = peak_rss_gb()
    out = cluster_graph(NDDeTPDiClustering(), indices, cosines, X, X, stage)
    times["total"] = sum(times.values())
    times["total after the similarity"] = times["total"] - times["pair similarity"]
    times["extra_memory_gb"] = peak_rss_gb() - rss0
    times["n_clusters"] = int(out["n_clusters_"])
    print(json.dumps(times))


def run_once(folder):
    if (folder / "cosines.npy").exists():
        return run_faces(folder)
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
    sims = np.load(folder / "sims.npy")
    times = {}
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
    density_peaks(density, indices, distances, tau=0.7)
    times["peaks at tau 0.7 (not in total)"] = time.perf_counter() - t
    t = time.perf_counter()
    labels, parents = density_peaks(density, indices, distances, tau=defaults.tau)
    times["peaks"] = time.perf_counter() - t
    t = time.perf_counter()
    labels, _ = merge_by_flow(parents, P, threshold=defaults.merge_threshold)
    times["flow merge"] = time.perf_counter() - t
    times["total"] = sum(v for key, v in times.items() if "not in total" not in key)
    times["paper's four stages"] = (
        times["transitions"]
        + times["ndde"]
        + times["tpdi"]
        + times["peaks at tau 0.7 (not in total)"]
    )
    times["extra_memory_gb"] = peak_rss_gb() - rss0
    times["n_clusters"] = int(labels.max() + 1)
    print(json.dumps(times))


def run_authors(folder, authors):
    """The authors' four stages on the same graph: their own code, loaded
    from the checkout ``authors`` (its ``utils`` package without its
    ``__init__``, which needs GPUs)."""
    import importlib.util
    import os
    import types

    utils = types.ModuleType("utils")
    utils.__path__ = [str(Path(authors) / "utils")]
    sys.modules["utils"] = utils

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f"utils.{name}", Path(authors) / "utils" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"utils.{name}"] = module
        spec.loader.exec_module(module)
        return module

    Density = load("compute_density").Density
    DPC = load("dpc").DPC
    indices = np.load(folder / "indices.npy")
    # Their distance is 1 - the pair similarity, each row in increasing order.
    dist = 1.0 - np.load(folder / "sims.npy").astype(np.float64)
    times = {}
    t = time.perf_counter()
    density = Density(indices, dist).approximate_NDDe(sigma=0.5, k=20)
    times["transitions and ndde"] = time.perf_counter() - t
    t = time.perf_counter()
    tpdi = Density(indices, dist).TPDi(sigma=0.05, processNum=os.cpu_count())
    times["tpdi"] = time.perf_counter() - t
    t = time.perf_counter()
    DPC(indices, tpdi[:, : indices.shape[1]], max_conn=1).run(
        confidence=density, tau=0.7
    )
    times["peaks at tau 0.7"] = time.perf_counter() - t
    times["paper's four stages"] = sum(times.values())
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
    parser.add_argument(
        "--authors", help="a checkout of the authors' code, to run it as well"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-authors", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child_authors:
        run_authors(Path(args.child), args.child_authors)
        return
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
        runs, theirs = [], []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(folder)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            if args.authors and args.layout != "faces":
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(folder),
                        "--child-authors",
                        args.authors,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                theirs.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"n = {args.n:,}, k = {args.k}, {args.layout} layout, {args.repeats} runs, "
        "median (min-max):"
    )
    keys = [key for key in runs[0] if key not in ("extra_memory_gb", "n_clusters")]
    for key in keys:
        v = np.array([r[key] for r in runs])
        print(f"  {key:28s} {np.median(v):7.2f} s  ({v.min():.2f}-{v.max():.2f})")
    mem = np.array([r["extra_memory_gb"] for r in runs])
    print(f"  extra peak memory {np.median(mem):.2f} GB (max {mem.max():.2f})")
    if theirs:
        print("The authors' code on the same graph, median (min-max):")
        for key in theirs[0]:
            v = np.array([r[key] for r in theirs])
            print(f"  {key:28s} {np.median(v):7.2f} s  ({v.min():.2f}-{v.max():.2f})")
        ours = np.median([r["paper's four stages"] for r in runs])
        other = np.median([r["paper's four stages"] for r in theirs])
        print(
            f"The paper's four stages: {ours:.2f} s here, {other:.2f} s in the "
            f"authors' code: {other / ours:.1f}x"
        )


if __name__ == "__main__":
    main()
