"""Restore the tables' changelogs in bulk, before Faust's own recovery reads them record by record.

Faust's recovery hands every changelog record through its consumer thread,
its conductor, a queue and ``asyncio.wait_for`` to a loop that applies them
in batches: 12,000-12,800 records/s here, a third of that time the event
loop idle between records (py-spy of a wiped worker, 100,000 rows, 401,809
records; docs/operations.md). Kafka Streams restores with a consumer of its
own, in large fetches, into RocksDB write batches (``StateRestoreListener``,
KIP-869); this does the same for the active partitions of each table:

- a librdkafka consumer without a group (``assign``, ``read_committed``, so
  records of aborted transactions are skipped as Faust's recovery skips them)
  reads each partition from Faust's persisted offset + 1 (or the start) to
  its end;
- records go into one RocksDB ``WriteBatch`` per partition, a tombstone as a
  delete, in offset order (last value wins), and every
  :data:`WRITE_EVERY` records the batch is written *with* Faust's persisted
  offset key in it — one atomic write — so a worker killed during the
  restore goes on from the last batch written, as Faust itself would;
- then Faust's recovery runs as always: it starts after the persisted
  offset, finds (next to) nothing left, and reads that in its own way.

It runs in a thread (``run_in_executor``): the worker's event loop keeps
answering ``/health`` and the consumer group meanwhile, and the progress is
Faust's own count (:func:`restore_active` moves Faust's offsets as batches
are written; :mod:`sysmon_faust.core.recovery_progress`). The hook into
Faust's recovery is :func:`sysmon_faust.compat.private.before_active_offsets`
(docs/faust-workarounds.md). Fewer than :data:`BULK_MIN_RECORDS`
records to read are left to Faust.

Tested in tests/integration/test_bulk_restore.py: the restored state equals
the changelog read independently (every key, tombstones applied, last value
wins), and a restore stopped midway goes on from its last batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import rocksdb
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from faust.types import TP

from sysmon_faust.compat import private
from sysmon_faust.core.stats import stats
from sysmon_faust.stream import recovery_watch

log = logging.getLogger(__name__)

#: Records per RocksDB write batch (each with the persisted offset).
WRITE_EVERY: Final = 20_000
#: Fewer records to read (over all the partitions) are left to Faust's recovery:
#: a consumer of its own costs more than they do.
BULK_MIN_RECORDS: Final = 1_000
#: Messages asked of librdkafka per call.
CONSUME_BATCH: Final = 10_000
#: Longest wait of one call, in seconds. librdkafka's ``consume`` returns when it has
#: :data:`CONSUME_BATCH` messages or when this is over, not at a partition's end:
#: at 1 s every restore of a few records (under exactly_once, the transaction
#: markers of each restart) took a second.
CONSUME_WAIT_SECONDS: Final = 0.05
#: Seconds without a record before the restore gives up (Faust's recovery goes on).
STALL_SECONDS: Final = 60.0
#: Share of Faust's ``broker_request_timeout`` (90 s) a restore may take: Faust
#: runs the step the restore is hooked into under that timeout, and a timeout
#: there ends its recovery loop for good (faust.tables.recovery, ``_wait``).
DEADLINE_SHARE: Final = 0.6
#: Faust's key of the persisted offset in each partition's database
#: (faust.stores.rocksdb.Store.offset_key), written as Faust writes it.
OFFSET_KEY: Final = b"__faust\x00offset__"


@dataclass
class Partition:
    """One changelog partition to restore into its RocksDB database."""

    topic: str
    partition: int
    db: Any  # rocksdb.DB of the partition (faust.stores.rocksdb.Store._db_for_partition)
    #: Faust's persisted offset: the last record already in ``db`` (None: nothing).
    persisted: int | None
    #: Read no record at or past this offset: Faust's highwater + 1, where its
    #: recovery will look for the end (None: the partition's end). A persisted
    #: offset past Faust's highwater is a ConsistencyError in its recovery.
    end: int | None = None
    #: Set by the restore: the last offset written (with the batch it ends).
    written: int | None = None
    records: int = 0
    _batch: Any = field(default=None, repr=False)
    _last: int | None = None
    _pending: int = 0

    def add(self, offset: int, key: bytes, value: bytes | None, stop: threading.Event) -> None:
        if self._batch is None:
            self._batch = rocksdb.WriteBatch()
        if value is None:
            self._batch.delete(key)
        else:
            self._batch.put(key, value)
        self._last = offset
        self._pending += 1
        self.records += 1
        if self._pending >= WRITE_EVERY:
            self.write(stop)

    def write(self, stop: threading.Event, through: int | None = None) -> None:
        """Write what was added, and the offset of the last of it, in one atomic write —
        unless ``stop`` is set (the recovery this restore was for is gone: nothing more
        may be written).

        ``through``: everything up to this offset was read — what lies between
        the last record and it (transaction markers, records of aborted
        transactions) is passed too, and the offset written is it. So Faust's
        recovery, which starts after the persisted offset, finds nothing left
        instead of waiting out its two 5 s timeouts on markers under
        exactly_once (issue 21).
        """
        if stop.is_set():
            return
        last = self._last
        if through is not None and (last is None or through > last):
            last = through
        already = self.written if self.written is not None else self.persisted
        if last is None or (self._batch is None and already is not None and last <= already):
            return
        batch = self._batch if self._batch is not None else rocksdb.WriteBatch()
        batch.put(OFFSET_KEY, str(last).encode())
        # No write-ahead log, as every write to the tables (sysmon_faust.stream.store):
        # an offset kept by the log could outlive rows written before it without.
        self.db.write(batch, disable_wal=True)
        self._last = self.written = last
        self._batch, self._pending = None, 0


def restore(
    partitions: list[Partition],
    properties: dict[str, Any],
    min_records: int = BULK_MIN_RECORDS,
    deadline: float = math.inf,
    stop: threading.Event | None = None,
) -> int:
    """Read each partition's changelog past its persisted offset (up to its ``end``) into its
    database.

    ``properties``: librdkafka's for the worker's cluster
    (:func:`sysmon_faust.stream.output_producer.client_config`). Returns the
    records written: 0 when there are fewer than ``min_records`` to read.
    ``deadline`` (``time.monotonic()``): stop there, after writing what was
    read — Faust's recovery reads the rest. ``stop``: set by another thread,
    nothing more is written. Blocking: run it in a thread. Raises
    confluent_kafka.KafkaException on a Kafka error, TimeoutError when no
    record came for :data:`STALL_SECONDS` (what was written stays written).
    """
    stop = stop or threading.Event()
    consumer = Consumer(
        properties
        | {
            # Required by librdkafka; no offsets are committed and no group joined (assign).
            "group.id": f"{properties.get('client.id', 'sysmon-faust')}-bulk-restore",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            # A start offset out of range is an error, not a jump to the end.
            "auto.offset.reset": "error",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            # A partition's end is only reported by a fetch that finds nothing past it,
            # which the broker holds this long (librdkafka's default: 500 ms, every restart).
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        todo: dict[tuple[str, int], Partition] = {}
        assignment = []
        to_read = 0
        for part in partitions:
            if stop.is_set() or time.monotonic() >= deadline:
                return 0
            low, high = consumer.get_watermark_offsets(
                TopicPartition(part.topic, part.partition),
                timeout=max(min(10.0, deadline - time.monotonic()), 0.1),
            )
            if part.end is not None:
                high = min(high, part.end)
            start = max(part.persisted + 1 if part.persisted is not None else low, low)
            if high > start:
                part.end = high
                todo[(part.topic, part.partition)] = part
                assignment.append(TopicPartition(part.topic, part.partition, start))
                to_read += high - start
        if not todo or to_read < min_records:
            return 0
        consumer.assign(assignment)
        active = dict(todo)
        last_record = time.monotonic()
        while active and not stop.is_set() and time.monotonic() < deadline:
            messages = consumer.consume(CONSUME_BATCH, timeout=CONSUME_WAIT_SECONDS)
            if not messages and time.monotonic() - last_record > STALL_SECONDS:
                raise TimeoutError(f"no changelog record for {STALL_SECONDS:.0f} s")
            for message in messages:
                if stop.is_set():
                    break  # told to stop: the rest of this fetch is not written either
                error = message.error()
                topic, partition = message.topic(), message.partition()
                # None: an error of the connection, not of a partition (below).
                where = None if topic is None or partition is None else (topic, partition)
                reading = None if where is None else active.get(where)
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        # Outside a group no fatal error is known to come; if one did, it
                        # would come as _FATAL with fatal() False (input_consumer._stops_worker).
                        fatal = error.fatal() or error.code() == KafkaError._FATAL
                        if topic is None and not fatal:
                            continue  # the connection's (librdkafka retries): not a partition's
                        raise KafkaException(error)
                    end = message.offset()  # the next offset: where the end was reached
                    if reading is not None and where is not None:
                        del active[where]
                        through = (
                            min(end, reading.end or end) - 1 if end is not None and end >= 0
                            else None
                        )  # fmt: skip
                        reading.write(stop, through=through)
                    continue
                if reading is None or where is None:
                    continue  # a partition done already
                offset = message.offset()
                assert offset is not None  # a record's, read from a partition
                if reading.end is not None and offset >= reading.end:
                    # Past Faust's highwater: the rest is its recovery's.
                    del active[where]
                    reading.write(stop, through=reading.end - 1)
                    continue
                key = message.key()
                if key is not None:  # a keyless record Faust would not restore either
                    reading.add(offset, key, message.value(), stop)
            if messages:
                last_record = time.monotonic()
        return sum(part.records for part in todo.values())
    finally:
        for part in partitions:
            part.write(stop)
        consumer.close()


#: One restore at a time per worker: a recovery that starts while an earlier
#: one's thread still writes waits for it.
_one_at_a_time = asyncio.Lock()
#: The restore in progress: its stop event and its thread's future.
_current: tuple[threading.Event, asyncio.Future[int]] | None = None


async def _until_done(restoring: asyncio.Future[int]) -> None:
    """Wait for the thread to end, through cancellations: after this nothing more is
    written by it (a thread cannot be cancelled, only told to stop)."""
    cancelled = False
    while not restoring.done():
        try:
            await asyncio.wait({restoring})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def stop_current() -> None:
    """Stop the restore in progress, if any, and wait for its last write (its partitions are
    being revoked: Faust may close, reopen or write their databases next)."""
    if _current is not None:
        stop, restoring = _current
        stop.set()
        await _until_done(restoring)


async def restore_active(
    app: Any, recovery: Any, tps: set[Any], properties: dict[str, Any],
    min_records: int = BULK_MIN_RECORDS, seconds: float = math.inf,
) -> None:  # fmt: skip
    """:func:`restore` of Faust's actively recovered changelog partitions, in a thread, for at
    most ``seconds`` from the call; Faust's offsets (``recovery.active_offsets``, its
    count of what is left) follow each batch written.

    Never raises but CancelledError: a failure is logged and Faust's recovery
    reads what is left itself. Cancelled (a rebalance, the worker stopping), it
    tells the thread to stop and waits for its write in progress before it
    lets the cancellation through: nothing is written after it returns or
    raises. Partitions being revoked stop it too (:func:`stop_current`).
    """
    global _current
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    restoring: asyncio.Future[int] | None = None
    try:
        async with _one_at_a_time:
            partitions = _partitions(app, recovery, tps, min_records)
            if not partitions:
                return
            started = time.monotonic()
            recovery_watch.sample(recovery, started)
            loop = asyncio.get_running_loop()
            restoring = loop.run_in_executor(
                None, restore, partitions, properties, min_records, deadline, stop
            )
            _current = (stop, restoring)
            try:
                while not restoring.done():
                    await asyncio.wait({restoring}, timeout=0.5)
                    _follow(recovery, partitions)
            finally:
                stop.set()
                await _until_done(restoring)
                _current = None
                _follow(recovery, partitions)
            recovery_watch.sample(recovery, time.monotonic())
            records = restoring.result()
    except asyncio.CancelledError:
        raise
    except Exception as error:  # Faust's recovery reads what is left: slower, not wrong
        log.warning(
            "bulk restore of the changelogs failed, Faust's recovery goes on: %r", error,
            exc_info=True,
        )  # fmt: skip
        return
    stats.changelog_records_bulk_restored += records
    if records:
        seconds_taken = time.monotonic() - started
        log.info(
            "bulk restore: %s changelog records in %.1f s (%s records/s)",
            f"{records:,}", seconds_taken, f"{records / max(seconds_taken, 1e-9):,.0f}",
        )  # fmt: skip


def _follow(recovery: Any, partitions: list[Partition]) -> None:
    """Faust's offsets at what the restore has written (its count of what is left)."""
    for part in partitions:
        if part.written is not None:
            recovery.active_offsets[TP(part.topic, part.partition)] = part.written


def _partitions(app: Any, recovery: Any, tps: set[Any], min_records: int) -> list[Partition]:
    """The partitions worth a restore, each up to Faust's highwater; [] when, by Faust's own
    figures, fewer than ``min_records`` are left (no consumer is made for them)."""
    partitions = []
    left = 0
    for tp in sorted(tps):
        highwater = recovery.active_highwaters.get(tp)
        store = private.changelog_store(app, tp.topic)
        if store is None or highwater is None or highwater < 0:
            continue  # not a raw RocksDB table, or nothing Faust would read
        persisted = store.persisted_offset(tp)
        if persisted is not None and persisted >= highwater:
            continue
        db = store._db_for_partition(tp.partition)
        partitions.append(Partition(tp.topic, tp.partition, db, persisted, end=highwater + 1))
        left += highwater - (persisted if persisted is not None else -1)
    if left < min_records:
        return []
    for part in partitions:
        # Faust's offsets (-1: nothing read), so that its count of what is left
        # — the recovery's progress — covers what is read here.
        persisted = -1 if part.persisted is None else part.persisted
        recovery.active_offsets[TP(part.topic, part.partition)] = persisted
    return partitions


def install(app: Any, properties: dict[str, Any], min_records: int = BULK_MIN_RECORDS) -> None:
    """Restore in bulk before each of Faust's recoveries of active partitions (at least
    ``min_records`` to read: under exactly_once 1, for the transaction markers), for
    at most :data:`DEADLINE_SHARE` of Faust's ``broker_request_timeout``: Faust waits
    that long for the step the restore runs in, then stops its recovery for good."""
    seconds = DEADLINE_SHARE * float(app.conf.broker_request_timeout)

    async def hook(recovery: Any, tps: set[Any]) -> None:
        await restore_active(app, recovery, tps, properties, min_records, seconds)

    private.before_active_offsets(hook)
    app.on_partitions_revoked.connect(_stop_on_revoke)


async def _stop_on_revoke(*_: Any, **__: Any) -> None:
    # Faust's signal, sent before the stores are revoked and assigned anew.
    await stop_current()
