"""Wall time of ``NDDeTPDiClustering().fit`` on a whole LFW file.

13,233 faces, exact kNN included; median of several fits after one warm-up
fit that compiles the numba kernels. Needs ../shared/data.

    python benchmarks/fit_time_lfw.py [--repeats 5]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from sklearn_ndde import NDDeTPDiClustering

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in ["lfw_dlib128", "lfw_mobileface256"]:
        X = np.load(DATA / f"{name}.npz")["features"]
        NDDeTPDiClustering().fit(X)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            NDDeTPDiClustering().fit(X)
            times.append(time.perf_counter() - start)
        times = np.array(times)
        print(
            f"{name} {X.shape}: fit median {np.median(times):.2f} s "
            f"(min {times.min():.2f}, max {times.max():.2f}, {args.repeats} runs)"
        )


if __name__ == "__main__":
    main()
