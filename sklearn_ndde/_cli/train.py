"""The ``train`` command: the learned pair similarity trained and saved."""

import argparse
import time

from .common import _to_json


def add_parser(sub):
    """Add the command to the subparsers ``sub``."""
    train = sub.add_parser(
        "train", help="train the learned pair similarity and save it (needs torch)"
    )
    train.add_argument("features", help="labelled embeddings (.npy, .bin, ...)")
    train.add_argument("--labels", required=True, help="identity of each face")
    train.add_argument("-o", "--output", required=True, help="model file (.pt)")
    train.add_argument(
        "--dim",
        type=int,
        default=256,
        help="row length of a .bin file (default %(default)s)",
    )
    train.add_argument(
        "--k",
        type=int,
        default=80,
        help="neighbours, self included (default %(default)s)",
    )
    train.add_argument(
        "--epochs", type=int, default=10, help="at most (default %(default)s)"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="peak rate of the one-cycle schedule (default %(default)s, the model's)",
    )
    train.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help="anchors per step, or auto: set from the number of faces "
        "(default %(default)s, the model's)",
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="identities held out for early stopping",
    )
    train.add_argument(
        "--d-model",
        type=int,
        default=256,
        help="width of the transformer (default %(default)s)",
    )
    train.add_argument(
        "--dim-feedforward",
        type=int,
        default=2048,
        help="width of its feed-forward layer (default %(default)s)",
    )
    train.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if present), cpu, cuda (default %(default)s)",
    )
    train.add_argument(
        "--random-state", type=int, default=0, help="seed (default %(default)s)"
    )
    train.add_argument("--json", action="store_true", help="machine-readable output")
    train.add_argument(
        "-v", "--verbose", action="count", default=0, help="losses per epoch on stderr"
    )
    train.set_defaults(func=run)


def run(args):
    from ..io import check_output_path, load_features, load_labels
    from ..similarity import TransformerSimilarity

    check_output_path(args.output, (".pt",), [args.features, args.labels])
    X = load_features(args.features, dim=args.dim)
    y = load_labels(args.labels)
    model = TransformerSimilarity(
        n_neighbors=args.k,
        d_model=args.d_model,
        dim_feedforward=args.dim_feedforward,
        max_epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        validation_fraction=args.validation_fraction,
        device=args.device,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    start = time.perf_counter()
    model.fit(X, y)
    model.save(args.output)
    result = {
        "n_samples": int(X.shape[0]),
        "epochs": len(model.history_),
        "train_loss": model.history_[-1]["train_loss"],
        "valid_loss": model.history_[-1]["valid_loss"],
        "seconds": round(time.perf_counter() - start, 3),
        "output": args.output,
    }
    if args.json:
        print(_to_json(result))
    else:
        print(
            f"Trained on {result['n_samples']} faces for {result['epochs']} epochs "
            f"in {result['seconds']:.1f} s (train loss {result['train_loss']:.4f}); "
            f"model in {args.output}"
        )
    return 0


def _batch_size(text):
    """``--batch-size``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or 'auto', not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
