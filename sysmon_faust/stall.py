"""Is the worker moving? Per source partition it owns: lag, and when its position last moved.

``/health`` used to check only that the worker had started and recovered:
it stayed 200 through a 20 s broker outage and through a worker wedged on a
full disk (issue 15). A worker is stalled when a partition it owns has lag
— records on the broker past its committed offset — and that offset has
not moved for ``SYSMON_STALL_TIMEOUT``. Committed, not read: a worker that
reads on but cannot get its output acknowledged (a topic under its
``min.insync.replicas``) commits nothing, and is stalled.

:class:`StallWatch` is pure (times in seconds, offsets as Kafka's);
table-tested in tests/unit/test_stall.py. What feeds it is
:mod:`sysmon_faust.observability`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stalled:
    """A partition with ``lag`` records past its committed offset, unmoved for ``seconds``."""

    partition: Hashable
    lag: int
    seconds: float


@dataclass(slots=True)
class _Seen:
    position: int | None
    moved_at: float


class StallWatch:
    """The partitions' positions as last observed, and since when each has not moved."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._seen: dict[Hashable, _Seen] = {}
        self._lag: dict[Hashable, int] = {}

    def observe(self, positions: Iterable[tuple[Hashable, int | None, int]], now: float) -> None:
        """The partitions owned now: (partition, committed offset or None, lag), at ``now`` (s).

        A partition no longer listed is forgotten (revoked); one without lag
        is not waiting for anything, so its clock starts again.
        """
        owned = {}
        for partition, position, lag in positions:
            seen = self._seen.get(partition)
            if seen is None or seen.position != position or lag <= 0:
                seen = _Seen(position, now)
            owned[partition] = seen
            self._lag[partition] = lag
        self._seen = owned
        self._lag = {p: lag for p, lag in self._lag.items() if p in owned}

    def stalled(self, now: float) -> list[Stalled]:
        """Partitions with lag whose position has not moved for the timeout, longest first."""
        found = [
            Stalled(partition, self._lag[partition], now - seen.moved_at)
            for partition, seen in self._seen.items()
            if self._lag[partition] > 0 and now - seen.moved_at >= self.timeout_seconds
        ]
        return sorted(found, key=lambda s: -s.seconds)

    def unmoved_seconds(self, now: float) -> dict[Hashable, float]:
        """Per partition with lag: seconds since its position last moved (for /metrics)."""
        return {
            partition: now - seen.moved_at
            for partition, seen in self._seen.items()
            if self._lag[partition] > 0
        }
