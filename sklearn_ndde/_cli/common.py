"""What the commands share: output as JSON, figures, option checks."""

import json

import numpy as np


def _version():
    from .. import __version__

    return __version__


def _to_json(result):
    """``result`` as strict JSON: a NaN or infinite score becomes null (bare
    ``NaN`` is not JSON and breaks strict parsers)."""

    def finite(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(result), allow_nan=False)


def _save_figure(reports, path):
    """Draw the hard-cluster reports into ``path``; return the path."""
    from ..plotting import plot_hard_cluster_report

    plot_hard_cluster_report(reports).savefig(path, dpi=120)
    return path


#: Identity spread of the demo's synthetic faces (hard, sparse identities).


def _check_range(name, value, low, high=None, low_open=False):
    """A one-line error unless ``low <= value <= high`` (``low < value``
    with ``low_open``); checked before the heavy imports, so that a bad
    option is reported at once."""
    if value is None:
        return
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        bound = f"above {low}" if low_open else f"at least {low}"
        span = bound if high is None else f"{bound} and at most {high}"
        raise ValueError(f"{name} must be {span}, got {value}.")


def _scores(y, labels):
    from ..metrics import (
        bcubed_precision_recall_fscore,
        pairwise_precision_recall_fscore,
    )

    keys = ("precision", "recall", "f")
    return {
        "pairwise": dict(zip(keys, pairwise_precision_recall_fscore(y, labels))),
        "bcubed": dict(zip(keys, bcubed_precision_recall_fscore(y, labels))),
    }
