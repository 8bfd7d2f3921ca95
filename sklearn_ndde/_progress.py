"""Progress bars on stderr, shown only when asked for."""

import sys

from tqdm.auto import tqdm


def progress(desc, total, verbose, unit="it", leave=False):
    """A tqdm bar on stderr, disabled (and silent) unless ``verbose``.

    Bars of the steps inside a stage vanish when done (``leave=False``).
    """
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not verbose,
        leave=leave,
        dynamic_ncols=True,
    )
