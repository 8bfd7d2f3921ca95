"""Start-up: wall time of a small ``sklearn-ndde cluster`` call, fresh process.

Writes ``make_face_embeddings(3000, 300, dim=256)`` to a temporary ``.npy``,
runs ``python -m sklearn_ndde cluster FILE`` once to warm the caches (numba's
compiled kernels, the file system), then ``--repeats`` more times, each in
a new process, and prints the median wall time next to the time the command
itself reports for the clustering. Then the time to the error message of a
bad call (a missing file, an option out of range, a bad output suffix), the
median of ``--repeats`` fresh processes each.

    python benchmarks/startup.py [--n 3000] [--repeats 5]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sklearn_ndde.datasets import make_face_embeddings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    X, _ = make_face_embeddings(args.n, args.n // 10, dim=256, random_state=0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "faces.npy"
        np.save(path, X)
        command = [sys.executable, "-m", "sklearn_ndde", "cluster", str(path), "--json"]
        subprocess.run(command, check=True, capture_output=True)  # warm-up
        walls, inside = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            proc = subprocess.run(command, check=True, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            inside.append(json.loads(proc.stdout)["seconds"])
        bad_calls = {
            "missing file": ["missing.npy"],
            "--tau 3": [str(path), "--tau", "3"],
            "-o labels.txt": [str(path), "-o", "labels.txt"],
        }
        errors = {}
        for name, extra in bad_calls.items():
            bad = [sys.executable, "-m", "sklearn_ndde", "cluster", *extra]
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                proc = subprocess.run(bad, capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                assert proc.returncode == 2 and proc.stderr.count("\n") == 1
            errors[name] = np.median(times)
    print(
        f"sklearn-ndde cluster on {args.n:,} x 256 faces, fresh process, median of "
        f"{args.repeats}: {np.median(walls):.2f} s wall, of which the clustering "
        f"{np.median(inside):.2f} s"
    )
    for name, seconds in errors.items():
        print(
            f"bad call ({name}): one-line error after {seconds:.2f} s "
            f"(median of {args.repeats} fresh processes)"
        )


if __name__ == "__main__":
    main()
