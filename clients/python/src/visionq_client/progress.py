"""A one-line progress report on stderr (no dependency): ``label 12/40, 1 failed``,
rewritten in place on a terminal (at most every 0.1 s), else a line at most every 2 s
(a log stays short); the last count is always shown."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int | None, label: str = "visionq",
                 stream: TextIO | None = None) -> None:
        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.failed = 0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval_s = 0.1 if self._tty else 2.0
        self._shown_at = -self.min_interval_s
        self._shown_done = 0

    def update(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += not ok
        now = time.monotonic()
        if now - self._shown_at < self.min_interval_s and self.done != self.total:
            return
        self._shown_at = now
        self._write()

    def line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.label} {self.done}{of}{failed}"

    def _write(self) -> None:
        self._shown_done = self.done
        if self._tty:
            self.stream.write("\r" + self.line() + "\033[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the last count if it was not, and end the terminal's line."""
        if self._shown_done != self.done:
            self._write()
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
