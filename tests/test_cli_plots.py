"""The evaluate / train / demo commands and the figures."""

import json

import numpy as np
import pytest

from sklearn_ndde import NDDeTPDiClustering
from sklearn_ndde.__main__ import main
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.metrics import bcubed_fscore, bin_range, hard_cluster_report

plt = pytest.importorskip("matplotlib.pyplot")
from sklearn_ndde.plotting import plot_density_peaks, plot_hard_cluster_report  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    X, y = make_face_embeddings(300, 30, dim=32, spread=(0.4, 1.0), random_state=0)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    labels = NDDeTPDiClustering(k=10).fit_predict(X)
    np.save(folder / "pred.npy", labels)
    return folder, X, y, labels


def test_evaluate_prints_metrics_report_and_figure(files, capsys):
    folder, X, y, labels = files
    figure = folder / "report.png"
    code = main(
        [
            "evaluate",
            str(folder / "pred.npy"),
            "--labels",
            str(folder / "y.npy"),
            "--features",
            str(folder / "X.npy"),
            "--figure",
            str(figure),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bcubed"]["f"] == pytest.approx(bcubed_fscore(y, labels))
    assert [r["by"] for r in result["hard_clusters"]] == ["size"] * 5 + ["sparsity"] * 5
    assert figure.stat().st_size > 10_000
    assert plt.imread(figure).ndim == 3


def test_evaluate_length_mismatch_is_one_line(files, capsys):
    folder, _, y, _ = files
    np.save(folder / "short.npy", y[:-1])
    code = main(
        ["evaluate", str(folder / "short.npy"), "--labels", str(folder / "y.npy")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "299 labels" in err


def test_train_saves_a_model_that_clusters(files, tmp_path, capsys):
    pytest.importorskip("torch")
    from sklearn_ndde.similarity import TransformerSimilarity

    folder, X, y, _ = files
    model_path = tmp_path / "model.pt"
    code = main(
        [
            "train",
            str(folder / "X.npy"),
            "--labels",
            str(folder / "y.npy"),
            "-o",
            str(model_path),
            "--k",
            "10",
            "--epochs",
            "2",
            "--d-model",
            "32",
            "--dim-feedforward",
            "64",
            "--batch-size",
            "32",
            "--learning-rate",
            "1e-3",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 2 and result["output"] == str(model_path)
    model = TransformerSimilarity.load(model_path)
    labels = NDDeTPDiClustering(k=10, similarity=model).fit_predict(X)
    assert labels.shape == y.shape
    # The command line uses it too: train, then cluster --model.
    out = tmp_path / "labels.npy"
    args = ["cluster", str(folder / "X.npy"), "--k", "10", "--model", str(model_path)]
    assert main([*args, "-o", str(out), "--json"]) == 0
    np.testing.assert_array_equal(np.load(out), labels)
    assert main([*args, "--knn", str(model_path)]) == 2
    assert "cannot be used with --knn" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "cluster", "evaluate", "train"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: sklearn-ndde " + command in capsys.readouterr().out


def test_demo_json_and_figure(tmp_path, capsys):
    figure = tmp_path / "demo.png"
    assert main(["demo", "--n-samples", "300", "--figure", str(figure), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = [row["method"].split(" (")[0] for row in result["methods"]]
    assert names == ["NDDe + TPDi", "DBSCAN", "HDBSCAN"]
    assert all(0 <= row["bcubed_f"] <= 1 for row in result["methods"])
    assert figure.stat().st_size > 10_000


def test_hard_cluster_figure_has_one_bar_per_method_and_bin(files):
    _, X, y, labels = files
    reports = {
        "NDDe": hard_cluster_report(y, labels, X),
        "all singletons": hard_cluster_report(y, np.arange(len(y)), X),
    }
    fig = plot_hard_cluster_report(reports)
    assert [ax.get_title() for ax in fig.axes] == [
        "BCubed precision by identity size",
        "BCubed precision by identity sparsity",
        "BCubed recall by identity size",
        "BCubed recall by identity sparsity",
    ]
    # The legend names the methods, outside the axes.
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(reports)
    assert all(ax.get_legend() is None for ax in fig.axes)
    size_rows = [r for r in reports["all singletons"] if r["by"] == "size"]
    recall_by_size = fig.axes[2]
    assert len(recall_by_size.patches) == 2 * len(size_rows)
    # Singletons: recall of the bars of the second method equals the report's.
    heights = [p.get_height() for p in recall_by_size.patches[len(size_rows) :]]
    np.testing.assert_allclose(heights, [r["bcubed_recall"] for r in size_rows])
    # Tick labels are the bins' ranges, which never overlap.
    ticks = [t.get_text() for t in recall_by_size.get_xticklabels()]
    assert ticks == [bin_range(r) for r in size_rows]
    assert all(a["high"] < b["low"] for a, b in zip(size_rows, size_rows[1:]))
    # The axis shows the differences: it starts above 0 when every bar is high.
    low = min(p.get_height() for p in fig.axes[0].patches)
    assert fig.axes[0].get_ylim()[0] <= low
    plt.close(fig)


def test_density_peaks_figure_marks_every_peak(files):
    angles = np.r_[np.linspace(0, 0.3, 30), np.linspace(2, 2.3, 30)]
    X = np.c_[np.cos(angles), np.sin(angles)]
    est = NDDeTPDiClustering(k=10).fit(X)
    ax = plot_density_peaks(X, est)
    peaks = np.asarray(ax.collections[-1].get_offsets())
    assert len(peaks) == est.n_clusters_
    for label in range(est.n_clusters_):
        densest = np.flatnonzero(est.labels_ == label)[
            np.argmax(est.density_[est.labels_ == label])
        ]
        assert any(np.allclose(X[densest], p) for p in peaks)
    links = ax.collections[0]
    assert len(links.get_segments()) == int((est.parents_ >= 0).sum())
    plt.close(ax.figure)


def test_plot_bad_input(files):
    _, X, y, labels = files
    with pytest.raises(ValueError, match="reports is empty"):
        plot_hard_cluster_report({})
    with pytest.raises(ValueError, match="metric"):
        plot_hard_cluster_report({"a": hard_cluster_report(y, labels)}, metric="x")
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
        plot_density_peaks(X, NDDeTPDiClustering(k=10).fit(X))
