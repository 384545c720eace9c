"""Is the worker moving? Per part of it (the intake, the join): lag, and when it last moved.

``/health`` used to check only that the worker had started and recovered:
it stayed 200 through a 20 s broker outage and through a worker wedged on a
full disk (issue 15). A part of the worker is stalled when some source
partition it owns has lag — records on the broker past its committed
offset — and none of its partitions' committed offsets has moved for
``SYSMON_STALL_TIMEOUT``. Committed, not read: a worker that reads on but
cannot get its output acknowledged commits nothing, and is stalled.

Per part, not per partition: the intake holds back an input partition that
runs ahead in event time (:mod:`sysmon_faust.core.alignment`) and commits nothing
of it while the others catch up — for as long as an hour of old logs takes.
That partition does not move, but the intake does.

:class:`StallWatch` is pure (times in seconds, offsets as Kafka's);
table-tested in tests/unit/stream/test_stall.py. What feeds it is
:mod:`sysmon_faust.http.observability`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stalled:
    """A partition ``lag`` records past its committed offset; its part unmoved for ``seconds``."""

    partition: Hashable
    lag: int
    seconds: float


#: What :meth:`StallWatch.observe` takes: (part, partition, committed offset or None, lag).
Position = tuple[str, Hashable, int | None, int]


class StallWatch:
    """The partitions' positions as last observed, and since when each part has not moved."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._positions: dict[Hashable, int | None] = {}
        self._lagging: dict[str, dict[Hashable, int]] = {}
        self._moved_at: dict[str, float] = {}

    def observe(self, positions: Iterable[Position], now: float) -> None:
        """The partitions owned now, at ``now`` (s).

        A part moved when one of its partitions' positions changed; a part
        with no lag anywhere is not waiting for anything, so its clock starts
        again. Partitions no longer listed are forgotten (revoked).
        """
        positions_now: dict[Hashable, int | None] = {}
        lagging: dict[str, dict[Hashable, int]] = {}
        moved: set[str] = set()
        for part, partition, position, lag in positions:
            lagging.setdefault(part, {})
            if lag > 0:
                lagging[part][partition] = lag
            if partition not in self._positions or self._positions[partition] != position:
                moved.add(part)
            positions_now[partition] = position
        for part, behind in lagging.items():
            if part in moved or not behind or part not in self._moved_at:
                self._moved_at[part] = now
        self._positions = positions_now
        self._lagging = lagging
        self._moved_at = {part: at for part, at in self._moved_at.items() if part in lagging}

    def stalled(self, now: float) -> list[Stalled]:
        """The lagging partitions of every part unmoved for the timeout, most behind first."""
        found = [
            Stalled(partition, lag, now - self._moved_at[part])
            for part, behind in self._lagging.items()
            if now - self._moved_at[part] >= self.timeout_seconds
            for partition, lag in behind.items()
        ]
        return sorted(found, key=lambda s: -s.lag)

    def unmoved_seconds(self, now: float) -> dict[str, float]:
        """Per part with lag: seconds since it last moved (for /metrics)."""
        return {
            part: now - self._moved_at[part] for part, behind in self._lagging.items() if behind
        }
