"""Command line: ``sklearn-ndde {demo,cluster,evaluate,train,photos}``.

Results go to stdout (``--json`` for machine-readable output), progress bars
and errors to stderr; bad input ends with a one-line error and exit status 2.
"""

import argparse
import sys
import warnings

from ._cli import cluster, demo, evaluate, photos, train
from ._cli.common import _version


def build_parser():
    """The command line's parser (every command and option)."""
    parser = argparse.ArgumentParser(
        prog="sklearn-ndde",
        description="NDDe + TPDi density-peak clustering of embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, cluster, evaluate, train, photos):
        command.add_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line of ours, without the source line it came from
    (which would point inside scikit-learn or numpy)."""
    text = " ".join(str(message).split())
    print(f"sklearn-ndde: warning: {text}", file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and args.n_samples < 20:
        parser.error("--n-samples must be at least 20")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (ValueError, TypeError, OSError, MemoryError, ImportError) as exc:
        message = " ".join(str(exc).split())
        print(f"sklearn-ndde: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every output is written whole or not at all; what photos detected
        # so far is in its cache.
        print("sklearn-ndde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
