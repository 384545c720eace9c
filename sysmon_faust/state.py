"""The join's state beyond a lookup: waiting connects, stream time, and what expires.

Three changelog-backed RocksDB tables, all co-partitioned with the re-keying
topic and changed only by the join agent while it handles a record of the
same partition (Faust writes a table in the partition of the current event):

* ``process_table``: the ProcessCreate rows (:mod:`sysmon_faust.models`).
* ``pending_table``: the grace buffer, one record per waiting connect, keyed
  so a process's connects are one ordered range (:mod:`sysmon_faust.grace`).
* ``expiry_index``: deadlines in stream time — of waiting connects, of rows
  of ended processes (retention) and of rows that never ended (TTL) — plus
  the partition's stream time (:mod:`sysmon_faust.expiry`).

Entries of the index are not removed when what they point at goes earlier (a
connect released by its creation, a row deleted by retention before its
TTL): when due, they find nothing or a newer state, and are dropped. That
keeps every change one write, at the price of index entries living until due.

The reads this module does straight on RocksDB (ordered scans, counts) are
ones Faust's table API has no call for; every write goes through the table,
so it reaches the changelog.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.types import TableT

from sysmon_faust import expiry, grace
from sysmon_faust.join import Row

#: Write the partition's stream time to the index when it moved this much.
_KEEP_STREAM_TIME_EVERY_MS = 1_000


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long things last, in milliseconds of stream time (settings)."""

    grace: grace.GraceLimits
    retention_ms: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class ExpiredConnect:
    connect: Row
    event_time_ms: int


@dataclass
class Expired:
    """What one expiry pass removed."""

    connects: list[ExpiredConnect] = field(default_factory=list)
    rows_after_termination: int = 0
    rows_after_ttl: int = 0


def _db(table: TableT, partition: int) -> Any:
    # faust.stores.rocksdb.Store: the partition's RocksDB, whose iterators
    # return keys in byte order.
    return table.data._db_for_partition(partition)  # type: ignore[attr-defined]


def _keys_from(db: Any, prefix: bytes) -> Iterator[bytes]:
    keys = db.iterkeys()
    keys.seek(prefix)
    for key in keys:
        if not key.startswith(prefix):
            return
        yield key


class JoinState:
    def __init__(
        self,
        process_table: TableT,
        pending_table: TableT,
        expiry_index: TableT,
        lifetimes: Lifetimes,
    ) -> None:
        self.rows = process_table
        self.pending = pending_table
        self.index = expiry_index
        self.lifetimes = lifetimes
        self.clock = expiry.StreamClock()
        self._kept_stream_time: dict[int, int] = {}
        # Waiting connects per partition and per process: counted from the
        # table when first needed after an assignment, then kept up to date.
        self._waiting: dict[int, int] = {}
        self._waiting_for: dict[str, int] = {}

    def forget(self) -> None:
        """After a rebalance: partitions may have changed hands; count and read again."""
        self.clock = expiry.StreamClock()
        self._kept_stream_time.clear()
        self._waiting.clear()
        self._waiting_for.clear()

    # --- stream time ---------------------------------------------------------

    def stream_time(self, partition: int, wall_ms: int, event_time_ms: int | None = None) -> int:
        """The partition's stream time, after ``event_time_ms`` if an event is being handled."""
        if not self.clock.knows(partition):
            kept = self.index.get(expiry.STREAM_TIME_KEY)
            if kept is not None:
                self.clock.start(partition, expiry.decode_stream_time(kept), wall_ms)
                self._kept_stream_time[partition] = expiry.decode_stream_time(kept)
            elif event_time_ms is None:
                return -1  # nothing seen yet: nothing can be due
        if event_time_ms is None:
            now = self.clock.now(partition, wall_ms)
        else:
            now = self.clock.observe(partition, event_time_ms, wall_ms)
        if now - self._kept_stream_time.get(partition, -1) >= _KEEP_STREAM_TIME_EVERY_MS:
            self.index[expiry.STREAM_TIME_KEY] = expiry.encode_stream_time(now)
            self._kept_stream_time[partition] = now
        return now

    # --- rows ----------------------------------------------------------------

    def put_row(self, key: bytes, row: Row, stream_time: int) -> None:
        self.rows[key] = orjson.dumps(row)
        deadline = stream_time + self.lifetimes.ttl_ms
        self.index[expiry.index_key(expiry.ROW_TTL, deadline, key)] = b""

    def mark_terminated(self, key: bytes, terminated_at: str, stream_time: int) -> bool:
        """Mark the row of an ended process; False when the table does not hold it."""
        stored = self.rows.get(key)
        if stored is None:
            return False
        row = orjson.loads(stored)
        row["process_terminated_at"] = terminated_at
        self.rows[key] = orjson.dumps(row)
        deadline = stream_time + self.lifetimes.retention_ms
        self.index[expiry.index_key(expiry.ROW_RETENTION, deadline, key)] = b""
        return True

    # --- the grace buffer ----------------------------------------------------

    def waiting(self) -> int:
        """Connects waiting on this worker (in the partitions counted so far)."""
        return sum(self._waiting.values())

    def _waiting_in(self, partition: int) -> int:
        if partition not in self._waiting:
            db = _db(self.pending, partition)
            keys = db.iterkeys()
            keys.seek_to_first()
            faust_offset_key = self.pending.data.offset_key  # type: ignore[attr-defined]
            self._waiting[partition] = sum(1 for key in keys if key != faust_offset_key)
        return self._waiting[partition]

    def _waiting_for_process(self, guid: str, partition: int) -> int:
        if guid not in self._waiting_for:
            prefix = grace.process_prefix(guid)
            found = 0
            for _ in _keys_from(_db(self.pending, partition), prefix):
                found += 1
                if found >= self.lifetimes.grace.max_per_process:
                    break
            self._waiting_for[guid] = found
        return self._waiting_for[guid]

    def _count_waiting(self, guid: str, partition: int, change: int) -> None:
        self._waiting[partition] = self._waiting_in(partition) + change
        left = self._waiting_for.get(guid, 0) + change
        if left > 0:
            self._waiting_for[guid] = left
        else:
            self._waiting_for.pop(guid, None)

    def wait(
        self, connect: Row, event_time_ms: int, position: tuple[int, int], partition: int,
        stream_time: int,
    ) -> bool:  # fmt: skip
        """Let a connect wait for its process; False when the buffer is full for it."""
        guid = connect["process_guid"]
        self._waiting_in(partition)  # counted, so that waiting() includes it
        for_process = self._waiting_for_process(guid, partition)
        if not grace.admit(for_process, self.waiting(), self.lifetimes.grace):
            return False
        key = grace.pending_key(guid, event_time_ms, *position)
        if self.pending.get(key) is None:  # else: read twice (a replay); it already waits
            self.pending[key] = orjson.dumps(connect)
            self._count_waiting(guid, partition, +1)
        deadline = stream_time + self.lifetimes.grace.grace_ms
        self.index[expiry.index_key(expiry.CONNECT_GRACE, deadline, key)] = b""
        return True

    def release(self, guid: str, partition: int) -> list[ExpiredConnect]:
        """Take the connects waiting for ``guid`` out of the buffer, in event-time order."""
        if not self._waiting_in(partition):
            return []  # the common case, and all there is to it without a grace
        released = []
        for key, value in self._items_from(partition, grace.process_prefix(guid)):
            del self.pending[key]
            self._count_waiting(guid, partition, -1)
            released.append(ExpiredConnect(orjson.loads(value), grace.parse_pending_key(key)[1]))
        return released

    def _items_from(self, partition: int, prefix: bytes) -> list[tuple[bytes, bytes]]:
        items = _db(self.pending, partition).iteritems()
        items.seek(prefix)
        found = []
        for key, value in items:
            if not key.startswith(prefix):
                break
            found.append((key, value))
        return found

    # --- expiry ----------------------------------------------------------------

    def expire_due(self, partition: int, stream_time: int, at_most: int) -> Expired:
        """Remove what is due at ``stream_time``; the caller emits the expired connects."""
        db = _db(self.index, partition)
        due: list[bytes] = []
        for kind in expiry.KINDS:
            for index_key in _keys_from(db, kind):
                if len(due) >= at_most or expiry.parse_index_key(index_key)[1] > stream_time:
                    break  # the rest of this kind is due later
                due.append(index_key)
        expired = Expired()
        for index_key in due:
            del self.index[index_key]
            kind, _, reference = expiry.parse_index_key(index_key)
            if kind == expiry.CONNECT_GRACE:
                value = self.pending.get(reference)
                if value is None:
                    continue  # released by its creation
                del self.pending[reference]
                guid, event_time_ms, _, _ = grace.parse_pending_key(reference)
                self._count_waiting(guid, partition, -1)
                expired.connects.append(ExpiredConnect(orjson.loads(value), event_time_ms))
                continue
            stored = self.rows.get(reference)
            if stored is None:
                continue
            terminated = orjson.loads(stored).get("process_terminated_at") is not None
            # A terminated row waits for its retention, not its TTL.
            if kind == expiry.ROW_RETENTION and terminated:
                del self.rows[reference]
                expired.rows_after_termination += 1
            elif kind == expiry.ROW_TTL and not terminated:
                del self.rows[reference]
                expired.rows_after_ttl += 1
        return expired
