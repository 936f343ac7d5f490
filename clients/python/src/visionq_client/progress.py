"""A one-line progress report on stderr (no dependency): ``label 12/40, 1 failed``,
rewritten in place on a terminal, one line per update otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int | None, label: str = "visionq",
                 stream: TextIO | None = None, min_interval_s: float = 0.1) -> None:
        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.failed = 0
        self.min_interval_s = min_interval_s
        self._shown_at = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += not ok
        now = time.monotonic()
        if self._tty and now - self._shown_at < self.min_interval_s and self.done != self.total:
            return
        self._shown_at = now
        self._write()

    def line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.label} {self.done}{of}{failed}"

    def _write(self) -> None:
        if self._tty:
            self.stream.write("\r" + self.line() + "\033[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
