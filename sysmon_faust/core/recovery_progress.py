"""How far a table recovery is: records restored, share, rate and time left. Pure.

A worker that starts without its state (a new host, a wiped disk, a standby
promoted after its own restart) reads its tables' changelogs before it
joins anything; at a million rows that takes minutes (issue 21). Faust knows
how many changelog records each partition still has to read (its highwater
minus the offset it read up to: ``Recovery.active_remaining_total``) but
says so only in a debug-level log line; the worker samples that count once
a second (:mod:`sysmon_faust.http.observability`) and this module makes of the
samples what ``/health``, ``/metrics`` and the progress log line show.

The total is the most that was ever left in the current recovery (a
rebalance in the middle may add partitions: the total grows with them); the
rate is measured over the last :data:`RATE_WINDOW_S` seconds of samples,
so a slow start does not make the estimate wrong for the rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

#: Seconds of samples the rate is measured over.
RATE_WINDOW_S: Final = 10.0


@dataclass
class RecoveryProgress:
    """Samples of the changelog records left to restore, and what they add up to.

    ``observe(remaining, now)`` once a second while the worker recovers
    (``now``: monotonic seconds), ``finish(now)`` when it has recovered.
    """

    records_total: int = 0
    records_remaining: int = 0
    recovering: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    #: Records the samples saw restored, summed (a grown total does not count).
    _restored: int = 0

    def observe(self, remaining: int, now: float) -> None:
        """Records still to read in this recovery at ``now``."""
        remaining = max(remaining, 0)
        if not self.recovering:
            self.recovering = True
            self.started_at, self.finished_at = now, None
            self.records_total = self._restored = 0
            self._samples.clear()
        elif remaining < self.records_remaining:
            self._restored += self.records_remaining - remaining
        self.records_total = max(self.records_total, self._restored + remaining)
        self.records_remaining = remaining
        self._samples.append((now, self._restored))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()

    def finish(self, now: float) -> None:
        """The worker recovered: nothing is left."""
        if self.recovering:
            self.observe(0, now)
            self.recovering = False
            self.finished_at = now

    @property
    def records_done(self) -> int:
        return self.records_total - self.records_remaining

    @property
    def percent(self) -> float:
        """Share restored, 0-100 (100 with nothing to restore)."""
        if self.records_total == 0:
            return 100.0
        return 100.0 * self.records_done / self.records_total

    @property
    def records_per_second(self) -> float | None:
        """Records restored per second over the last :data:`RATE_WINDOW_S` (once finished:
        over the whole recovery); None before two samples a second apart."""
        if not self.recovering and self.finished_at is not None and self.started_at is not None:
            took = self.finished_at - self.started_at
            return self.records_total / took if took > 0 else None
        if len(self._samples) < 2:
            return None
        (first_at, first), (last_at, last) = self._samples[0], self._samples[-1]
        if last_at - first_at < 1.0:
            return None
        return (last - first) / (last_at - first_at)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate; None while it is not known (or nothing moves)."""
        if not self.recovering:
            return 0.0 if self.started_at is not None else None
        rate = self.records_per_second
        if not rate:
            return None
        return self.records_remaining / rate

    def answer(self) -> dict[str, Any]:
        """What ``/health`` shows under ``recovery`` (rates in records/s, times in s)."""
        rate, eta = self.records_per_second, self.eta_seconds
        took = (
            (self.finished_at or 0.0) - self.started_at
            if self.started_at is not None and self.finished_at is not None
            else None
        )
        return {
            "recovering": self.recovering,
            "records_total": self.records_total,
            "records_done": self.records_done,
            "records_remaining": self.records_remaining,
            "percent": round(self.percent, 1),
            "records_per_second": round(rate) if rate is not None else None,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "last_recovery_seconds": round(took, 1) if took is not None else None,
        }

    def log_line(self) -> str:
        """One line for the worker's log while it recovers."""
        rate, eta = self.records_per_second, self.eta_seconds
        return (
            f"recovering tables: {self.records_done:,}/{self.records_total:,} changelog "
            f"records ({self.percent:.1f}%), "
            + (f"{rate:,.0f} records/s, " if rate is not None else "rate not known yet, ")
            + (f"about {eta:.0f} s left" if eta is not None else "time left not known yet")
        )
