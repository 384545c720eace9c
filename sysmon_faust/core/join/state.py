"""The join's state beyond a lookup: waiting connects, stream time, and what expires.

Three changelog-backed RocksDB tables, all co-partitioned with the re-keying
topic and changed only by the join agent while it handles a record of the
same partition (Faust writes a table in the partition of the current event):

* ``process_table``: the ProcessCreate rows (:mod:`sysmon_faust.core.records`).
* ``pending_table``: the grace buffer, one record per waiting connect, keyed
  so a process's connects are one ordered range (:mod:`sysmon_faust.core.join.grace`);
  and, under a prefix of their own, the joins parked until their ancestry
  is settled (:mod:`sysmon_faust.core.join.parking`).
* ``expiry_index``: deadlines in stream time — of waiting connects, of rows
  of ended processes (retention) and of rows that never ended (TTL) — plus
  the partition's stream time (:mod:`sysmon_faust.core.join.expiry`).

A row deleted (retention, TTL) also takes its process's parent link out of
the process tree: the join sends the tombstone :meth:`JoinState.take_tree_changes`
hands it (:mod:`sysmon_faust.stream.tree_replica`).

Entries of the index are not removed when what they point at goes earlier (a
connect released by its creation, a row deleted by retention before its
TTL): when due, they find nothing or a newer state, and are dropped. That
keeps every change one write, at the price of index entries living until due.

Reads and writes go straight to the partition's RocksDB, and every write
is also sent to the table's changelog — by the join, after each record,
straight to the producer (in the partition's transaction under
exactly_once), keeping the persisted offsets recovery starts from (see
:mod:`sysmon_faust.stream.transactions`): what Faust's ``table[key] = value``
does, without its per-key layers — a lookup through the table API reads
RocksDB twice, a delete of a key Faust has not cached deletes it in every
partition's database. Measured with ``make bench``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from sysmon_faust.core import activity, alert_groups, dns_answers
from sysmon_faust.core.join import expiry, grace, parking
from sysmon_faust.core.join.row_count import RowCount
from sysmon_faust.core.join.semantics import Row
from sysmon_faust.core.join.store import Change, PartitionStore
from sysmon_faust.core.memo import MISSING, Memo

log = logging.getLogger(__name__)

#: Write the partition's stream time to the index when it moved this much.
_KEEP_STREAM_TIME_EVERY_MS = 1_000

#: Rows (and absences) remembered at most, of the partitions being joined
#: (see JoinState.row).
ROW_CACHE_ENTRIES = 4_096


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long things last, in milliseconds of stream time (settings)."""

    grace: grace.GraceLimits
    retention_ms: int
    ttl_ms: int
    #: How long a process's DNS answer names its connects (SYSMON_DNS_ANSWER_TTL).
    dns_ttl_ms: int = 600_000
    #: How long a process's activity summary stays after its last event (SYSMON_ACTIVITY_TTL).
    activity_ttl_ms: int = 86_400_000


@dataclass(frozen=True, slots=True)
class ExpiredConnect:
    """A connect leaving the grace buffer; ``position``: (offset, index) where it was read."""

    connect: Row
    event_time_ms: int
    position: tuple[int, int]


@dataclass
class Expired:
    """What one expiry pass removed."""

    connects: list[ExpiredConnect] = field(default_factory=list)
    #: Alert groups whose window closed: the join emits their updates.
    alert_groups: list[alert_groups.AlertGroup] = field(default_factory=list)
    rows_after_termination: int = 0
    rows_after_ttl: int = 0


class JoinState:
    """The join's state over its three stores (see the module docstring).

    ``row_count``: how the process table's rows are counted (None: a
    :class:`RowCount` of its own sizes; tests give smaller ones).
    """

    def __init__(
        self,
        rows: PartitionStore,
        pending: PartitionStore,
        index: PartitionStore,
        lifetimes: Lifetimes,
        row_count: RowCount | None = None,
    ) -> None:
        self.rows = rows
        self.pending = pending
        self.index = index
        self.lifetimes = lifetimes
        self.clock = expiry.StreamClock()
        self._kept_stream_time: dict[int, int] = {}
        #: Per (partition, kind): the deadline of the last index entry expired.
        self._expired_up_to: dict[tuple[int, bytes], int] = {}
        #: Per (partition, kind): no entry of the kind falls due before this
        #: (ms of stream time; absent: not known, read the index). Kept by
        #: expire_due's scans and lowered by every entry written (_index_put),
        #: so a kind with nothing due costs no RocksDB iterator: expire_due
        #: runs after every record, and opening six iterators (one per kind)
        #: and seeking cost ~1.7 µs each on this machine (python-rocksdb).
        self._next_due: dict[tuple[int, bytes], float] = {}
        #: Rows per partition: counted from the table when first asked for
        #: after an assignment, then kept up to date without a read per new row.
        self._rows_in = row_count or RowCount()
        # Waiting connects per partition and per process: counted from the
        # table when first needed after an assignment, then kept up to date.
        self._waiting: dict[int, int] = {}
        self._waiting_for: dict[str, int] = {}
        #: Waiting connects handed out (released or expired) whose pending
        #: entry, and index entry, are deleted only by settle(): after the
        #: records made of them are in Kafka (see settle).
        self._handed_out: dict[tuple[int, bytes], bytes | None] = {}
        #: Handed out while the current record was handled (since seal()).
        self._unsealed: list[tuple[int, bytes]] = []
        #: Handed out by earlier records, each group with the sends its
        #: deletes wait for (settle_acknowledged).
        self._sealed: list[tuple[list[Any], list[tuple[int, bytes]]]] = []
        #: Tombstones for the process-tree topic (partition, key, None), one
        #: per row deleted: the tree is as bounded as the table
        #: (sysmon_faust.stream.tree_replica). The join sends them.
        self._tree_changes: list[tuple[int, bytes, bytes | None]] = []
        #: The stored row (None: none) of processes read or written lately,
        #: by (partition, key): see row().
        self._row_cache: Memo[tuple[int, bytes], bytes | None] = Memo(ROW_CACHE_ENTRIES)
        #: Per partition, read from the table's keys at its first alert after
        #: an assignment and kept up to date since: the key and closing time
        #: of the latest group of each (rule id, process GUID) — not the
        #: group, which stays on disk (~250 bytes here per open group). A
        #: match finds its group with one get, not an iterator: measured
        #: (make bench, Sigma rows), the iterator per match was most of what
        #: SigmaHQ's 17,000 matches cost the join.
        self._alert_groups: dict[int, dict[tuple[str, str | None], tuple[bytes, int]]] = {}
        #: Activity summaries kept since the last flush_activity(), by (partition, GUID).
        self._activity: dict[tuple[int, str], tuple[activity.Summary, int]] = {}

    def unsent_changes(self) -> list[tuple[PartitionStore, list[Change]]]:
        """The changelog writes to send, per store (the join sends them after each record)."""
        return [(store, store.take_unsent()) for store in (self.rows, self.pending, self.index)]

    def take_tree_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes, self._tree_changes = self._tree_changes, []
        return changes

    def forget(self) -> None:
        """After a rebalance: partitions may have changed hands; count and read again."""
        self.clock = expiry.StreamClock()
        self._kept_stream_time.clear()
        self._expired_up_to.clear()
        self._next_due.clear()
        self._rows_in.forget()
        self._waiting.clear()
        self._waiting_for.clear()
        self._handed_out.clear()
        self._unsealed.clear()
        self._sealed.clear()
        self._alert_groups.clear()
        self._activity.clear()
        self._row_cache.clear()

    # --- stream time ---------------------------------------------------------

    def stream_time(self, partition: int, wall_ms: int, event_time_ms: int | None = None) -> int:
        """The partition's stream time, after ``event_time_ms`` if an event is being handled.

        -1 while the partition has seen no event (nothing can be due then).
        """
        if not self.clock.knows(partition):
            kept = self.index.get(partition, expiry.STREAM_TIME_KEY)
            if kept is not None:
                self.clock.start(partition, expiry.decode_stream_time(kept), wall_ms)
                self._kept_stream_time[partition] = expiry.decode_stream_time(kept)
            elif event_time_ms is None:
                return -1
        if event_time_ms is None:
            return self.clock.now(partition, wall_ms)
        return self.clock.observe(partition, event_time_ms, wall_ms)

    def last_stream_time(self, partition: int) -> int:
        """The partition's stream time as last computed for the event being handled."""
        return self.clock.last(partition)

    def keep_stream_time(self, partition: int, stream_time: int) -> None:
        """Write the stream time to the index, when it moved a second since it was last."""
        if stream_time - self._kept_stream_time.get(partition, -1) >= _KEEP_STREAM_TIME_EVERY_MS:
            self.index.put(
                partition, expiry.STREAM_TIME_KEY, expiry.encode_stream_time(stream_time)
            )
            self._kept_stream_time[partition] = stream_time

    # --- rows ----------------------------------------------------------------

    def row(self, partition: int, key: bytes) -> bytes | None:
        """The process's stored row (JSON bytes), None when the table has none.

        Remembered, present or absent: every event of a process looks its row
        up, and most of a stream's events come from processes created before
        the pipeline saw them (no row) (:mod:`sysmon_faust.core.memo`):
        remembering took the worker from 124.6 to 111.3 µs per event (make
        bench's mix, every type enriched, three rounds alternating, medians).
        Only the join writes the table, each
        partition while it owns it, and every write goes through here
        (put_row, mark_terminated, _delete_row); forget() clears it at a
        rebalance, before recovery may write a partition's table again.
        """
        cached = self._row_cache.get((partition, key))
        if cached is not MISSING:
            return cached  # type: ignore[return-value]
        stored = self.rows.get(partition, key)
        self._row_cache.put((partition, key), stored)
        return stored

    def row_count(self, partition: int, keep: bool = True) -> int:
        """Rows the partition holds: a key scan after an assignment (and when its filter is
        full: :mod:`sysmon_faust.core.join.row_count`), then kept up to date.

        ``keep=False`` while the partition may still be recovering from its
        changelog: those writes do not pass through here.
        """
        if self._rows_in.counted(partition):
            return self._rows_in.rows(partition)
        if not keep:
            return sum(1 for _ in self.rows.keys(partition))
        return self._rows_in.count(partition, lambda: self.rows.keys(partition))

    def put_row(self, partition: int, key: bytes, row: Row, stream_time: int) -> None:
        counting = self._rows_in
        if counting.counted(partition) and not (
            # Read only when the filter cannot tell: a row written again after a
            # crash, or sent twice, is not a new one.
            counting.may_hold(partition, key) and self.row(partition, key) is not None
        ):
            counting.added(partition, key)
        stored = orjson.dumps(row)
        self.rows.put(partition, key, stored)
        self._row_cache.put((partition, key), stored)
        self._index_put(partition, expiry.ROW_TTL, stream_time + self.lifetimes.ttl_ms, key)

    def mark_terminated(
        self, partition: int, key: bytes, terminated_at: str, stream_time: int
    ) -> bool:
        """Mark the row of an ended process; False when the table does not hold it."""
        stored = self.row(partition, key)
        if stored is None:
            return False
        row = orjson.loads(stored)
        row["process_terminated_at"] = terminated_at
        stored = orjson.dumps(row)
        self.rows.put(partition, key, stored)
        self._row_cache.put((partition, key), stored)
        deadline = stream_time + self.lifetimes.retention_ms
        self._index_put(partition, expiry.ROW_RETENTION, deadline, key)
        return True

    # --- the grace buffer ----------------------------------------------------

    def waiting(self) -> int:
        """Connects waiting on this worker (in the partitions counted so far)."""
        return sum(self._waiting.values())

    def _waiting_in(self, partition: int) -> int:
        if partition not in self._waiting:
            # Waiting connects only: parked joins and alert groups sort
            # before them, under prefixes of their own (b"\x01...").
            self._waiting[partition] = sum(
                1 for key in self.pending.keys(partition) if key[:1] != b"\x01"
            )
        return self._waiting[partition]

    def _waiting_for_process(self, guid: str, partition: int) -> int:
        if guid not in self._waiting_for:
            prefix = grace.process_prefix(guid)
            found = 0
            for _ in self.pending.keys_from(partition, prefix):
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
        stream_time: int, guid: str | None = None,
    ) -> bool:  # fmt: skip
        """Let a connect (or another event) wait for its process — or for ``guid``, a Sysmon
        8/10 record for its target — ; False when the buffer is full for it."""
        guid = guid or connect["process_guid"]
        self._waiting_in(partition)  # counted, so that waiting() includes it
        for_process = self._waiting_for_process(guid, partition)
        if not grace.admit(for_process, self.waiting(), self.lifetimes.grace):
            return False
        key = grace.pending_key(guid, event_time_ms, *position)
        if self.pending.get(partition, key) is None:  # else: read twice (a replay)
            self.pending.put(partition, key, orjson.dumps(connect))
            self._count_waiting(guid, partition, +1)
        deadline = stream_time + self.lifetimes.grace.grace_ms
        self._index_put(partition, expiry.CONNECT_GRACE, deadline, key)
        return True

    def release(self, guid: str, partition: int) -> list[ExpiredConnect]:
        """Take the connects waiting for ``guid`` out of the buffer, in event-time order."""
        if not self._waiting_in(partition):
            return []  # the common case, and all there is to it without a grace
        released = []
        for key, value in self.pending.items_from(partition, grace.process_prefix(guid)):
            if (partition, key) in self._handed_out:
                continue  # handed out already, not yet settled
            self._hand_out(partition, key, None)
            self._count_waiting(guid, partition, -1)
            _, event_time_ms, offset, index = grace.parse_pending_key(key)
            released.append(ExpiredConnect(orjson.loads(value), event_time_ms, (offset, index)))
        return released

    def _hand_out(self, partition: int, key: bytes, index_key: bytes | None) -> None:
        self._handed_out[(partition, key)] = index_key
        self._unsealed.append((partition, key))

    def must_settle(self) -> bool:
        """Connects were handed out while the current record was handled."""
        return bool(self._unsealed)

    def settle(self) -> None:
        """Delete the entries of every connect handed out, now (exactly_once: see below).

        The join's writes reach RocksDB (and its changelog) at once, while
        the records they make are acknowledged later. Deleting a waiting
        connect before its enriched (or expired) record is acknowledged
        would lose it to a crash in between: the replayed creation finds
        nothing to release. Under exactly_once the deletes go in the same
        transaction as those records, so they may go now; under
        at_least_once see :meth:`seal`.
        """
        for (partition, pending_key), index_key in self._handed_out.items():
            self._delete_handed_out(partition, pending_key, index_key)
        self._handed_out.clear()
        self._unsealed.clear()
        self._sealed.clear()

    def seal(self, sent: list[Any]) -> None:
        """Under at_least_once: the connects handed out by the current record wait for ``sent``.

        ``sent``: what the sends of every record the current record made
        returned (outputs and changelog writes: librdkafka's deliveries, read
        like asyncio futures). Their entries are deleted by
        :meth:`settle_acknowledged` once all are acknowledged; a crash
        before that replays the record (its offset is not committed before
        they are flushed), which hands them out again — at least once.
        Waiting for them here instead (a producer flush per record) stalled
        the join: measured with ``make bench``, see the README.
        """
        if self._unsealed:
            self._sealed.append((sent, self._unsealed))
            self._unsealed = []

    def settle_acknowledged(self) -> None:
        """Delete the entries of sealed hand-outs whose records Kafka has acknowledged."""
        waiting = []
        for sent, keys in self._sealed:
            if not all(future.done() for future in sent):
                waiting.append((sent, keys))
                continue
            failed = next((f for f in sent if f.cancelled() or f.exception()), None)
            for partition, pending_key in keys:
                if (partition, pending_key) not in self._handed_out:
                    continue  # settled already (handed out again after a replay)
                index_key = self._handed_out.pop((partition, pending_key))
                if failed is None:
                    self._delete_handed_out(partition, pending_key, index_key)
            if failed is not None:
                # Kept: a restart replays what made them, and hands them out again.
                log.warning("a record the join sent was not acknowledged: %r", failed)
        self._sealed = waiting

    def _delete_handed_out(
        self, partition: int, pending_key: bytes, index_key: bytes | None
    ) -> None:
        self.pending.delete(partition, pending_key)
        if index_key is not None:
            self.index.delete(partition, index_key)

    # --- joins parked for their ancestry ----------------------------------------

    def park(self, partition: int, join: parking.ParkedJoin) -> None:
        """Keep a parked join (core.join.parking); a key written twice (a replay) is one."""
        if self.pending.get(partition, join.key) is None:
            self.pending.put(partition, join.key, join.encode())

    def parked(self, partition: int) -> list[tuple[bytes, bytes]]:
        """The partition's parked joins as stored, in key order."""
        return self.pending.items_from(partition, parking.PARKED_PREFIX)

    def unpark(self, partition: int, key: bytes) -> None:
        """A parked join was released: its record goes in :meth:`settle`, after its output's."""
        self._hand_out(partition, key, None)

    # --- alert groups ----------------------------------------------------------

    def open_alert_group(
        self, partition: int, rule_id: str, guid: str, stream_time: int
    ) -> tuple[bytes, alert_groups.AlertGroup] | None:
        """The group of ``rule_id`` on ``guid`` still open at ``stream_time``, with its key."""
        found = self._groups_of(partition).get((rule_id, guid))
        if found is None:
            return None
        key, closes_at_ms = found
        if (partition, key) in self._handed_out or stream_time >= closes_at_ms:
            return None  # closing: its update is on its way, and the next match opens anew
        value = self.pending.get(partition, key)
        if value is None:
            return None
        try:
            return key, alert_groups.AlertGroup.decode(value)
        except ValueError:
            log.error("alert group %r of partition %d unreadable: ignored", key, partition)
            return None

    def _groups_of(self, partition: int) -> dict[tuple[str, str | None], tuple[bytes, int]]:
        groups = self._alert_groups.get(partition)
        if groups is not None:
            return groups
        groups = self._alert_groups[partition] = {}
        # Keys sort by closing time within (rule, process): the latest wins.
        for key in self.pending.keys_from(partition, alert_groups.GROUP_PREFIX):
            if (partition, key) in self._handed_out:
                continue
            try:
                rule_id, guid, closes_at_ms = alert_groups.parse_group_key(key)
            except (ValueError, UnicodeDecodeError):
                log.error("alert group key %r of partition %d unreadable: ignored", key, partition)
                continue
            groups[(rule_id, guid)] = (key, closes_at_ms)
        return groups

    def keep_alert_group(
        self, partition: int, group: alert_groups.AlertGroup, key: bytes | None = None
    ) -> None:
        """Store a group: a new one (``key`` None) also gets its closing in the index."""
        if key is None:
            key = alert_groups.group_key(group)
            self._index_put(partition, expiry.ALERT_GROUP, group.closes_at_ms, key)
        self.pending.put(partition, key, group.encode())
        self._groups_of(partition)[(group.rule_id, group.process_guid)] = (key, group.closes_at_ms)

    # --- DNS answers (sysmon_faust.core.dns_answers) ------------------------------

    def dns_answers_of(self, partition: int, guid: str) -> list[dns_answers.Answer]:
        """The answers a process got, newest first ([] when none, or unreadable: logged)."""
        value = self.pending.get(partition, dns_answers.key(guid))
        if value is None:
            return []
        try:
            return dns_answers.decode(value)[0]
        except ValueError:
            log.error("DNS answers of %s in partition %d unreadable: ignored", guid, partition)
            return []

    def keep_dns_answers(
        self, partition: int, guid: str, answers: list[dns_answers.Answer], stream_time: int
    ) -> None:
        """Store a process's answers; they go a TTL after the last write (stream time)."""
        key = dns_answers.key(guid)
        deadline = stream_time + self.lifetimes.dns_ttl_ms
        self.pending.put(partition, key, dns_answers.encode(answers, deadline))
        self._index_put(partition, expiry.DNS_ANSWERS, deadline, key)

    # --- activity summaries (sysmon_faust.core.activity) -----------------------------

    def activity_of(self, partition: int, guid: str) -> tuple[activity.Summary | None, int]:
        """(a process's summary or None, when it goes: ms of stream time; 0 without one).

        The summary as last kept, written to the table or not yet (:meth:`flush_activity`).
        """
        kept = self._activity.get((partition, guid))
        if kept is not None:
            return kept
        value = self.pending.get(partition, activity.key(guid))
        if value is None:
            return None, 0
        try:
            return activity.decode(value)
        except ValueError:
            log.error("activity of %s in partition %d unreadable: started anew", guid, partition)
            return None, 0

    def keep_activity(
        self, partition: int, guid: str, summary: activity.Summary, until_ms: int,
        stream_time: int,
    ) -> None:  # fmt: skip
        """Store a summary; it goes a TTL (stream time) after its process's last event.

        ``until_ms``: when it went so far (:meth:`activity_of`). A new expiry
        entry is written only when that moves by a tenth of the TTL or more —
        not one per event — so a summary lives 0.9-1 TTL after the last event.
        """
        deadline = stream_time + self.lifetimes.activity_ttl_ms
        if deadline - until_ms >= self.lifetimes.activity_ttl_ms // 10:
            key = activity.key(guid)
            self._index_put(partition, expiry.ACTIVITY, deadline, key)
            until_ms = deadline
        self._activity[(partition, guid)] = (summary, until_ms)

    def flush_activity(self, partitions: Collection[int] | None = None) -> None:
        """Write the summaries kept since the last flush to the table (and so its changelog):
        those of ``partitions``, or all (None).

        Measured (make bench, enrichment rows): a summary written at every
        event — a RocksDB read, write and changelog record of 1-4 KB each —
        cost ~80 µs per enriched event; written once per process per flush it
        costs a few. The worker flushes before each commit: under
        at_least_once all of them (the summaries and the offsets they include
        go together; a crash replays what came after both), under
        exactly_once a partition's in its transaction, before Faust commits it.
        """
        flushed = [kept for kept in self._activity if partitions is None or kept[0] in partitions]
        for partition, guid in flushed:
            summary, until_ms = self._activity.pop((partition, guid))
            self.pending.put(partition, activity.key(guid), activity.encode(summary, until_ms))

    # --- expiry ----------------------------------------------------------------

    def _index_put(self, partition: int, kind: bytes, deadline_ms: int, reference: bytes) -> None:
        """Write an expiry entry (:func:`expiry.index_key`); every one goes through here."""
        self.index.put(partition, expiry.index_key(kind, deadline_ms, reference), b"")
        next_due = self._next_due.get((partition, kind))
        if next_due is not None and deadline_ms < next_due:
            self._next_due[(partition, kind)] = deadline_ms

    def expire_due(self, partition: int, stream_time: int, at_most: int) -> Expired:
        """Remove what is due at ``stream_time``; the caller emits the expired connects."""
        due: list[bytes] = []
        for kind in expiry.KINDS:
            if len(due) >= at_most:
                break
            if self._next_due.get((partition, kind), 0) > stream_time:
                continue
            # Entries are deleted from the front of each kind, and RocksDB
            # keeps what it deleted as tombstones until a compaction: a seek
            # to the start of the kind would step over all of them, every
            # time. Nothing due earlier than the last expiry can be added
            # since (deadlines are stream time + a duration), so the scan
            # starts there.
            start = self._expired_up_to.get((partition, kind), 0)
            # What is found due now is deleted below, or handed out and deleted
            # by settle(): the next scan need not start before the first entry
            # not yet due (or at all, when none is left).
            next_due: float | None = math.inf
            for index_key in self.index.keys(partition, expiry.index_key(kind, start, b"")):
                if not index_key.startswith(kind):
                    break
                if len(due) >= at_most:
                    next_due = None  # more may be due: scan again next time
                    break
                deadline = expiry.parse_index_key(index_key)[1]
                if deadline > stream_time:
                    next_due = deadline  # the rest of this kind is due later
                    break
                due.append(index_key)
                self._expired_up_to[(partition, kind)] = deadline
            if next_due is None:
                self._next_due.pop((partition, kind), None)
            else:
                self._next_due[(partition, kind)] = next_due
        expired = Expired()
        for index_key in due:
            kind, _, reference = expiry.parse_index_key(index_key)
            if kind == expiry.ALERT_GROUP:
                self._close_alert_group(partition, index_key, reference, expired)
                continue
            if kind == expiry.DNS_ANSWERS:
                self._expire_last_written(partition, index_key, reference, dns_answers.decode)
                continue
            if kind == expiry.ACTIVITY:
                self._expire_last_written(partition, index_key, reference, activity.decode)
                continue
            if kind == expiry.CONNECT_GRACE:
                if (partition, reference) in self._handed_out:
                    if self._handed_out[(partition, reference)] is None:
                        # Released by its creation: settle() deletes the rest.
                        self.index.delete(partition, index_key)
                    continue
                value = self.pending.get(partition, reference)
                if value is None:  # released by its creation
                    self.index.delete(partition, index_key)
                    continue
                # Both entries go in settle(), after the expired record is in Kafka.
                self._hand_out(partition, reference, index_key)
                guid, event_time_ms, offset, index = grace.parse_pending_key(reference)
                self._count_waiting(guid, partition, -1)
                expired.connects.append(
                    ExpiredConnect(orjson.loads(value), event_time_ms, (offset, index))
                )
                continue
            self.index.delete(partition, index_key)
            stored = self.row(partition, reference)
            if stored is None:
                continue
            terminated = orjson.loads(stored).get("process_terminated_at") is not None
            # A terminated row waits for its retention, not its TTL.
            if kind == expiry.ROW_RETENTION and terminated:
                self._delete_row(partition, reference)
                expired.rows_after_termination += 1
            elif kind == expiry.ROW_TTL and not terminated:
                self._delete_row(partition, reference)
                expired.rows_after_ttl += 1
        return expired

    def _expire_last_written(
        self, partition: int, index_key: bytes, key: bytes,
        decode: Callable[[bytes], tuple[Any, int]],
    ) -> None:  # fmt: skip
        """An expiry entry of a value that keeps the deadline of its last one (``until_ms``):
        only that last entry deletes it; the earlier ones just go."""
        self.index.delete(partition, index_key)
        deadline_ms = expiry.parse_index_key(index_key)[1]
        if key.startswith(activity.ACTIVITY_PREFIX):
            guid = key[len(activity.ACTIVITY_PREFIX) :].decode()
            kept = self._activity.get((partition, guid))
            if kept is not None:
                if kept[1] > deadline_ms:
                    return  # kept since the last flush, with a later entry of its own
                # Its last entry came due before the flush that would write it
                # (stream time moved by most of the TTL since its process's last
                # event): it goes now, or the flush would store it with no entry
                # left to delete it (tests/unit/core/join/test_engine_enriched.py).
                del self._activity[(partition, guid)]
        value = self.pending.get(partition, key)
        if value is None:
            return
        try:
            until_ms = decode(value)[1]
        except ValueError:
            until_ms = 0  # unreadable: let it go
        if until_ms <= deadline_ms:
            self.pending.delete(partition, key)

    def _close_alert_group(
        self, partition: int, index_key: bytes, key: bytes, expired: Expired
    ) -> None:
        if (partition, key) in self._handed_out:
            return
        value = self.pending.get(partition, key)
        if value is None:
            self.index.delete(partition, index_key)
            return
        # Both entries go in settle(), after the group's update is in Kafka.
        self._hand_out(partition, key, index_key)
        try:
            group = alert_groups.AlertGroup.decode(value)
        except ValueError:
            log.error("alert group %r of partition %d unreadable: dropped", key, partition)
            return
        expired.alert_groups.append(group)
        groups = self._alert_groups.get(partition)
        latest = groups.get((group.rule_id, group.process_guid)) if groups is not None else None
        if groups is not None and latest is not None and latest[0] == key:
            del groups[(group.rule_id, group.process_guid)]

    def _delete_row(self, partition: int, key: bytes) -> None:
        self.rows.delete(partition, key)
        self._row_cache.put((partition, key), None)
        self._tree_changes.append((partition, key, None))
        if self._rows_in.counted(partition):
            self._rows_in.deleted(partition)
