"""Joins parked until their ancestry is settled: the ancestry wait, without blocking the agent.

A join whose walk up the process tree stops at an ancestor whose link may
still be in flight — another worker's intake has read its creation and not
written the link yet (:mod:`sysmon_faust.stream.tree_replica`) — waits for it, up to
``SYSMON_ANCESTRY_WAIT`` seconds. It must not wait *inside* the join agent:
the agent handles one record at a time for all the partitions of its
worker, and whether the link "may still come" is decided from times the
input carries; an input that keeps it true (GUIDs whose time groups are no
start time: ``../shared/cases/guid_without_start_time``) held the agent for
the whole wait per join — 80 events took 106 s.

So such a join is *parked*, as the grace buffer parks connects, and the
agent goes on with the next record:

* durably: one record in the pending table (changelog-backed: it survives a
  crash, and under exactly_once it is written in the transaction of the
  record that parked it), keyed :func:`parked_key` — apart from the grace
  buffer's keys, and ordered by process, event time and position;
* in order for its process: while a process has a parked join, its next
  joins park behind it, and all are released together, in key order;
* released by a later record of the same partition (a table changes only
  while a record of its partition is handled; the agent sends a wake tick
  for that) once the missing link has arrived, can no longer come, or the
  wait is over (wall clock) — with the ancestry known then.

:class:`Parking` is the in-memory view of those records for the partitions
this worker handles: loaded from the table after an assignment, forgotten on
a rebalance. Pure; table-tested in tests/unit/core/join/test_parking.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from sysmon_faust.core.join import grace

#: Keys of parked joins in the pending table. Sorts before every grace key
#: (those start with a GUID's text), so a scan of the grace keys can skip it.
PARKED_PREFIX: Final = b"\x01parked\x00"
#: How often (ms) a partition's parked joins are looked at, at most, while
#: the process-tree copy keeps reading: each look is a link read per process.
CHECK_EVERY_MS: Final = 50


def parked_key(guid: str, event_time_ms: int, offset: int, index: int) -> bytes:
    """The pending-table key of a parked join: sorts by process, event time, then position.

    ``offset``, ``index``: where the connect was read (re-keying offset,
    place in its batch record); a join parked twice (a replay after a crash)
    lands on the same key.
    """
    return PARKED_PREFIX + grace.pending_key(guid, event_time_ms, offset, index)


def is_parked_key(key: bytes) -> bool:
    return key.startswith(PARKED_PREFIX)


@dataclass(slots=True)
class ParkedJoin:
    """A join waiting for its ancestry: the connect, its process's row, and the wait.

    Times in Unix ms; ``received``: when the connect's input record was
    appended to Kafka (s), for the latency histogram.
    """

    key: bytes
    connect: dict[str, Any]
    process: dict[str, Any]
    event_time_ms: int
    received: float | None
    parked_at_ms: int
    deadline_ms: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "connect": self.connect,
                "process": self.process,
                "event_time_ms": self.event_time_ms,
                "received": self.received,
                "parked_at_ms": self.parked_at_ms,
                "deadline_ms": self.deadline_ms,
            }
        )

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> ParkedJoin:
        """Raises ValueError (orjson.JSONDecodeError, KeyError as ValueError) for a bad record."""
        try:
            fields = orjson.loads(value)
            return cls(key=key, **fields)
        except (TypeError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"not a parked join: {key!r}: {exc}") from exc


class Parking:
    """The parked joins of this worker's partitions, per partition and process, in key order."""

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, list[ParkedJoin]]] = {}
        #: Per partition: the process-tree copy's version when last looked at,
        #: and when (ms) it may be looked at again.
        self._checked_version: dict[int, int] = {}
        self._next_check_ms: dict[int, int] = {}
        #: Per partition: the earliest deadline of its parked joins (absent: to count).
        self._earliest_ms: dict[int, int] = {}
        self._count = 0

    def loaded(self, partition: int) -> bool:
        return partition in self._by_partition

    def load(
        self, partition: int, records: Iterable[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, str]]:
        """The partition's parked joins as the table holds them (key order), after an assignment.

        Returns the records that are no parked join (key, why): left out.
        """
        processes: dict[str, list[ParkedJoin]] = {}
        unreadable = []
        for key, value in records:
            try:
                join = ParkedJoin.decode(key, value)
                guid = join.connect["process_guid"]
            except (ValueError, KeyError, TypeError) as exc:
                unreadable.append((key, repr(exc)))
                continue
            processes.setdefault(guid, []).append(join)
        self._count += sum(map(len, processes.values())) - sum(
            map(len, self._by_partition.get(partition, {}).values())
        )
        self._by_partition[partition] = processes
        self._checked_version.pop(partition, None)
        self._earliest_ms.pop(partition, None)
        return unreadable

    def forget(self) -> None:
        """After a rebalance: partitions may have changed hands; load again when needed."""
        self._by_partition.clear()
        self._checked_version.clear()
        self._next_check_ms.clear()
        self._earliest_ms.clear()
        self._count = 0

    def holds(self, partition: int, guid: str) -> int:
        """How many joins of the process ``guid`` are parked (its next join goes behind them)."""
        return len(self._by_partition.get(partition, {}).get(guid, ()))

    def park(self, partition: int, join: ParkedJoin) -> bool:
        """Park ``join`` behind its process's; False if that key is parked already (a replay)."""
        joins = self._by_partition.setdefault(partition, {}).setdefault(
            join.connect["process_guid"], []
        )
        if any(parked.key == join.key for parked in joins):
            return False
        joins.append(join)
        self._count += 1
        self._checked_version.pop(partition, None)
        if partition in self._earliest_ms:
            self._earliest_ms[partition] = min(self._earliest_ms[partition], join.deadline_ms)
        return True

    def take(self, partition: int, guid: str) -> list[ParkedJoin]:
        """Unpark every join of the process, in key order."""
        joins = self._by_partition.get(partition, {}).pop(guid, [])
        self._count -= len(joins)
        self._earliest_ms.pop(partition, None)
        joins.sort(key=lambda join: join.key)
        return joins

    def count(self) -> int:
        """Joins parked on this worker."""
        return self._count

    def partitions(self) -> list[int]:
        """Partitions with parked joins."""
        return [p for p, processes in self._by_partition.items() if processes]

    def due_for_a_look(self, partition: int, tree_version: int, now_ms: int) -> bool:
        """Whether the partition's parked joins may have something to release now.

        Yes when the tree copy read something since the last look (a link,
        or a watermark that says a link can no longer come) — at most every
        :data:`CHECK_EVERY_MS` — or when a wait is over.
        """
        processes = self._by_partition.get(partition)
        if not processes:
            return False
        if partition not in self._earliest_ms:
            self._earliest_ms[partition] = min(
                join.deadline_ms for joins in processes.values() for join in joins
            )
        if self._earliest_ms[partition] <= now_ms:
            return True
        return self._checked_version.get(
            partition
        ) != tree_version and now_ms >= self._next_check_ms.get(partition, 0)

    def looked(self, partition: int, tree_version: int, now_ms: int) -> None:
        self._checked_version[partition] = tree_version
        self._next_check_ms[partition] = now_ms + CHECK_EVERY_MS

    def processes(self, partition: int) -> Iterator[tuple[str, list[ParkedJoin]]]:
        """(process GUID, its parked joins) of the partition, oldest first; a copy to take from."""
        yield from list(self._by_partition.get(partition, {}).items())
