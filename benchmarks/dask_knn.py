"""The exact kNN graph on a Dask cluster against the single-process search.

On ``make_face_embeddings(n, n // 68, dim=256)`` (float32, default n =
60,000, row chunks of ``--chunk`` rows), builds the k = 80 graph with
``knn_graph(dX, 80)`` on a ``distributed.LocalCluster`` of 2 worker
processes of one thread each (memory limit ``--memory-limit`` per worker),
after ``knn_graph(X, 80, method="exact")`` in this process (2 threads),
and prints the times, the peak resident memory of each worker, the bytes
the workers sent each other and the share of equal neighbour ids.

    python benchmarks/dask_knn.py [--n 60000] [--chunk 7500] [--memory-limit 2GiB]
"""

import argparse
import resource
import time

import numpy as np


def _peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _sent(dask_worker):
    return dask_worker.transfer_outgoing_bytes_total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--chunk", type=int, default=7_500)
    parser.add_argument("--memory-limit", default="2GiB")
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    from sklearn_ndde import knn_graph
    from sklearn_ndde.datasets import make_face_embeddings

    X, _ = make_face_embeddings(args.n, args.n // 68, dim=256, random_state=0)
    X = X.astype(np.float32)
    start = time.perf_counter()
    ref_indices, ref_sims = knn_graph(X, 80, method="exact")
    single = time.perf_counter() - start
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        memory_limit=args.memory_limit,
        dashboard_address=None,
    )
    with cluster, Client(cluster) as client:
        dX = da.from_array(X, chunks=(args.chunk, -1)).persist()
        client.wait_for_workers(2)
        before = sum(client.run(_sent).values())
        start = time.perf_counter()
        indices, sims = knn_graph(dX, 80)
        indices, sims = da.compute(indices, sims)
        seconds = time.perf_counter() - start
        moved = sum(client.run(_sent).values()) - before
        peaks = list(client.run(_peak_gb).values())
    blocks = -(-args.n // args.chunk)
    print(f"n = {args.n:,} x 256, k = 80, {blocks} row blocks of {args.chunk:,}")
    print(
        f"  Dask, 2 workers x 1 thread: {seconds:.1f} s, peak per worker "
        f"{max(peaks):.2f} GB (limit {args.memory_limit}), "
        f"{moved / 1e6:.0f} MB sent between workers "
        f"(the data: {X.nbytes / 1e6:.0f} MB)"
    )
    print(f"  one process, 2 threads:    {single:.1f} s")
    print(
        f"  equal neighbour ids: {np.mean(indices == ref_indices):.6f}, largest "
        f"cosine difference {np.abs(sims - ref_sims).max():.1e}"
    )


if __name__ == "__main__":
    main()
