"""Finding and reading photos, and the output folder's files: its lock,
scratch folders and swaps."""

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: Suffixes read as pictures (any case); other files are listed as skipped.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

#: The reason given for a skipped file whose suffix is not a picture's.
NOT_A_PICTURE = "not a JPEG or PNG file"

_CACHE = "embeddings.npz"
_STATE = "state.json"
_PEOPLE = "people.csv"
_FACES = "faces.csv"
_MARKER = ".made-by-sklearn-ndde"

_MISSING_EXTRA = (
    "The photos front end needs dlib and its face models: "
    'pip install "sklearn-ndde[faces]" (in a clone of the repository: '
    'pip install -e ".[faces]")'
)


def find_photos(folder, exclude=()):
    """Every file under ``folder``, split into pictures and skipped files.

    Hidden files and folders (a leading ``.``) and the folders in
    ``exclude`` (such as an output folder inside the photo folder) are left
    out. Files whose suffix is not in ``PHOTO_SUFFIXES`` are skipped with
    the reason; whether a picture can be decoded is only known when
    :func:`load_photo` reads it.

    Returns
    -------
    photos : list of pathlib.Path
        Relative to ``folder``, sorted.
    skipped : list of (pathlib.Path, str)
        Relative path and reason of each file that is not a picture.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder.")
    excluded = {Path(e).resolve() for e in exclude}
    photos, skipped = [], []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (root / d).resolve() not in excluded
        )
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = (root / name).relative_to(folder)
            if Path(name).suffix.lower() in PHOTO_SUFFIXES:
                photos.append(rel)
            else:
                skipped.append((rel, NOT_A_PICTURE))
    return sorted(photos), sorted(skipped)


#: The largest picture decoded, in pixels (100 megapixels: 300 MB as RGB);
#: its size is read from the header first, so a larger one (a "pixel bomb",
#: such as a 144-megapixel PNG of 136 KB) is refused before decoding.
MAX_PIXELS = 100_000_000


def load_photo(path):
    """A picture as an RGB ``uint8`` array, turned upright by its EXIF tag.

    RGBA, greyscale, palette and CMYK pictures are converted to RGB.
    Pictures of more than ``MAX_PIXELS`` pixels are refused before they are
    decoded.

    Raises
    ------
    ValueError
        If the file cannot be decoded (not a picture, truncated, damaged, or
        too large), with the reason.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValueError(
                    f"{width} x {height} pixels, more than the "
                    f"{MAX_PIXELS // 1_000_000} megapixels decoded"
                )
            image = ImageOps.exif_transpose(image)
            image.load()
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError("not a picture that can be decoded") from None
    except ValueError as exc:
        if "megapixels decoded" in str(exc):
            raise
        raise ValueError(f"truncated or damaged, cannot be decoded ({exc})") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"truncated or damaged, cannot be decoded ({exc})") from None


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_or_copy(source, target):
    """``target`` as a hard link to ``source`` (a copy where links fail)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _swap_in(new, current, aside):
    """Put the folder ``new`` in place of ``current`` (moved to ``aside``,
    then removed): two renames, so that ``current`` is never half-written."""
    if current.exists():
        current.rename(aside)
    try:
        new.rename(current)
    except BaseException:
        if aside.exists() and not current.exists():
            aside.rename(current)
        raise


@contextmanager
def _scratch(out_dir):
    """A hidden folder of the run's temporary files in ``out_dir``, removed
    when the run ends, however it ends (an interrupt included)."""
    scratch = out_dir / f".run-{os.getpid()}"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    try:
        yield scratch
    finally:
        people = out_dir / "people"
        if not people.exists() and (scratch / "old-people").exists():
            (scratch / "old-people").rename(people)
        shutil.rmtree(scratch, ignore_errors=True)


_LOCK = ".sklearn-ndde.lock"


@contextmanager
def _one_run_at_a_time(out_dir):
    """Hold ``out_dir``'s lock file (with this process's id) for the run.

    A second run into the same folder is refused with the first run's
    process id; a lock left by a process that no longer runs is taken over.
    """
    lock = out_dir / _LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner > 0 and owner != os.getpid() and _alive(owner):
                raise ValueError(
                    f"Another sklearn-ndde photos run (process {owner}) is writing "
                    f"to {str(out_dir)!r}; wait for it to end."
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        break
    else:
        raise ValueError(f"Cannot lock {str(out_dir)!r} for this run.")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid):
    """Whether a process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
