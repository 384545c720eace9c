"""Reading input partitions in step, by event time.

Winlogbeat spreads a host's events over the input partitions, and the
partitions hold different amounts: read byte for byte alike, a thin
partition runs minutes of event time ahead of a thick one while a backlog is
read. Stream time (the greatest event time seen, :mod:`sysmon_faust.expiry`)
then runs ahead of connects whose creation sits in the slow partition, and
their grace runs out before the creation is read. So the intake pauses a
partition that is more than :data:`ALIGN_MS` ahead of the slowest partition
that still has records to read — Kafka Streams' timestamp synchronization,
coarser. A partition with nothing left to read holds nobody back.

Table-tested in tests/unit/test_alignment.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, TypeVar

from sysmon_faust.expiry import MAX_CLOCK_AHEAD_MS

#: How far (ms of event time) a partition may run ahead of the slowest one.
ALIGN_MS: Final = 30_000

P = TypeVar("P")


def partitions_to_pause(
    assigned: Iterable[P],
    latest_event_ms: Mapping[P, int],
    lag: Mapping[P, int | None],
    now_ms: int,
    align_ms: int = ALIGN_MS,
) -> set[P]:
    """The partitions to pause; every other assigned partition is read.

    ``latest_event_ms``: the greatest event time read from each partition
    (none yet: not known, and no reason to pause anyone); ``lag``: records
    left to read (``None``: not known yet, counted as some).
    """
    ceiling = now_ms + MAX_CLOCK_AHEAD_MS  # one host with its clock years ahead
    behind = {
        partition: min(latest_event_ms[partition], ceiling)
        for partition in assigned
        if (lag.get(partition) is None or lag[partition] > 0)  # type: ignore[operator]
        and partition in latest_event_ms
    }
    if not behind:
        return set()
    slowest = min(behind.values())
    return {partition for partition, time in behind.items() if time > slowest + align_ms}
