"""The process table's rows per partition, counted exactly without a read per new row.

``/stats`` and ``/metrics`` report the rows a worker's partitions hold
(``table_rows``), exactly. A ProcessCreate may store a row that is there
already: its record handled again after a crash or a rebalance (at-least-once
replays what came after the last commit), or an event its shipper sent twice.
So a row counts as new only when the table did not hold its key — which was
a RocksDB get of a key that is, almost always, absent: 5.1-6.6 µs of the
event loop's CPU per creation (a worker filling its table with 1 M
creations, each call timed, 2026-12-05), ~9 % of the loop's samples under
py-spy (docs/benchmark.md, "How it got there").

Here each counted partition has a Bloom filter (rbloom) of the keys its
table may hold: filled by the key scan that counts the partition and by
every row written since. A key it never saw is new without a read; only a
key it may have seen — written before, or a false positive
(``FALSE_POSITIVE_RATE``) — is looked up. A Bloom filter forgets nothing: a
deleted row's key costs a lookup if its process comes again, and it has room
for so many keys. Sized for ``HEADROOM`` times the rows its scan counted (at
least ``ROWS_AT_LEAST``): ~1.2 bytes per key it has room for, so ~4.8 bytes
per row after a scan, 1.2 MB per counted partition at the least. Once it is
full — as many rows written since as it had room for, deleted ones included —
the partition is counted again by its next scan (the next ``/stats``, or
scrape of ``/metrics``), which forgets the deleted keys: a scan of the table
on the event loop (a second or so per million rows) per ``HEADROOM - 1``
times its rows written, where a read per row cost 5-7 s per million.

Exact as long as every row written to a counted partition goes through
:meth:`RowCount.added` — the join is the table's only writer while it owns
the partition (:meth:`sysmon_faust.core.join.state.JoinState.row`), and a
rebalance forgets every count (:meth:`RowCount.forget`). Pure: the caller
reads the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from rbloom import Bloom

#: A filter has room for this many times the rows its scan counted...
HEADROOM: Final = 4
#: ... and for at least this many rows.
ROWS_AT_LEAST: Final = 1_000_000
#: Keys never written that the filter takes for written: each costs a lookup.
FALSE_POSITIVE_RATE: Final = 0.01


class RowCount:
    """Rows per partition (see the module docstring); a partition not counted is not kept."""

    __slots__ = ("_counts", "_keys", "_last_counted", "_room", "_rows_at_least")

    def __init__(self, rows_at_least: int = ROWS_AT_LEAST) -> None:
        self._rows_at_least = rows_at_least
        self._counts: dict[int, int] = {}
        #: Per counted partition: every key its table may hold, and the keys it has room for.
        self._keys: dict[int, Bloom] = {}
        self._room: dict[int, int] = {}
        #: Per partition: its rows when last counted, kept through forget(): the next
        #: scan's filter is sized from it, so that one scan is enough.
        self._last_counted: dict[int, int] = {}

    def counted(self, partition: int) -> bool:
        return partition in self._counts

    def rows(self, partition: int) -> int:
        """The partition's rows; raises ``KeyError`` for a partition not counted."""
        return self._counts[partition]

    def count(self, partition: int, scan: Callable[[], Iterable[bytes]]) -> int:
        """Count the partition from every key of its table, and keep it.

        ``scan``: a full scan of the table's keys, called once — again when the
        table holds more than a filter sized from its last count has room for.
        """
        room = max(self._last_counted.get(partition, 0) * HEADROOM, self._rows_at_least)
        while True:
            seen, rows = Bloom(room, FALSE_POSITIVE_RATE), 0
            for key in scan():
                seen.add(key)
                rows += 1
            if rows * HEADROOM <= room:
                break
            room = rows * HEADROOM  # scanned again into a filter with that much room
        self._keys[partition] = seen
        self._room[partition] = room - rows
        self._counts[partition] = self._last_counted[partition] = rows
        return rows

    def may_hold(self, partition: int, key: bytes) -> bool:
        """Whether a counted partition's table may hold ``key``; False: it does not."""
        return key in self._keys[partition]

    def added(self, partition: int, key: bytes) -> None:
        """A row written to a counted partition whose table did not hold its key."""
        self._counts[partition] += 1
        self._keys[partition].add(key)
        room = self._room[partition] - 1
        if room:
            self._room[partition] = room
            return
        # Full: its false positives would grow. The next scan counts it anew.
        self._last_counted[partition] = self._counts[partition]
        self.forget(partition)

    def deleted(self, partition: int) -> None:
        """A row deleted from a counted partition."""
        self._counts[partition] -= 1

    def forget(self, partition: int | None = None) -> None:
        """Count a partition (None: every partition) again at its next scan."""
        if partition is None:
            self._counts.clear()
            self._keys.clear()
            self._room.clear()
            return
        self._counts.pop(partition, None)
        self._keys.pop(partition, None)
        self._room.pop(partition, None)
