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
#: Seconds without a record before the restore gives up (Faust's recovery goes on).
STALL_SECONDS: Final = 60.0
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
    #: Set by the restore: the last offset written (with the batch it ends).
    written: int | None = None
    records: int = 0
    _batch: Any = field(default=None, repr=False)
    _last: int | None = None
    _pending: int = 0

    def add(self, offset: int, key: bytes, value: bytes | None) -> None:
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
            self.write()

    def write(self) -> None:
        """Write what was added, and the offset of the last of it, in one atomic write."""
        if self._batch is None or self._last is None:
            return
        self._batch.put(OFFSET_KEY, str(self._last).encode())
        self.db.write(self._batch)
        self.written, self._batch, self._pending = self._last, None, 0


def restore(
    partitions: list[Partition], properties: dict[str, Any], min_records: int = BULK_MIN_RECORDS
) -> int:
    """Read each partition's changelog past its persisted offset into its database.

    ``properties``: librdkafka's for the worker's cluster
    (:func:`sysmon_faust.stream.output_producer.client_config`). Returns the
    records written: 0 when there are fewer than ``min_records`` to read.
    Blocking: run it in a thread. Raises confluent_kafka.KafkaException on a
    Kafka error, TimeoutError when no record came for :data:`STALL_SECONDS`
    (what was written stays written).
    """
    consumer = Consumer(
        properties
        | {
            # Required by librdkafka; no offsets are committed and no group joined (assign).
            "group.id": f"{properties.get('client.id', 'sysmon-faust')}-bulk-restore",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        todo: dict[tuple[str, int], Partition] = {}
        assignment = []
        to_read = 0
        for part in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(part.topic, part.partition), timeout=10
            )
            start = max(part.persisted + 1 if part.persisted is not None else low, low)
            if high > start:
                todo[(part.topic, part.partition)] = part
                assignment.append(TopicPartition(part.topic, part.partition, start))
                to_read += high - start
        if not todo or to_read < min_records:
            return 0
        consumer.assign(assignment)
        active = dict(todo)
        last_record = time.monotonic()
        while active:
            messages = consumer.consume(CONSUME_BATCH, timeout=1.0)
            if not messages and time.monotonic() - last_record > STALL_SECONDS:
                raise TimeoutError(f"no changelog record for {STALL_SECONDS:.0f} s")
            for message in messages:
                error = message.error()
                where = (message.topic(), message.partition())
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done = active.pop(where, None)
                        if done is not None:
                            done.write()
                        continue
                    raise KafkaException(error)
                key = message.key()
                reading = active.get(where)
                if reading is None or key is None:
                    continue  # a partition done already; a keyless record Faust would not restore
                reading.add(message.offset(), key, message.value())
            if messages:
                last_record = time.monotonic()
        return sum(part.records for part in todo.values())
    finally:
        for part in partitions:
            part.write()
        consumer.close()


async def restore_active(
    app: Any, recovery: Any, tps: set[Any], properties: dict[str, Any]
) -> None:
    """:func:`restore` of Faust's actively recovered changelog partitions, in a thread; Faust's
    offsets (``recovery.active_offsets``, its count of what is left) follow each batch written.

    A failure is logged, not raised: Faust's recovery then reads what is left itself.
    """
    partitions = []
    for tp in sorted(tps):
        store = private.changelog_store(app, tp.topic)
        if store is not None:
            db = store._db_for_partition(tp.partition)
            partitions.append(Partition(tp.topic, tp.partition, db, store.persisted_offset(tp)))
    if not partitions:
        return
    for part in partitions:
        # Faust's offsets (-1: nothing read), so that its count of what is left
        # — the recovery's progress — covers what is read here.
        persisted = -1 if part.persisted is None else part.persisted
        recovery.active_offsets[TP(part.topic, part.partition)] = persisted
    started = time.monotonic()
    recovery_watch.sample(recovery, started)
    loop = asyncio.get_running_loop()
    restoring = loop.run_in_executor(None, restore, partitions, properties)
    while True:
        done, _ = await asyncio.wait({restoring}, timeout=0.5)
        for part in partitions:
            if part.written is not None:
                recovery.active_offsets[TP(part.topic, part.partition)] = part.written
        if done:
            break
    recovery_watch.sample(recovery, time.monotonic())
    try:
        records = restoring.result()
    except Exception as error:  # Faust's recovery reads what is left: slower, not wrong
        log.warning("bulk restore of the changelogs failed, Faust's recovery goes on: %r", error)
        return
    stats.changelog_records_bulk_restored += records
    if records:
        seconds = time.monotonic() - started
        log.info(
            "bulk restore: %s changelog records in %.1f s (%s records/s)",
            f"{records:,}", seconds, f"{records / max(seconds, 1e-9):,.0f}",
        )  # fmt: skip


def install(app: Any, properties: dict[str, Any]) -> None:
    """Restore in bulk before each of Faust's recoveries of active partitions."""

    async def hook(recovery: Any, tps: set[Any]) -> None:
        await restore_active(app, recovery, tps, properties)

    private.before_active_offsets(hook)
