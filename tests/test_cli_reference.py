"""Every command and option of the CLI reference runs.

``COMMANDS`` are the command lines of this test; the first test checks that
together they use every option the parser (and so the generated reference
page) documents, so a new option fails here until a command uses it.
"""

import argparse
import json
import shlex

import numpy as np
import pytest

from sklearn_ndde import knn_graph
from sklearn_ndde.__main__ import build_parser, main
from sklearn_ndde.datasets import make_face_embeddings

COMMANDS = [
    "demo --n-samples 200 --random-state 1 --figure demo.png --json -v",
    "demo --n-samples 200 --no-figure",
    "cluster features.npy -o labels.npy --k 20 --tau 0.3 --merge-threshold 0.2 "
    "--knn-method exact --knn-recall 0.9 --labels truth.npy --n-jobs 1 "
    "--device cpu --json -v",
    "cluster part1_test.bin --dim 32 --knn faiss_k_20.npz --k 20 "
    "--output knn_labels.npy --no-recalibrate",
    "evaluate labels.npy --labels truth.npy --features features.npy --bins 4 "
    "--figure report.png --name NDDe-TPDi --json",
    "evaluate part1_test.meta --labels part1_test.meta --features part1_test.bin "
    "--dim 32",
    "train features.npy --labels truth.npy -o model.pt --dim 32 --k 10 --epochs 1 "
    "--learning-rate 0.001 --batch-size 64 --validation-fraction 0.2 --d-model 16 "
    "--dim-feedforward 32 --device cpu --random-state 0 --json -v",
    "cluster features.npy --model model.pt --k 10 -o learned.npy",
    "photos my_photos -o people --upsample 0 --min-face-size 20 --max-side 500 "
    "--min-faces 2 --json -v",
]


def _options():
    parser = build_parser()
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for name, command in commands.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                yield name, action.option_strings


def test_the_commands_use_every_documented_option():
    used = {}
    for line in COMMANDS:
        name, *words = shlex.split(line)
        used.setdefault(name, set()).update(words)
    missing = [
        f"{name} {strings[-1]}"
        for name, strings in _options()
        if not used.get(name, set()) & set(strings)
    ]
    assert not missing, missing


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    X, y = make_face_embeddings(300, 30, dim=32, random_state=0)
    np.save(folder / "features.npy", X)
    np.save(folder / "truth.npy", y)
    X.astype("<f4").tofile(folder / "part1_test.bin")
    (folder / "part1_test.meta").write_text("".join(f"{v}\n" for v in y))
    indices, sims = knn_graph(X, 20)
    knn = np.stack([indices.astype(np.float32), 1.0 - sims], axis=1)
    np.savez_compressed(folder / "faiss_k_20.npz", data=knn)
    from PIL import Image

    (folder / "my_photos").mkdir()
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))
    Image.fromarray(np.dstack([ramp] * 3)).save(folder / "my_photos" / "a.jpg")
    return folder


def _needs(line):
    """The optional extra a command line needs, if it is missing."""
    name = line.split()[0]
    try:
        if name == "train" or "--model" in line:
            import torch  # noqa: F401
        if name == "photos":
            import dlib  # noqa: F401
            import face_recognition_models  # noqa: F401
    except ImportError as exc:
        return exc.name
    return None


@pytest.mark.parametrize("line", COMMANDS, ids=lambda line: line.split()[0])
def test_every_command_runs(line, folder, monkeypatch, capsys):
    missing = _needs(line)
    if missing:
        pytest.skip(f"needs {missing}")
    monkeypatch.chdir(folder)
    assert main(shlex.split(line)) == 0
    out = capsys.readouterr().out
    if "--json" in line:
        summary = json.loads(out.strip().splitlines()[-1])
        assert isinstance(summary, dict) and summary
    for option in ("-o", "--output", "--figure"):
        words = line.split()
        if option in words:
            assert (folder / words[words.index(option) + 1]).exists()
