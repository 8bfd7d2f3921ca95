"""Detection and embedding throughput of the photos front end, and a rerun.

On ``../shared/data/photos`` (or ``--photos``), each in a fresh process:

1. ``FaceEmbedder().embed`` on every readable picture: faces per second and
   photos per second on this machine (model loading reported apart);
2. ``sklearn-ndde photos`` end to end into an empty folder;
3. the same command again with nothing new (everything from the cache).

Prints the three figures and the ratio of the first run to the second.
Needs ``pip install "sklearn-ndde[faces]"``.

    python benchmarks/photos_speed.py [--photos DIR] [--repeats 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def throughput(folder):
    from sklearn_ndde.faces import FaceEmbedder, find_photos, load_photo

    start = time.perf_counter()
    embedder = FaceEmbedder()
    embedder._load()
    load = time.perf_counter() - start
    photos, _ = find_photos(folder)
    n_photos = n_faces = 0
    pixels = 0
    start = time.perf_counter()
    for rel in photos:
        try:
            image = load_photo(folder / rel)
        except ValueError:
            continue
        boxes, _ = embedder.embed(image)
        n_photos += 1
        n_faces += len(boxes)
        pixels += image.shape[0] * image.shape[1]
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "load": load,
                "seconds": seconds,
                "photos": n_photos,
                "faces": n_faces,
                "megapixels": pixels / 1e6,
            }
        )
    )


def cli(folder, out):
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sklearn_ndde", "photos", str(folder), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        throughput(args.photos)
        return
    runs = []
    for _ in range(args.repeats):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--photos", str(args.photos)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    print(
        f"{best['photos']} photos ({best['megapixels']:.1f} megapixels), "
        f"{best['faces']} faces, 2 cores, median of {args.repeats} runs:"
    )
    seconds = float(np.median([r["seconds"] for r in runs]))
    print(
        f"  detection + alignment + descriptors: {seconds:.2f} s = "
        f"{best['faces'] / seconds:.2f} faces/s, {best['photos'] / seconds:.2f} "
        f"photos/s (model loading {np.median([r['load'] for r in runs]):.2f} s apart)"
    )
    first, again = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            first.append(cli(args.photos, out))
            again.append(cli(args.photos, out))
    first_s, again_s = float(np.median(first)), float(np.median(again))
    print(f"  sklearn-ndde photos, first run:          {first_s:.2f} s")
    print(f"  the same again, nothing new (cache):     {again_s:.2f} s")
    print(f"  ratio first / second:                    {first_s / again_s:.1f}x")


if __name__ == "__main__":
    main()
