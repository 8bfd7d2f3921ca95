"""Progress on stderr, shown only when asked for.

On a terminal, tqdm bars; anywhere else (stderr sent to a log file or a
pipe) bars would leave carriage-return fragments between the lines, so
there are none: only plain lines, one per step of the bars that ask for
them (the epochs of a training), and the lines written with :func:`log`.
"""

import sys

from tqdm.auto import tqdm


def _stderr_is_terminal():
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


class _Lines:
    """The interface of a tqdm bar, written as plain lines (or nothing)."""

    def __init__(self, desc, total, unit, show):
        self.desc, self.total, self.unit, self.show = desc, total, unit, show
        self.n = 0
        self._postfix = ""

    def set_postfix(self, **values):
        self._postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def set_postfix_str(self, text):
        self._postfix = text

    def update(self, n=1):
        self.n += n
        if self.show:
            extra = f" ({self._postfix})" if self._postfix else ""
            log(f"{self.desc}: {self.unit} {self.n}/{self.total}{extra}")

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress(desc, total, verbose, unit="it", leave=False, lines=False):
    """A progress bar on stderr, silent unless ``verbose``.

    A tqdm bar when stderr is a terminal (bars of the steps inside a stage
    vanish when done, ``leave=False``); otherwise no bar, and with
    ``lines`` a plain line per update (``"desc: unit n/total (postfix)"``,
    the postfix as last set).
    """
    if verbose and not _stderr_is_terminal():
        return _Lines(desc, total, unit, show=lines)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not verbose,
        leave=leave,
        dynamic_ncols=True,
    )


def log(message):
    """One line on stderr, written above any live progress bar."""
    tqdm.write(message, file=sys.stderr)
