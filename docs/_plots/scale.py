"""Time and memory of ``fit`` against n, per stage
(``benchmarks/results/scale_fit.json``).

The documentation draws it; the README's copy is made from ``docs/`` by
``python _plots/scale.py _static/scale_fit.png``."""

import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

rows = json.loads(Path("../benchmarks/results/scale_fit.json").read_text())
n = [r["n"] for r in rows]
later = [s for s in rows[0]["stages"] if s != "kNN graph"]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
axes[0].plot(n, [r["seconds"] for r in rows], "o-", color="k", label="fit, in all")
axes[0].plot(n, [r["stages"]["kNN graph"][0] for r in rows], "s--", label="kNN graph")
for name in ("TPDi distance", "recalibration"):
    axes[0].plot(n, [r["stages"][name][0] for r in rows], ".:", label=name)
axes[0].plot(
    n,
    [sum(r["stages"][s][0] for s in later) for r in rows],
    "^-",
    label="all stages after the graph",
)
axes[0].set_ylabel("seconds")
axes[0].set_title("time of fit and of its stages (2 cores)")
axes[1].plot(n, [r["peak_gb"] for r in rows], "o-", color="k", label="fit, peak")
axes[1].plot(
    n, [r["stages"]["kNN graph"][1] for r in rows], "s--", label="kNN graph, peak"
)
axes[1].plot(
    n,
    [max(r["stages"][s][1] for s in later) for r in rows],
    "^-",
    label="stages after the graph, peak",
)
axes[1].plot(n, [r["data_gb"] for r in rows], ":", color="gray", label="the data")
axes[1].set_ylabel("GB resident (the input's pages included)")
axes[1].set_title("peak memory of fit and of its stages")
for ax in axes:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("faces (synthetic, 256-d)")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(n, [f"{v:,}" for v in n], rotation=30)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
fig.suptitle("NDDeTPDiClustering().fit at its defaults against the number of faces")
fig.tight_layout()

if len(sys.argv) == 2 and sys.argv[1].endswith(".png"):
    fig.savefig(sys.argv[1], dpi=80)
