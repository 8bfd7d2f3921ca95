"""The examples and the README's code run as written."""

import importlib.util
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=str)
def test_example_runs(script, capsys):
    if "learned" in script.name:
        pytest.importorskip("torch")
    runpy.run_path(str(script), run_name="__main__")
    assert "BCubed" in capsys.readouterr().out


def test_readme_python_block_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Use\n\n```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["search"].best_score_ > 0.9


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
