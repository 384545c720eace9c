"""Progress of a long operation: rich's bar on a terminal, a line every few seconds in logs.

``Progress(total, label)``, then ``update(done)`` as often as wished and
``finish(done)``. On a terminal, rich draws a bar with the count, the share,
the rate and the time left. Anywhere else (CI logs, a pipe, ``make bench``
output kept in a file) a bar is noise: one plain line every ``log_every``
seconds and one at the end, ``label: done/total (share) rate/s``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, log_every: float = 5.0
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.is_terminal = self.stream.isatty()
        self._log_every = log_every
        self._started = time.monotonic()
        self._last = 0.0
        self._bar: RichProgress | None = None
        if self.is_terminal:
            self._bar = RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(show_speed=True),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self._task = self._bar.add_task(label, total=self.total or None)
            self._bar.start()

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= self._log_every:
            self._last = now
            self._line(done, now)

    def finish(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            self._bar.stop()
            return
        self._line(done, time.monotonic())

    def _line(self, done: int, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        share = done / self.total if self.total else 1.0
        self.stream.write(
            f"{self.label}: {done:,}/{self.total:,} ({share:5.1%}) {done / elapsed:,.0f}/s\n"
        )
        self.stream.flush()
