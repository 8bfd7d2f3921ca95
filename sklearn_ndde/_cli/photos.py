"""The ``photos`` command: a folder of photos in, its people out."""

import sys
from pathlib import Path

from .common import _to_json


def add_parser(sub):
    """Add the command to the subparsers ``sub``."""
    photos = sub.add_parser(
        "photos",
        help="find the people in a folder of photos (needs sklearn-ndde[faces])",
        description="Detect, align and embed the faces of every JPEG and PNG "
        "under PHOTOS_DIR with dlib, cluster them into people, and write "
        "faces.csv, people.csv, a crop of each face under people/ and "
        "index.html to OUT_DIR. Running again on the same OUT_DIR detects "
        "only new photos and keeps every person's id and name.",
    )
    photos.add_argument("photos_dir", help="folder of photos, searched recursively")
    photos.add_argument("-o", "--output", required=True, help="output folder")
    photos.add_argument(
        "--upsample",
        type=int,
        default=1,
        help="times each photo is doubled before detection, 0 to 3; 0 is 4x "
        "faster but misses faces under about 80 px (default %(default)s)",
    )
    photos.add_argument(
        "--min-face-size",
        type=int,
        default=20,
        help="smallest face kept, in pixels of width (default %(default)s)",
    )
    photos.add_argument(
        "--max-side",
        type=int,
        default=2000,
        help="photos larger than this many pixels (32 to 20,000) are shrunk for "
        "detection; 0 keeps them whole (default %(default)s)",
    )
    photos.add_argument(
        "--min-faces",
        type=int,
        default=2,
        help="smallest group of faces that makes a person (default %(default)s)",
    )
    photos.add_argument("--json", action="store_true", help="machine-readable summary")
    photos.add_argument(
        "-v", "--verbose", action="count", default=0, help="progress bar on stderr"
    )
    photos.set_defaults(func=run)


def run(args):
    from .._photos.files import NOT_A_PICTURE
    from ..faces import FaceEmbedder, run_photos

    if args.output is None:
        raise ValueError("photos needs an output folder: -o OUT_DIR.")
    if args.min_faces < 1:
        raise ValueError(f"--min-faces must be at least 1, got {args.min_faces}.")
    embedder = FaceEmbedder(
        upsample=args.upsample,
        min_face_size=args.min_face_size,
        max_side=args.max_side or None,
    )
    show = args.verbose > 0 or (not args.json and sys.stderr.isatty())
    result = run_photos(
        args.photos_dir,
        args.output,
        embedder=embedder,
        min_faces=args.min_faces,
        progress=show,
    )
    if args.json:
        print(_to_json(result))
        return 0
    others = [s["file"] for s in result["skipped"] if s["reason"] == NOT_A_PICTURE]
    for item in result["skipped"]:
        if item["reason"] != NOT_A_PICTURE:
            print(f"not read: {item['file']}: {item['reason']}")
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        print(f"left out {len(others)} files that are not JPEG or PNG: {shown}")
    cached = result["photos"] - result["detected_photos"]
    print(
        f"{result['faces']} faces in {result['photos']} photos"
        + (
            f" ({result['detected_photos']} searched now, {cached} from the cache)"
            if cached
            else ""
        )
        + f": {result['people']} people, {result['unassigned']} faces unassigned, "
        f"in {result['seconds']:.1f} s. Open {Path(args.output) / 'index.html'}; "
        f"name the people in {Path(args.output) / 'people.csv'}."
    )
    return 0
