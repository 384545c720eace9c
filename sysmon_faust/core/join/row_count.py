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

Here each partition has a Bloom filter (rbloom) of the keys its table may
hold: filled by the key scan that counts the partition (once after an
assignment) and by every row written since. A key it never saw is new
without a read; only a key it may have seen — written before, or a false
positive (``FALSE_POSITIVE_RATE``) — is looked up. A Bloom filter forgets
nothing: a deleted row's key costs a lookup if its process comes again.
Sized for ``HEADROOM`` times the rows counted (at least ``ROWS_AT_LEAST``:
~1.2 bytes a key at 1 %, 2.4 MB at 2 M); once as many rows were written as
it was sized for, its false positives would grow, so the partition is
counted again by the next scan (``/stats`` or a scrape of ``/metrics``).

Exact as long as every row written to a counted partition goes through
:meth:`RowCount.written` — the join is the table's only writer while it owns
the partition (:meth:`sysmon_faust.core.join.state.JoinState.row`), and a
rebalance forgets every count (:meth:`RowCount.forget`). Pure: the caller
reads the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from rbloom import Bloom

#: A filter is sized for this many times the rows its scan counted...
HEADROOM: Final = 2
#: ... and for at least this many rows.
ROWS_AT_LEAST: Final = 1_000_000
#: Keys never written that the filter takes for written: each costs a lookup.
FALSE_POSITIVE_RATE: Final = 0.01


class RowCount:
    """Rows per partition (see the module docstring); a partition not counted is not kept."""

    __slots__ = ("_counts", "_keys", "_room", "_rows_at_least")

    def __init__(self, rows_at_least: int = ROWS_AT_LEAST) -> None:
        self._rows_at_least = rows_at_least
        self._counts: dict[int, int] = {}
        #: Per partition: every key its table may hold, and the keys it may take still.
        self._keys: dict[int, Bloom] = {}
        self._room: dict[int, int] = {}

    def counted(self, partition: int) -> bool:
        return partition in self._counts

    def rows(self, partition: int) -> int:
        """The partition's rows; raises ``KeyError`` for a partition not counted."""
        return self._counts[partition]

    def count(self, partition: int, scan: Callable[[], Iterable[bytes]]) -> int:
        """Count the partition from every key of its table, and keep it.

        ``scan``: a full scan of the table's keys, called once — twice when the
        table holds more than the smallest filter is sized for.
        """
        room = self._rows_at_least
        while True:
            seen, rows = Bloom(room, FALSE_POSITIVE_RATE), 0
            for key in scan():
                seen.add(key)
                rows += 1
            if rows * HEADROOM <= room:
                break
            room = rows * HEADROOM  # scanned again into a filter with room for as many again
        self._keys[partition] = seen
        self._room[partition] = room - rows
        self._counts[partition] = rows
        return rows

    def written(self, partition: int, key: bytes, stored: Callable[[], bool]) -> None:
        """A row about to be written to a counted partition: one more unless the table holds its
        key (``stored``, a read of the table, is called only when the filter cannot tell)."""
        seen = self._keys[partition]
        if key in seen and stored():
            return
        self._counts[partition] += 1
        seen.add(key)
        self._room[partition] -= 1
        if self._room[partition] <= 0:
            # Full: its false positives would grow. The next scan counts it anew.
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
