"""A one-line progress meter on stderr for the ``affinity`` command's long steps.

Neither tqdm nor rich is a dependency of the SDK, so this small printer stands in for them:
``label [#####-------]  2/5 fitting  1.4s``, redrawn in place (carriage return) at most every
:data:`MIN_REDRAW_S` seconds and finished with a newline. It writes to stderr only, so the
command's stdout (its summary lines) stays clean. :func:`progress_for` turns the CLI's
``--progress / --no-progress`` choice into an enabled or disabled meter: by default it is on only
when stderr is a terminal and ``-q`` was not given.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> with Progress("fit", 2, enabled=True, stream=out) as bar:
...     bar.advance("reading")
...     bar.advance("fitting")
>>> out.getvalue().rstrip().rsplit("\\r", 1)[-1].split("]")[0]
'fit [########################'
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from types import TracebackType
from typing import Final, TextIO

__all__ = ["MIN_REDRAW_S", "LineSafeHandler", "Progress", "end_line", "progress_for"]

#: The meter redraws at most this often (a redraw per event would cost more than the work).
MIN_REDRAW_S: Final = 0.1
_WIDTH: Final = 24
#: The meter whose line is drawn but not ended (other output must start on a new line).
_OPEN: list[Progress] = []


class Progress:
    """A progress meter over ``total`` units (steps, bytes, rows) that draws one line on ``stream``.

    A disabled meter does nothing, so callers update it unconditionally.

    Parameters
    ----------
    label
        What is in progress, shown first on the line.
    total
        The number of units; ``None`` when unknown (then only the count is shown).
    enabled
        Draw at all.
    stream
        Where to draw; default ``sys.stderr`` at the time of the call.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress("rows", None, enabled=True, stream=out)
    >>> bar.update(1500)
    >>> bar.close()
    >>> "1,500" in out.getvalue(), out.getvalue().endswith("\\n")
    (True, True)
    >>> Progress("quiet", 3, enabled=False).advance("nothing drawn")
    """

    def __init__(
        self, label: str, total: float | None, *, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.done = 0.0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.perf_counter()
        self._drawn_at = -MIN_REDRAW_S
        self._width = 0  # of the last line drawn, to blank a longer one
        self._closed = False

    def update(self, n: float = 1, note: str | None = None) -> None:
        """Count ``n`` more units done (and show ``note`` beside the count, if given)."""
        self.done += n
        if note is not None:
            self.note = note
        if self.enabled and time.perf_counter() - self._drawn_at >= MIN_REDRAW_S:
            self._draw()

    def advance(self, note: str) -> None:
        """Start the step ``note``: shown at once, counted as done when the next one starts."""
        if self.note:
            self.done += 1
        self.note = note
        if self.enabled:
            self._draw()

    def close(self) -> None:
        """Draw the final state and end the line (once)."""
        if self._closed:
            return
        self._closed = True
        if self.note and self.total is not None:  # stepped with advance(): every step is done
            self.done = max(self.done, float(self.total))
            self.note = "done"
        if self.enabled:
            self._draw()
            end_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif self.enabled and not self._closed:  # an error: end the line so its message starts clean
            self._closed = True
            end_line()

    def _draw(self) -> None:
        elapsed = time.perf_counter() - self._started
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = round(_WIDTH * share)
            count = f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {_count(self.done)}/{_count(self.total)}"
        else:
            count = _count(self.done)
        line = f"{self.label} {count} {self.note} {elapsed:.1f}s".replace("  ", " ")
        self._stream.write("\r" + line + " " * max(self._width - len(line), 0))
        self._stream.flush()
        self._width = len(line)
        self._drawn_at = time.perf_counter()
        _OPEN[:] = [self]


def end_line() -> None:
    """End the line of a meter drawn last (if any), so what is written next starts on its own line;
    the meter redraws on a fresh line at its next update.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> Progress("x", 2, enabled=True, stream=out).advance("a")
    >>> end_line()
    >>> out.getvalue().endswith("\\n")
    True
    """
    while _OPEN:
        bar = _OPEN.pop()
        bar._stream.write("\n")
        bar._stream.flush()
        bar._width = 0


class LineSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that ends a progress meter's line before each record it writes."""

    def emit(self, record: logging.LogRecord) -> None:
        end_line()
        super().emit(record)


def _count(value: float) -> str:
    return f"{value:,.0f}"


def progress_for(args: argparse.Namespace, label: str, total: float | None) -> Progress:
    """The meter a command shows for ``label``: on with ``--progress``, off with ``--no-progress``
    or ``-q``, else on only when stderr is a terminal.

    Examples
    --------
    >>> import argparse
    >>> progress_for(argparse.Namespace(progress=None, quiet=False), "x", 1).enabled  # not a TTY here
    False
    >>> progress_for(argparse.Namespace(progress=True), "x", 1).enabled
    True
    """
    choice: bool | None = getattr(args, "progress", None)
    if choice is None:
        enabled = not getattr(args, "quiet", False) and _is_tty(sys.stderr)
    else:
        enabled = choice
    return Progress(label, total, enabled=enabled)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
