"""NDDe + TPDi density-peak clustering of embeddings, scikit-learn style.

The public names are imported on first use (PEP 562), so that the command
line and the photos front end start without loading scikit-learn, scipy and
numba until they cluster.
"""

import importlib

__version__ = "0.1.0"

_WHERE = {
    "NDDeTPDiClustering": "._ndde",
    "density_peaks": "._peaks",
    "knn_graph": "._neighbors",
    "link_isolated_peaks": "._peaks",
    "link_saturated_peaks": "._peaks",
    "merge_by_flow": "._merge",
    "ndde_density": "._density",
    "row_softmax": "._transition",
    "tpdi": "._tpdi",
    "transition_matrix": "._transition",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
