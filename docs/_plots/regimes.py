"""BCubed F per identity regime (``benchmarks/results/regimes_test.json``)."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

rows = json.loads(Path("../benchmarks/results/regimes_test.json").read_text())
methods = {
    "NDDe + TPDi, defaults": "ndde_defaults",
    "Infomap, tuned threshold": "infomap_tuned",
    "Chinese whispers, tuned threshold": "chinese_whispers_tuned",
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, model in zip(axes, dict.fromkeys(r["model"] for r in rows)):
    cells = [r for r in rows if r["model"] == model]
    x = np.arange(len(cells))
    width = 0.8 / len(methods)
    for m, key in enumerate(methods.values()):
        heights = [r[key] for r in cells]
        ax.bar(x + (m - 1) * width, heights, width, color=f"C{m}")
    ax.set_xticks(x, [r["regime"] for r in cells])
    ax.set_title(model)
    ax.set_xlabel("identities kept (LFW test split)")
    ax.grid(axis="y", alpha=0.3)
low = min(r[key] for r in rows for key in methods.values())
axes[0].set_ylim(low - 0.03, 1.0)
axes[0].set_ylabel("BCubed F")
fig.legend(list(methods), loc="lower center", ncol=3, frameon=False)
fig.suptitle(
    "Quality on every identity regime: untuned defaults against tuned baselines"
)
fig.tight_layout(rect=(0, 0.08, 1, 1))
