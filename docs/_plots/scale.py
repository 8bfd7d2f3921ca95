"""Time and memory of ``fit`` against n (``benchmarks/results/scale_fit.json``)."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

rows = json.loads(Path("../benchmarks/results/scale_fit.json").read_text())
n = [r["n"] for r in rows]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(n, [r["seconds"] for r in rows], "o-")
axes[0].set_ylabel("seconds, end to end")
axes[0].set_title("time of fit (2 cores)")
axes[1].plot(n, [r["peak_gb"] for r in rows], "o-", color="C1", label="fit, peak")
axes[1].plot(n, [r["data_gb"] for r in rows], "--", color="gray", label="the data")
axes[1].set_ylabel("GB resident")
axes[1].set_title("peak memory of fit")
axes[1].legend()
for ax in axes:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("faces (synthetic, 256-d)")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(n, [f"{v:,}" for v in n])
    ax.grid(alpha=0.3, which="both")
fig.suptitle("NDDeTPDiClustering().fit at its defaults against the number of faces")
fig.tight_layout()
