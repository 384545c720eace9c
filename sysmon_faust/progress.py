"""A progress line for long operations: a bar on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, log_every: float = 5.0
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.is_terminal = self.stream.isatty()
        self._interval = 0.2 if self.is_terminal else log_every
        self._started = time.monotonic()
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        self._draw(done, now)

    def finish(self, done: int) -> None:
        self._draw(done, time.monotonic())
        if self.is_terminal:
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, done: int, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        share = done / self.total if self.total else 1.0
        text = f"{self.label}: {done:,}/{self.total:,} ({share:5.1%}) {done / elapsed:,.0f}/s"
        if self.is_terminal:
            width = 30
            filled = int(width * min(share, 1.0))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
