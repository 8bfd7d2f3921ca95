"""The learned similarity's model file: written weights-only, read as
untrusted input (every field checked before anything is built)."""

import os
import tempfile

import numpy as np

from ..io import _replace_keeping_mode

_FORMAT = "sklearn_ndde.TransformerSimilarity/1"


def _random_state_entry(random_state, torch):
    """A ``RandomState`` seed as file entries of tensors and numbers (the
    weights-only format holds no Python objects); nothing for an int."""
    if not isinstance(random_state, np.random.RandomState):
        return {}
    name, keys, pos, has_gauss, gauss = random_state.get_state()
    return {
        "random_state_mt19937": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        }
    }


def _random_state_from(entry):
    state = np.random.RandomState()
    state.set_state(
        (
            "MT19937",
            entry["keys"].numpy().astype(np.uint32),
            int(entry["pos"]),
            int(entry["has_gauss"]),
            float(entry["cached_gaussian"]),
        )
    )
    return state


def save_model(est, torch, path):
    """Write the fitted ``est`` to ``path`` (see ``TransformerSimilarity.save``)."""
    params = {
        k: v
        for k, v in est.get_params().items()
        if isinstance(v, (int, float, str, type(None)))
    }
    payload = {
        "format": _FORMAT,
        "params": params,
        **_random_state_entry(est.random_state, torch),
        "n_features_in": int(est.n_features_in_),
        "weights": {k: v.detach().cpu() for k, v in est.module_.state_dict().items()},
    }
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Cannot write {path!r}: the folder {folder!r} does not exist."
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        _replace_keeping_mode(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def model_from_payload(cls, torch, payload, path, device):
    """The unfitted model of class ``cls`` that a file describes, every
    field checked first (see ``TransformerSimilarity._from_payload``)."""
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path!r} is not a TransformerSimilarity file.")
    missing = [k for k in ("params", "n_features_in", "weights") if k not in payload]
    if missing:
        raise ValueError(
            f"{path!r} is an incomplete TransformerSimilarity file: it has no "
            f"{', '.join(repr(k) for k in missing)}."
        )
    params, weights = payload["params"], payload["weights"]
    if not isinstance(params, dict) or not isinstance(weights, dict):
        raise ValueError(f"{path!r}: 'params' and 'weights' must be mappings.")
    unknown = sorted(set(params) - set(cls().get_params()))
    if unknown:
        raise ValueError(f"{path!r} holds unknown parameter(s) {unknown}.")
    if not all(isinstance(w, torch.Tensor) for w in weights.values()):
        raise ValueError(f"{path!r}: every weight must be a tensor.")
    n_features = payload["n_features_in"]
    if isinstance(n_features, bool) or not isinstance(n_features, int):
        raise ValueError(f"{path!r}: 'n_features_in' must be an integer.")
    if n_features < 1:
        raise ValueError(f"{path!r}: 'n_features_in' must be at least 1.")
    # Files written before `residual` existed hold the paper's model;
    # those written before `symmetrize` scored pairs from one end; those
    # written before `learning_rate_schedule` were trained at a constant
    # rate.
    params = {
        "residual": False,
        "symmetrize": False,
        "learning_rate_schedule": "constant",
        **params,
        "device": device,
    }
    model = cls(**params)
    try:
        model._validate_params()
    except ValueError as exc:
        raise ValueError(f"{path!r} holds an invalid parameter: {exc}") from None
    # Each encoder layer carries several tensors: more layers than
    # tensors cannot match, and is refused before building anything.
    if model.n_layers > len(weights):
        raise ValueError(
            f"The weights in {path!r} do not match the architecture its "
            f"parameters describe: n_layers={model.n_layers} but only "
            f"{len(weights)} tensors."
        )
    with torch.device("meta"):
        skeleton = model._new_module(n_features).state_dict()
    expected = {k: tuple(v.shape) for k, v in skeleton.items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        key = sorted(set(expected) ^ set(found)) or [
            k for k in expected if expected[k] != found[k]
        ]
        key = key[0]
        raise ValueError(
            f"The weights in {path!r} do not match the architecture its "
            f"parameters describe: {key!r} is {found.get(key, 'missing')} in "
            f"the file, {expected.get(key, 'not expected')} in the model."
        )
    broken = [
        name
        for name, w in weights.items()
        if w.is_floating_point() and not bool(torch.isfinite(w).all())
    ]
    if broken:
        raise ValueError(
            f"The weights in {path!r} hold NaN or infinite values (first in "
            f"{broken[0]!r}): the model cannot score pairs."
        )
    if "random_state_mt19937" in payload:
        try:
            model.random_state = _random_state_from(payload["random_state_mt19937"])
        except (TypeError, ValueError, KeyError, AttributeError):
            raise ValueError(f"{path!r} holds an invalid random_state.") from None
    model.n_features_in_ = n_features
    return model
