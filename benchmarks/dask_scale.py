"""``NDDeTPDiClustering().fit`` on a Dask cluster against one process.

For each n, on ``make_face_embeddings(n, n // 68, dim=256)`` (float32, row
chunks of ``--chunk`` rows): ``fit`` on the dask array on a
``distributed.LocalCluster`` of ``--workers`` worker processes of one
thread each with ``--memory-limit`` per worker, the array read from an
``.npy`` stack on disk (``da.from_npy_stack``, as data on shared storage
is read: the workers hold no copy of it between tasks): the time of each
stage, the bytes the workers sent each other during it and each worker's
peak resident memory during it, and the client's peak over the fit; then
``fit`` in a fresh single process (time, peak memory, BCubed F) on the same
rows; BCubed F of both and the adjusted Rand index between them.
``--json`` writes the rows.

    python benchmarks/dask_scale.py [--n 584013 1740301] [--chunk 100000]
        [--workers 2] [--memory-limit 4GiB] [--json PATH]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from dask_knn import _sent
from sklearn.metrics import adjusted_rand_score


def _data(n):
    from sklearn_ndde.datasets import make_face_embeddings

    X, y = make_face_embeddings(n, max(1, n // 68), dim=256, random_state=0)
    return X.astype(np.float32), y


def single(n, out):
    from speed_after_knn import peak_rss_gb, reset_peak

    from sklearn_ndde import NDDeTPDiClustering
    from sklearn_ndde.metrics import bcubed_fscore

    X, y = _data(n)
    reset_peak()
    start = time.perf_counter()
    est = NDDeTPDiClustering(random_state=0).fit(X)
    seconds = time.perf_counter() - start
    np.save(out, est.labels_)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_gb": peak_rss_gb(),
                "bcubed_f": bcubed_fscore(y, est.labels_),
                "knn_recall": est.knn_recall_,
            }
        )
    )


def _stage_peak_gb():
    """A worker's peak resident memory since the last call (then reset)."""
    from speed_after_knn import peak_rss_gb, reset_peak

    peak = peak_rss_gb()
    reset_peak()
    return peak


def distributed_fit(n, args):
    import dask.array as da
    from distributed import Client, LocalCluster
    from speed_after_knn import peak_rss_gb, reset_peak

    from sklearn_ndde import NDDeTPDiClustering, _dask_fit
    from sklearn_ndde.metrics import bcubed_fscore

    X, y = _data(n)
    store = tempfile.TemporaryDirectory(prefix="dask_scale_")
    da.to_npy_stack(store.name, da.from_array(X, chunks=(args.chunk, -1)))
    del X
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        memory_limit=args.memory_limit,
        dashboard_address=None,
    )
    stages = []
    with store, cluster, Client(cluster) as client:
        dX = da.from_npy_stack(store.name, mmap_mode=None)

        def hook(name):
            peaks = list(client.run(_stage_peak_gb).values())
            stages.append(
                (name, time.perf_counter(), sum(client.run(_sent).values()), peaks)
            )
            if len(stages) > 1:  # as it goes, in case a run does not end
                print(
                    f"  {stages[-2][0]}: {stages[-1][1] - stages[-2][1]:.1f} s, peak "
                    f"per worker {max(peaks):.2f} GB",
                    file=sys.stderr,
                    flush=True,
                )

        _dask_fit._stage_hook = hook
        reset_peak()
        start = time.perf_counter()
        est = NDDeTPDiClustering(random_state=0).fit(dX)
        labels = est.labels_.compute()
        seconds = time.perf_counter() - start
        client_peak = peak_rss_gb()
        _dask_fit._stage_hook = None
        # The whole run's peak per worker: the largest of its stage peaks
        # (the first one covers loading the data).
        peaks = np.max([stage[3] for stage in stages], axis=0).tolist()
    per_stage = [
        {
            "stage": a[0],
            "seconds": b[1] - a[1],
            "bytes_between_workers": b[2] - a[2],
            "peak_gb_per_worker": b[3],
        }
        for a, b in zip(stages, stages[1:])
    ]
    return labels, {
        "seconds": seconds,
        "peak_gb_per_worker": peaks,
        "client_peak_gb": client_peak,
        "knn_recall": est.knn_recall_,
        "bcubed_f": bcubed_fscore(y, labels),
        "stages": per_stage,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[584_013])
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-single", action="store_true", help="the Dask run alone")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        single(args.single, args.out)
        return
    rows = []
    for n in args.n:
        # The Dask run first (the one most likely to fail), then one process.
        labels, dist = distributed_fit(n, args)
        one = None
        if not args.skip_single:
            labels_file = Path(f"/tmp/dask_scale_{n}.npy")
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--single",
                    str(n),
                    "--out",
                    str(labels_file),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            one = json.loads(proc.stdout.strip().splitlines()[-1])
            dist["ari_to_single"] = adjusted_rand_score(np.load(labels_file), labels)
        rows.append({"n": n, "single": one, "dask": dist})
        print(f"n = {n:,} x 256, row chunks of {args.chunk:,}")
        if one is not None:
            print(
                f"  one process (2 threads): {one['seconds']:.1f} s, peak "
                f"{one['peak_gb']:.2f} GB, recall {one['knn_recall']:.3f}, "
                f"BCubed F {one['bcubed_f']:.4f}"
            )
        ari = dist.get("ari_to_single")
        print(
            f"  Dask, {args.workers} workers x 1 thread, {args.memory_limit} each: "
            f"{dist['seconds']:.1f} s, peak per worker "
            f"{max(dist['peak_gb_per_worker']):.2f} GB (the client "
            f"{dist['client_peak_gb']:.2f} GB), recall "
            f"{dist['knn_recall']:.3f}, BCubed F {dist['bcubed_f']:.4f}"
            + ("" if ari is None else f", ARI to one process {ari:.4f}")
        )
        for stage in dist["stages"]:
            print(
                f"    {stage['stage']:22s} {stage['seconds']:7.1f} s "
                f"{stage['bytes_between_workers'] / 1e6:9.1f} MB between workers, "
                f"peak {max(stage['peak_gb_per_worker']):.2f} GB per worker"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
