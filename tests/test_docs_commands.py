"""Every command and code block of the README and the docs runs as written.

The commands run in a temporary folder holding small stand-ins for the files
they name (``features.npy``, ``truth.npy``, a learn-to-cluster
``part1_test.bin`` with its ``.meta`` labels and ``faiss_k_80.npz`` kNN file);
``pip install`` lines and the test command itself are skipped.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sklearn_ndde import knn_graph
from sklearn_ndde.datasets import make_face_embeddings

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.rst"))
SKIP = ("pip ", "python -m pytest")


def _console_commands(text):
    """``$ command`` lines of console blocks and lines of bash blocks."""
    commands = [line.strip()[2:] for line in re.findall(r"^\s*\$ .*$", text, re.M)]
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(line)
    return [c for c in commands if not c.startswith(SKIP)]


def _python_blocks(text):
    """The python blocks of a page, each with the text of the ``Output``
    block that follows it (None when there is none)."""
    found = re.findall(
        r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)"
        r"(?:\.\. code-block:: text\n   :caption: Output\n\n((?:   .*\n|\n)+))?",
        text,
    )

    def unindent(block):
        return "\n".join(line[3:] for line in block.splitlines())

    return [
        (unindent(code), unindent(out).strip() if out else None) for code, out in found
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    X, y = make_face_embeddings(400, 40, dim=256, random_state=0)
    np.save(folder / "features.npy", X)
    np.save(folder / "truth.npy", y)
    X.astype("<f4").tofile(folder / "part1_test.bin")
    (folder / "part1_test.meta").write_text("".join(f"{v}\n" for v in y))
    indices, sims = knn_graph(X, 80)
    knn = np.stack([indices.astype(np.float32), 1.0 - sims], axis=1)
    np.savez_compressed(folder / "faiss_k_80.npz", data=knn)
    # A photo folder for ``sklearn-ndde photos my_photos``: two small pictures
    # (no faces in them) and a file that is not one.
    from PIL import Image

    photos = folder / "my_photos"
    (photos / "2026").mkdir(parents=True)
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))
    Image.fromarray(np.dstack([ramp] * 3)).save(photos / "a.jpg")
    Image.fromarray(ramp).save(photos / "2026" / "b.png")
    (photos / "notes.txt").write_text("not a photo")
    return folder


#: The optional extra that installs each module a page may import.
EXTRAS = {
    "dask": "dask",
    "distributed": "dask",
    "dlib": "faces",
    "face_recognition_models": "faces",
    "torch": "torch",
    "matplotlib": "plot",
}


def _missing_extra(code):
    """``(module, extra)`` for the first module that ``code`` imports and
    that is not installed, or None."""
    for name in re.findall(r"^\s*(?:from|import)\s+(\w+)", code, re.M):
        if name in EXTRAS and importlib.util.find_spec(name) is None:
            return name, EXTRAS[name]
    if "sklearn_ndde.faces" in code and not _has_dlib():
        return "dlib", "faces"
    return None


def _has_dlib():
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        return False
    return True


def _run(command, folder):
    # ``sklearn-ndde`` is the installed entry point; run it with this Python.
    if command.startswith("sklearn-ndde "):
        command = f"{sys.executable} -m sklearn_ndde " + command[len("sklearn-ndde ") :]
    elif command.startswith("python "):
        command = sys.executable + command[len("python") :]
    proc = subprocess.run(
        command, shell=True, cwd=folder, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{command!r} failed:\n{proc.stderr[-2000:]}"
    return proc


def _is_photos(command):
    return command.startswith("sklearn-ndde photos")


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_commands_run_as_written(page, workdir):
    for command in _console_commands(page.read_text()):
        if _is_photos(command):
            continue  # test_photos_commands_run_as_written
        if "demo" in command and "--n-samples" not in command:
            command += " --n-samples 300"  # the same job, smaller
        _run(command, workdir)


PHOTO_PAGES = [
    p
    for p in [ROOT / "README.md", *DOCS]
    if any(map(_is_photos, _console_commands(p.read_text())))
]


@pytest.mark.parametrize("page", PHOTO_PAGES, ids=lambda p: p.name)
def test_photos_commands_run_as_written(page, workdir):
    if not _has_dlib():
        pytest.skip(
            'sklearn-ndde photos needs dlib (pip install "sklearn-ndde[faces]")'
        )
    for command in filter(_is_photos, _console_commands(page.read_text())):
        _run(command, workdir)


def test_entry_point_is_installed():
    if shutil.which("sklearn-ndde") is None:
        pytest.skip("package not installed with its scripts")
    out = subprocess.run(
        ["sklearn-ndde", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "cluster" in out and "evaluate" in out and "train" in out


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    blocks = _python_blocks(page.read_text())
    namespace = {}
    for block, output in blocks:
        if "fit_predict(X)  # X:" in block:
            continue  # the one-line teaser, X undefined on purpose
        missing = _missing_extra(block)
        if missing is not None:
            # The page's later blocks build on this one: skip them all.
            pytest.skip(
                f"{page.name} needs {missing[0]} "
                f'(pip install "sklearn-ndde[{missing[1]}]")'
            )
        capsys.readouterr()
        exec(compile(block, str(page), "exec"), namespace)
        if output is not None:
            # The output the page shows is the one the block prints.
            assert capsys.readouterr().out.strip() == output


def test_readme_example_block_runs(capsys):
    text = (ROOT / "README.md").read_text()
    block, shown = re.search(
        r"## Example\n\n```python\n(.*?)```\n\n```text\n(.*?)```", text, re.S
    ).groups()
    assert len(block.strip().splitlines()) <= 10
    exec(compile(block, "README.md", "exec"), {})
    # The output the README shows is the one the example prints.
    assert capsys.readouterr().out.strip() == shown.strip()
