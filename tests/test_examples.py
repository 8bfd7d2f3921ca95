"""The examples and the README's code run as written."""

import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


LFW = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=str)
def test_example_runs(script, capsys, monkeypatch):
    if "learned" in script.name:
        pytest.importorskip("torch", reason="the learned similarity needs torch")
    if "import matplotlib" in script.read_text() and script.name != "photos_folder.py":
        pytest.importorskip("matplotlib", reason="the example draws with matplotlib")
    if script.name == "photos_folder.py" and importlib.util.find_spec("dlib") is None:
        pytest.skip('the photos example needs dlib (pip install "sklearn-ndde[faces]")')
    if script.name.startswith("lfw_"):
        if not (LFW / "lfw_dlib128.npz").exists():
            pytest.skip("needs the LFW embeddings in ../shared/data")
        # The example as written, with a model small enough for a test (its
        # full run is measured by benchmarks/lfw_learned.py).
        from sklearn_ndde.similarity import TransformerSimilarity

        fit = TransformerSimilarity.fit

        def quick_fit(self, X, y):
            self.set_params(max_epochs=1, d_model=32, n_heads=4, dim_feedforward=64)
            return fit(self, X, y)

        monkeypatch.setattr(TransformerSimilarity, "fit", quick_fit)
        monkeypatch.setenv("SKLEARN_NDDE_LFW", str(LFW))
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "BCubed" in out
    if script.name.startswith("lfw_"):
        # Both similarities clustered the test split, with a report each.
        assert out.count("BCubed P") == 2 and "identities of 1-1 faces" in out


def test_demo_command_prints_table_and_writes_the_figure(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sklearn_ndde", "demo", "--n-samples", "600"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert "NDDe + TPDi (defaults)" in out and "HDBSCAN" in out
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "ndde_demo.png").stat().st_size > 10_000
        assert "ndde_demo.png" in out
    else:
        assert "No figure" in out


def test_cli_rejects_bad_option():
    proc = subprocess.run(
        [sys.executable, "-m", "sklearn_ndde", "demo", "--n-samples", "3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--n-samples must be at least 20" in proc.stderr
