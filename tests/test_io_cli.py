"""Loaders of the benchmark formats, and the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sklearn_ndde import NDDeTPDiClustering, knn_graph
from sklearn_ndde.__main__ import main
from sklearn_ndde.datasets import make_face_embeddings
from sklearn_ndde.io import knn_to_graph, load_features, load_knn, load_labels


@pytest.fixture(scope="module")
def benchmark_files(tmp_path_factory):
    """A tiny data set written in the learn-to-cluster layout."""
    folder = tmp_path_factory.mktemp("ltc")
    X, y = make_face_embeddings(600, 60, dim=64, spread=(0.4, 1.0), random_state=0)
    X.astype("<f4").tofile(folder / "part1_test.bin")
    (folder / "part1_test.meta").write_text("".join(f"{v}\n" for v in y))
    indices, sims = knn_graph(X, 20)
    knn = np.stack([indices.astype(np.float32), 1.0 - sims], axis=1)
    np.savez_compressed(folder / "faiss_k_20.npz", data=knn)
    np.save(folder / "features.npy", X)
    return folder, X, y


def test_loaders_read_the_benchmark_layout(benchmark_files):
    folder, X, y = benchmark_files
    np.testing.assert_array_equal(load_features(folder / "part1_test.bin", dim=64), X)
    np.testing.assert_array_equal(load_labels(folder / "part1_test.meta"), y)
    indices, distances = load_knn(folder / "faiss_k_20.npz")
    assert indices.shape == distances.shape == (600, 20)
    np.testing.assert_array_equal(indices[:, 0], np.arange(600))


def test_reused_knn_file_gives_the_same_clusters(benchmark_files):
    folder, X, _ = benchmark_files
    graph = knn_to_graph(*load_knn(folder / "faiss_k_20.npz"))
    before = graph.copy()
    a = NDDeTPDiClustering(k=20, metric="precomputed").fit_predict(graph)
    # metric="precomputed" has no embeddings for the saturated-peak links.
    b = NDDeTPDiClustering(k=20, link_saturated=False).fit_predict(X)
    assert np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])
    # The caller's graph is left as it was, so a second fit gives the same.
    assert (graph != before).nnz == 0
    np.testing.assert_array_equal(
        NDDeTPDiClustering(k=20, metric="precomputed").fit_predict(graph), a
    )


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_features(empty)
    truncated = tmp_path / "t.bin"
    np.zeros(10, dtype="<f4").tofile(truncated)
    with pytest.raises(ValueError, match="truncated"):
        load_features(truncated, dim=4)
    with pytest.raises(FileNotFoundError, match="No such file"):
        load_features(tmp_path / "missing.npy")
    bad = tmp_path / "l.meta"
    bad.write_text("1\nx\n")
    with pytest.raises(ValueError, match="one integer per line"):
        load_labels(bad)
    wrong = tmp_path / "k.npz"
    np.savez(wrong, data=np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match=r"\(n, 2, k\)"):
        load_knn(wrong)


def test_cli_cluster_writes_labels_and_prints_metrics(
    benchmark_files, tmp_path, capsys
):
    folder, _, y = benchmark_files
    out = tmp_path / "labels.npy"
    code = main(
        [
            "cluster",
            str(folder / "part1_test.bin"),
            "--dim",
            "64",
            "--k",
            "20",
            "--knn",
            str(folder / "faiss_k_20.npz"),
            "--labels",
            str(folder / "part1_test.meta"),
            "-o",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    labels = np.load(out)
    assert labels.shape == y.shape and result["n_clusters"] == labels.max() + 1
    assert result["bcubed"]["f"] > 0.9


@pytest.mark.parametrize(
    "flags, recalibrate", [([], True), (["--no-recalibrate"], False)]
)
def test_cli_recalibrate_switch_is_the_estimators(
    benchmark_files, tmp_path, flags, recalibrate
):
    folder, X, _ = benchmark_files
    out = tmp_path / "labels.npy"
    argv = ["cluster", str(folder / "features.npy"), "--k", "20", "-o", str(out)]
    assert main(argv + flags) == 0
    expected = NDDeTPDiClustering(k=20, recalibrate=recalibrate).fit_predict(X)
    np.testing.assert_array_equal(np.load(out), expected)


@pytest.mark.parametrize(
    "args, message",
    [
        (["cluster", "missing.npy"], "No such file"),
        (["cluster", "{folder}/part1_test.bin", "--dim", "7"], "truncated"),
        (["cluster", "{folder}/features.npy", "--tau", "3"], "tau"),
        (["cluster", "{folder}/features.npy", "-o", "x.txt"], ".npy or .csv"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(benchmark_files, tmp_path, args, message):
    folder = benchmark_files[0]
    args = [a.format(folder=folder) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "sklearn_ndde", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_defaults_are_the_estimators():
    from sklearn_ndde.__main__ import main as cli

    est = NDDeTPDiClustering()
    with pytest.raises(SystemExit):
        cli(["cluster", "--help"])
    import argparse

    seen = {}
    original = argparse.ArgumentParser.parse_args

    def spy(self, *args, **kwargs):
        namespace = original(self, *args, **kwargs)
        seen.update(vars(namespace))
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = spy
    try:
        with pytest.raises(SystemExit):
            cli(["cluster", "x.npy"])
    finally:
        argparse.ArgumentParser.parse_args = original
    assert seen["tau"] == est.tau and seen["k"] == est.k
    assert seen["merge_threshold"] == est.merge_threshold
    assert (not seen["no_recalibrate"]) == est.recalibrate


def test_version_and_a_note_when_labels_are_not_written(benchmark_files, capsys):
    import sklearn_ndde
    from sklearn_ndde.__main__ import main as cli

    with pytest.raises(SystemExit) as exit_:
        cli(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sklearn-ndde {sklearn_ndde.__version__}"
    folder, _, _ = benchmark_files
    assert cli(["cluster", str(folder / "features.npy"), "--k", "20"]) == 0
    assert "labels not written: pass -o" in capsys.readouterr().out


def test_help_shows_the_default_of_every_option():
    """Every option whose default is a value says it in its --help line."""
    import argparse

    from sklearn_ndde.__main__ import build_parser

    parser = build_parser()
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    missing = []
    for name, command in commands.items():
        text = " ".join(command.format_help().split())
        for action in command._actions:
            flag = action.option_strings[-1] if action.option_strings else action.dest
            if not action.option_strings or action.default in (
                None,
                False,
                argparse.SUPPRESS,
            ):
                continue
            if isinstance(action, argparse._CountAction):
                continue  # -v: repeated, no value
            help_text = " ".join((action.help or "").split())
            expanded = help_text.replace("%(default)s", str(action.default))
            if "default" not in help_text or expanded not in text:
                missing.append(f"{name} {flag}")
    assert not missing, missing


def test_verbose_off_a_terminal_writes_plain_lines(benchmark_files, tmp_path):
    """With stderr sent to a file, -v writes one line per stage and no bar
    fragments (carriage returns, escape codes)."""
    folder, _, _ = benchmark_files
    log = tmp_path / "log.txt"
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "sklearn_ndde", "cluster"]
            + [str(folder / "features.npy"), "--k", "20", "-v"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.returncode == 0
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    stages = [line for line in text.splitlines() if line.endswith(" s")]
    assert [line.split("] ")[1].rsplit(":", 1)[0] for line in stages] == [
        "kNN graph",
        "pair similarity",
        "NDDe density",
        "TPDi distance",
        "density peaks",
        "flow merge",
        "recalibration",
    ]


def test_cli_warning_is_one_line_of_ours(benchmark_files, tmp_path):
    """A warning from the estimator (k larger than the data) is one
    'sklearn-ndde: warning:' line, without the source line it came from."""
    folder, X, _ = benchmark_files
    small = tmp_path / "small.npy"
    np.save(small, X[:50])
    proc = subprocess.run(
        [sys.executable, "-m", "sklearn_ndde", "cluster", str(small)]
        + ["--k", "80", "-o", str(tmp_path / "labels.npy")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "sklearn-ndde: warning: k=80 is larger than the number of samples (50); "
        "using k=50."
    ]


def test_evaluate_labels_bins_by_range_and_says_why_there_are_fewer(tmp_path, capsys):
    # 12 single faces and 3 identities of 4: the sizes make 2 bins, not 5.
    y = np.concatenate([np.arange(12), np.repeat([20, 21, 22], 4)])
    X = np.random.default_rng(0).standard_normal((y.size, 8))
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "X.npy", X)
    argv = ["evaluate", str(tmp_path / "y.npy"), "--labels", str(tmp_path / "y.npy")]
    assert main([*argv, "--features", str(tmp_path / "X.npy"), "--bins", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 bins, not 3: identities of equal size share a bin" in out
    assert "1 - mean cosine between the faces of one identity" in out
    size_lines = out.split("Identities by size")[1].split("Identities by")[0]
    ranges = [line.split()[0] for line in size_lines.splitlines()[3:] if line.strip()]
    assert ranges == ["1", "4"]  # sizes as integers, no bin number
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["hard_clusters"]
    assert [(r["low"], r["high"]) for r in rows] == [(1, 1), (4, 4)]
