"""Figures: the hard-cluster report and a 2-D picture of the method.

Needs matplotlib (``pip install 'sklearn-ndde[plot]'``); importing this
module without it works, calling a function raises an ImportError that says
how to install it.
"""

import numpy as np


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'sklearn-ndde[plot]'."
        ) from exc
    return plt


def plot_hard_cluster_report(reports, *, metric="bcubed", figsize=(10, 6)):
    """Precision and recall per identity-size and per sparsity bin.

    One group of bars per bin, one bar per method, as in Figure 1 of the
    paper: the hard clusters (the smallest and the sparsest identities) sit
    on the left of the size panels and on the right of the sparsity panels.

    Parameters
    ----------
    reports : dict of str to list of dict
        Method name -> the output of
        :func:`~sklearn_ndde.metrics.hard_cluster_report` for that method
        (all computed on the same labels and bins).
    metric : {"bcubed", "pairwise"}, default="bcubed"
        Which precision and recall to draw.
    figsize : tuple of float, default=(10, 6)
        Size of the figure in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two rows (precision, recall) and one column per binning present in
        the reports (``"size"``, and ``"sparsity"`` when ``X`` was given).

    Examples
    --------
    >>> from sklearn_ndde.metrics import hard_cluster_report
    >>> from sklearn_ndde.plotting import plot_hard_cluster_report
    >>> y = [0, 1, 1, 2, 2, 2]
    >>> fig = plot_hard_cluster_report({
    ...     "perfect": hard_cluster_report(y, y, n_bins=3),
    ...     "one cluster": hard_cluster_report(y, [0] * 6, n_bins=3)})
    >>> [ax.get_title() for ax in fig.axes]
    ['BCubed precision by identity size', 'BCubed recall by identity size']
    """
    if metric not in ("bcubed", "pairwise"):
        raise ValueError(f"metric must be 'bcubed' or 'pairwise', got {metric!r}.")
    if not reports:
        raise ValueError("reports is empty: give at least one method's report.")
    from .metrics import bin_range

    plt = _pyplot()
    names = list(reports)
    first = reports[names[0]]
    bys = [by for by in ("size", "sparsity") if any(r["by"] == by for r in first)]
    fig, axes = plt.subplots(2, len(bys), figsize=figsize, squeeze=False)
    width = 0.8 / len(names)
    label = {"bcubed": "BCubed", "pairwise": "pairwise"}[metric]
    for col, by in enumerate(bys):
        bins = [r for r in first if r["by"] == by]
        for row, what in enumerate(("precision", "recall")):
            ax = axes[row, col]
            values = []
            for m, name in enumerate(names):
                rows = [r for r in reports[name] if r["by"] == by]
                if len(rows) != len(bins):
                    raise ValueError(
                        f"The report of {name!r} has {len(rows)} {by} bins, the "
                        f"first one {len(bins)}: compute them alike."
                    )
                heights = [r[f"{metric}_{what}"] for r in rows]
                values += heights
                x = np.arange(len(rows)) + (m - (len(names) - 1) / 2) * width
                ax.bar(x, heights, width, label=name, color=f"C{m}")
            ticks = [bin_range(r) for r in bins]
            ax.set_xticks(np.arange(len(bins)), ticks, fontsize=8)
            # The axis starts below the lowest bar, so that differences of
            # a few hundredths show.
            low = min(values)
            ax.set_ylim(max(0.0, low - 0.1 * (1.0 - low) - 0.01), 1.0)
            ax.set_title(f"{label} {what} by identity {by}")
            ax.set_xlabel(
                "identity size (faces)"
                if by == "size"
                else "identity sparsity (1 - mean cosine within the identity)"
            )
            ax.set_ylabel(f"{label} {what}")
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Hard clusters: scores per identity size and sparsity bin")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(names), 4), frameon=False
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_density_peaks(X, estimator, *, ax=None, links=True):
    """Draw a fitted clustering of 2-D points: density, peaks and links.

    Points are coloured by NDDe density (``estimator.density_``), the
    densest sample of each cluster (its peak) is drawn as a star, and each
    link from a sample to its parent as a grey line. (Where densities tie,
    two samples may link to each other and their cluster has no sample
    without a parent, hence the densest sample rather than the root.)

    Parameters
    ----------
    X : array-like of shape (n_samples, 2)
        The points, as fitted (any 2-D coordinates of them will do).
    estimator : NDDeTPDiClustering
        Fitted on ``X``.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; a new figure when None.
    links : bool, default=True
        Draw the parent links.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ndde import NDDeTPDiClustering
    >>> from sklearn_ndde.plotting import plot_density_peaks
    >>> angles = np.r_[np.linspace(0, 0.3, 20), np.linspace(2, 2.3, 20)]
    >>> X = np.c_[np.cos(angles), np.sin(angles)]
    >>> est = NDDeTPDiClustering(k=10).fit(X)
    >>> ax = plot_density_peaks(X, est)
    >>> ax.get_title()
    'NDDe density, peaks (stars) and links'
    """
    plt = _pyplot()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n_samples, 2), got {X.shape}.")
    parents = getattr(estimator, "parents_", None)
    if parents is None or len(parents) != X.shape[0]:
        raise ValueError("estimator must be an NDDeTPDiClustering fitted on X.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    if links:
        child = np.flatnonzero(parents >= 0)
        segments = np.stack([X[child], X[parents[child]]], axis=1)
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.8))
    points = ax.scatter(X[:, 0], X[:, 1], c=estimator.density_, s=18, cmap="viridis")
    labels = np.asarray(estimator.labels_)
    order = np.lexsort((-np.asarray(estimator.density_), labels))
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    peaks = order[first]
    ax.scatter(
        X[peaks, 0],
        X[peaks, 1],
        marker="*",
        s=160,
        facecolors="none",
        edgecolors="crimson",
        label="peaks",
    )
    ax.figure.colorbar(points, ax=ax, label="NDDe density")
    ax.set_aspect("equal")
    ax.set_title("NDDe density, peaks (stars) and links")
    return ax
