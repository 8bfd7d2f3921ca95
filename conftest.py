"""Collection settings shared by the doctests and the tests."""

import importlib.util
import os

from hypothesis import settings

# Figures are drawn off screen in the tests, the doctests and the examples.
os.environ.setdefault("MPLBACKEND", "Agg")

# Bounded examples by default (CI); HYPOTHESIS_PROFILE=long for a longer local run.
# The ci profile is derandomized: the same examples on every run, so a test
# run is reproducible; the long profile explores new ones each time.
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

collect_ignore = []
if importlib.util.find_spec("torch") is None:
    # The learned similarity's modules need torch; without it they are skipped
    # (tests/test_transformer.py skips itself).
    collect_ignore += [
        "sklearn_ndde/similarity/_torch_model.py",
        "sklearn_ndde/similarity/_transformer.py",
    ]
