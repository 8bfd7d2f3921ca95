"""Sphinx configuration of the sklearn-ndde documentation."""

import importlib.util
import json
import os
import re
import warnings
from importlib.metadata import version as _version
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

project = "sklearn-ndde"
author = "the sklearn-ndde developers"
copyright = "2026, the sklearn-ndde developers"
release = _version("sklearn-ndde")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "sphinxarg.ext",
    "matplotlib.sphinxext.plot_directive",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "_generated",
    "_plots",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
]
root_doc = "index"

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# No network at build time: cross-references to other projects stay plain text.
intersphinx_mapping = {}
nitpicky = False


def _executed_examples():
    """The gallery examples run at build time: all but those on the LFW data
    (not in a user's clone; minutes of training) and those that need torch
    when it is not installed (``pip install "sklearn-ndde[docs]"`` does not
    bring it); the others are shown, not run."""
    runnable = []
    has_torch = importlib.util.find_spec("torch") is not None
    for path in sorted((Path(__file__).parent.parent / "examples").glob("*.py")):
        if path.name.startswith("lfw_"):
            continue
        if "TransformerSimilarity" in path.read_text() and not has_torch:
            print(f"sklearn-ndde docs: {path.name} is shown, not run: needs torch")
            continue
        runnable.append(re.escape(path.name))
    return r"/(" + "|".join(runnable) + r")$"


sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": _executed_examples(),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = "sklearn-ndde"
html_theme_options = {"navigation_with_keys": False, "header_links_before_dropdown": 6}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# The page list is flat: a left sidebar would be empty on most pages.
html_sidebars = {"**": []}

# The benchmark page's plots and tables are drawn from the benchmarks' own
# JSON output (benchmarks/results/), in the docs folder as working directory.
plot_working_directory = os.path.dirname(os.path.abspath(__file__))
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]


def _benchmark_tables(app):
    """Write the benchmark page's tables from ``benchmarks/results``."""

    docs = Path(app.srcdir)
    results = docs.parent / "benchmarks" / "results"
    out = docs / "_generated"
    out.mkdir(exist_ok=True)

    def table(header, rows):
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for row in [header, *rows]:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {cell}" for cell in row[1:]]
        return "\n".join(lines) + "\n"

    for name in ("regimes_test", "regimes_libraries_test", "regimes_both_splits"):
        _regimes_table(table, results / f"{name}.json", out / f"{name}_table.rst")
    transfer = json.loads((results / "threshold_transfer.json").read_text())
    (out / "threshold_transfer_table.rst").write_text(
        table(
            [
                "model",
                "cell",
                "NDDe defaults",
                "Infomap",
                "Chinese whispers",
                "FC-ES",
                "gap",
            ],
            [
                [r["model"], r["cell"], f"{r['ndde_defaults']:.3f}"]
                + [
                    f"{r[m]:.3f} ({r[m + ' threshold']:g})"
                    for m in ("Infomap", "Chinese whispers", "FC-ES")
                ]
                + [f"{r['gap']:+.3f}"]
                for r in transfer
            ],
        )
    )
    scale = json.loads((results / "scale_fit.json").read_text())
    (out / "scale_table.rst").write_text(
        table(
            ["faces", "search", "seconds", "peak GB", "kNN recall", "BCubed F"],
            [
                [
                    f"{r['n']:,}",
                    r["knn_method"],
                    f"{r['seconds']:.1f}",
                    f"{r['peak_gb']:.2f}",
                    f"{r['knn_recall']:.3f}",
                    f"{r['bcubed_f']:.4f}",
                ]
                for r in scale
            ],
        )
    )


def _regimes_table(table, source, target):
    """The table of one ``benchmarks/regimes.py --json`` file."""
    regimes = json.loads(source.read_text())
    target.write_text(
        table(
            [
                "collection",
                "model",
                "regime",
                "faces / people",
                "NDDe defaults",
                "Infomap",
                "Chinese whispers",
                "FC-ES",
                "gap",
            ],
            [
                [
                    r["collection"],
                    r["model"],
                    r["regime"],
                    f"{r['n_faces']:,} / {r['n_identities']:,}",
                    f"{r['ndde_defaults']:.3f}",
                    f"{r['infomap_tuned']:.3f}",
                    f"{r['chinese_whispers_tuned']:.3f}",
                    f"{r['fc_es_tuned']:.3f}",
                    f"{r['gap']:+.3f}",
                ]
                for r in regimes
            ],
        )
    )


def setup(app):
    app.connect("builder-inited", _benchmark_tables)
