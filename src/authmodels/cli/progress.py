"""A progress bar on standard error, drawn only when standard error is a terminal.

Long commands (``db upgrade``/``downgrade``, ``keys reencrypt``, ``partitions ensure``,
``purge``) draw one; piped into a file, a log or another program, nothing is drawn and the
command prints only its lines of result. ``--no-progress`` and ``--json`` turn it off too.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    """One line redrawn in place: ``label [#####.....] done/total  detail  elapsed``.

    Args:
        label: what is in progress (``"migrating"``).
        total: the number of steps, when known (None draws a counter without a bar).
        enabled: draw at all; :func:`progress_wanted` decides it for a command.
        stream: where to draw (standard error).
    """

    def __init__(
        self, label: str, total: int | None, *, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._drawn = False

    def update(self, done: int, detail: str = "") -> None:
        """Redraw the line for ``done`` steps, with ``detail`` (the step under way)."""
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns
        elapsed = f"{time.monotonic() - self.started:5.1f} s"
        if self.total:
            bar_width = 24
            filled = bar_width * min(done, self.total) // self.total
            counter = f"[{'#' * filled}{'.' * (bar_width - filled)}] {done}/{self.total}"
            line = f"{self.label} {counter}  {detail}"
        else:
            line = f"{self.label} {done:,} {detail}"
        room = max(width - len(elapsed) - 3, 10)
        line = (line[: room - 1] + "…") if len(line) > room else line.ljust(room)
        self.stream.write(f"\r{line}  {elapsed}")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the line, so that a line of result can be printed in its place."""
        if self.enabled and self._drawn:
            width = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()
            self._drawn = False


def progress_wanted(*, json_output: bool, disabled: bool, stream: TextIO | None = None) -> bool:
    """True when a bar should be drawn: on a terminal, without ``--json`` or ``--no-progress``."""
    stream = stream or sys.stderr
    return not json_output and not disabled and stream.isatty()
