"""BCubed F per identity regime (``benchmarks/results/regimes_test.json``)."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

rows = json.loads(Path("../benchmarks/results/regimes_test.json").read_text())
methods = {
    "NDDe + TPDi, defaults": "ndde_defaults",
    "Infomap, tuned": "infomap_tuned",
    "Chinese whispers, tuned": "chinese_whispers_tuned",
    "FC-ES, tuned": "fc_es_tuned",
}
panels = {}
for r in rows:
    if r["collection"].startswith("LFW"):
        panels.setdefault(f"LFW test, {r['model']}", []).append((r["regime"], r))
    else:
        panels.setdefault("CelebA", []).append((r["model"], r))
fig, axes = plt.subplots(
    1, len(panels), figsize=(13, 3.9), sharey=True, width_ratios=[6, 6, 3]
)
width = 0.8 / len(methods)
for ax, (title, cells) in zip(axes, panels.items()):
    x = np.arange(len(cells))
    for m, key in enumerate(methods.values()):
        heights = [r[key] for _, r in cells]
        ax.bar(x + (m - 1.5) * width, heights, width, color=f"C{m}")
    ax.set_xticks(x, [name for name, _ in cells], rotation=30, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
low = min(r[key] for r in rows for key in methods.values())
axes[0].set_ylim(max(0.0, low - 0.03), 1.0)
axes[0].set_ylabel("BCubed F")
fig.legend(list(methods), loc="lower center", ncol=4, frameon=False)
fig.suptitle(
    "Quality on every identity regime: untuned defaults against tuned baselines"
)
fig.tight_layout(rect=(0, 0.08, 1, 1))
