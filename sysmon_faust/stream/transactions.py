"""Where the join's records go, under each processing guarantee (``SYSMON_PROCESSING_GUARANTEE``).

at_least_once (default)
    Every output — joined, unmatched, enriched, alerts, dead letters,
    process-tree links, target-lookup hops — and every changelog write goes
    through librdkafka (:mod:`sysmon_faust.stream.output_producer`), flushed
    before Faust commits the offsets they came from. A crash replays from
    the last commit: nothing lost, some records twice.

exactly_once
    Every record the join makes while it handles a record of re-keying
    partition *p* — outputs, dead letters and the tables' changelog writes — is
    sent in the Kafka transaction of *p*: the producer Faust keeps for *p*
    (transactional id ``<app_id>-<topic group>-<p>``), whose transaction Faust
    commits together with *p*'s input offset. A consumer reading with
    ``isolation_level=read_committed`` sees each record once. Faust alone puts
    only the outputs in the transaction; the changelog goes by its
    non-transactional producer — so here the changelog is sent by the join.

    RocksDB is written at once, before the transaction commits: a worker
    that dies leaves local state a crash may have taken further than what was
    committed. So a worker that did not stop cleanly discards its local state
    at start and rebuilds it from the changelog (read_committed: aborted writes
    are not read), as Kafka Streams does under exactly-once. A clean stop
    leaves a marker file beside the state.

The intake has its own transactional producer (see :mod:`sysmon_faust.stream.intake` and
:mod:`sysmon_faust.stream.transactional_producer`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Any

from faust.types import TP, AppT, TableT

from sysmon_faust.compat import private
from sysmon_faust.stream import faults
from sysmon_faust.stream.output_producer import Delivery, OutputProducer
from sysmon_faust.stream.transactional_producer import FaustTransactionProducer

EXACTLY_ONCE = "exactly_once"
#: Written when a worker stops cleanly; its absence at start means a crash.
CLEAN_STOP_MARKER = "clean-stop"


class Outputs:
    """Sends of the join, in the transaction of the source partition under exactly_once."""

    def __init__(
        self, app: AppT, source_topic: str, exactly_once: bool,
        output_producer: OutputProducer | None = None,
    ) -> None:  # fmt: skip
        """``output_producer``: what sends the outputs under at_least_once (None: Faust's)."""
        self.app = app
        self.source_topic = source_topic
        self.exactly_once = exactly_once
        self.output_producer = None if exactly_once else output_producer
        #: Per changelog partition: its store, and its sends not yet noted, in order.
        self._persisting: dict[TP, tuple[Any, deque[Any]]] = {}

    def transactional_id(self, source_partition: int) -> str | None:
        if not self.exactly_once:
            return None
        # The id Faust's TransactionManager gives the producer of this
        # partition, and commits with the partition's offsets.
        group = self.app.assignor.group_for_topic(self.source_topic)
        return f"{self.app.conf.id}-{group}-{source_partition}"

    @contextlib.asynccontextmanager
    async def whole_record(self, source_partition: int) -> AsyncIterator[None]:
        """Under exactly_once: keep Faust from committing the partition's transaction meanwhile.

        Faust commits each partition's transaction on a timer (with the
        offsets of the records handled). A commit in the middle of a record
        would commit part of what the record makes, and a crash then replays
        the record: the part twice. Faust's commit takes the transaction's
        lock; the join holds it for the whole record and sends past it.
        """
        if not self.exactly_once:
            yield
            return
        transactional_id = self.transactional_id(source_partition)
        async with self._producer()._trn_locks[transactional_id]:
            yield

    def _producer(self) -> Any:
        return self.app.producer  # faust.transport.drivers.aiokafka.Producer

    def _librdkafka(self, source_partition: int) -> OutputProducer | None:
        """The librdkafka producer a record of ``source_partition`` sends by: the outputs'
        under at_least_once, the partition's transaction's under exactly_once (the
        transaction Faust keeps for it, on librdkafka: faust_fixes 12); None: Faust's own."""
        if not self.exactly_once:
            return self.output_producer
        transactional_id = self.transactional_id(source_partition)
        producer = private.transaction_producer(self._producer(), transactional_id)
        return producer.librdkafka if isinstance(producer, FaustTransactionProducer) else None

    def group(self, source_partition: int) -> Delivery | None:
        """A group for several sends of a record of ``source_partition``
        (:meth:`OutputProducer.group
        <sysmon_faust.stream.output_producer.OutputProducer.group>`: close it in a
        ``finally``); None when Faust's own producer sends them, one future each."""
        producer = self._librdkafka(source_partition)
        return None if producer is None else producer.group()

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, source_partition: int,
        timestamp_ms: int | None = None, partition: int | None = None,
        group: Delivery | None = None,
    ) -> Any:  # fmt: skip
        """Send one output record; what it returns is done once Kafka acknowledged it.

        An :class:`~sysmon_faust.stream.output_producer.Delivery` (``group`` when one
        is given, from :meth:`group`), or an asyncio future of aiokafka's.
        ``timestamp_ms``: the record's timestamp, Unix ms (None: now).
        """
        producer = self._librdkafka(source_partition) if group is None else group.producer
        if producer is not None:
            return await producer.send(topic, key, value, partition, timestamp_ms, group)
        return await self._faust_send(topic, key, value, source_partition, timestamp_ms, partition)

    def send_nowait(
        self, topic: str, key: bytes | None, value: bytes | None, source_partition: int,
        timestamp_ms: int | None = None, partition: int | None = None,
        group: Delivery | None = None,
    ) -> Delivery | None:  # fmt: skip
        """:meth:`send` at once, or None: then await :meth:`send`.

        At once while librdkafka's queue has room (the join's path per record,
        :meth:`OutputProducer.send_nowait
        <sysmon_faust.stream.output_producer.OutputProducer.send_nowait>`), under
        exactly_once in the partition's transaction (opened if none is); None
        when the queue is full, or Faust's own producer sends.
        """
        # A group knows its producer: under exactly_once finding the partition's
        # (a transactional id made, two lookups) took ~2 % of the event loop
        # when done per send (py-spy, docs/benchmark.md).
        producer = self._librdkafka(source_partition) if group is None else group.producer
        if producer is None:
            return None
        try:
            return producer.send_nowait(topic, key, value, partition, timestamp_ms, group)
        except BufferError:
            return None

    async def flush(self) -> None:
        """Wait for every output and changelog write sent so far to be acknowledged (or failed).

        Faust flushes its own producer before each commit; this flushes the
        outputs' producer, which under at_least_once sends both.
        """
        if self.output_producer is not None:
            await self.output_producer.flush()

    async def _faust_send(
        self, topic: str, key: bytes | None, value: bytes | None, source_partition: int,
        timestamp_ms: int | None = None, partition: int | None = None,
    ) -> Awaitable[Any]:  # fmt: skip
        if not self.exactly_once:
            timestamp = None if timestamp_ms is None else timestamp_ms / 1000  # Faust's: seconds
            return await self.app.producer.send(
                topic, key, value, partition=partition, timestamp=timestamp, headers=None
            )
        # The partition's transactional producer, straight (whole_record holds its lock).
        transactional_id = self.transactional_id(source_partition)
        producer = private.transaction_producer(self._producer(), transactional_id)
        sent: Awaitable[Any] = await producer.send(
            topic, value, key=key, partition=partition, timestamp_ms=timestamp_ms
        )
        return sent

    async def send_changelog(
        self, table: TableT, changes: Iterable[tuple[int, bytes, bytes | None]]
    ) -> list[Any]:
        """Send a table's changes (partition, key, value or None); what the sends return: one
        :class:`Delivery <sysmon_faust.stream.output_producer.Delivery>` per changelog
        partition when librdkafka sends them (a group: its offset is the partition's last
        write of the call), a future of aiokafka's per write when Faust's own producer does.

        Under at_least_once through the outputs' producer (librdkafka), under
        exactly_once in their partitions' transactions. Not awaited:
        where recovery of each partition starts after a clean restart (Faust's
        persisted offset) is moved on once its sends are acknowledged
        (:meth:`note_persisted`); after a crash under exactly_once the state
        is rebuilt from the beginning anyway.
        """
        topic = table.changelog_topic.get_topic_name()
        store: Any = table.data  # faust.stores.rocksdb.Store
        futures: list[Any] = []
        groups: dict[int, Delivery | None] = {}
        try:
            for partition, key, value in changes:
                group = groups.get(partition)
                if group is None and partition not in groups:
                    group = groups[partition] = self.group(partition)
                    if group is not None:
                        futures.append(group)
                        self._persisting_on(TP(topic, partition), store).append(group)
                # Its result's offset is what recovery starts after (note_persisted).
                sent = self.send_nowait(topic, key, value, partition, partition=partition,
                                        group=group)  # fmt: skip
                if sent is None:
                    sent = await self.send(topic, key, value, partition, partition=partition,
                                           group=group)  # fmt: skip
                if group is None:
                    futures.append(sent)
                    self._persisting_on(TP(topic, partition), store).append(sent)
        finally:
            for opened in groups.values():
                if opened is not None:
                    opened.close()
        return futures

    def _persisting_on(self, tp: TP, store: Any) -> deque[Any]:
        persisting = self._persisting.get(tp)
        if persisting is None:
            persisting = self._persisting[tp] = (store, deque())
        return persisting[1]

    def note_persisted(self) -> None:
        """Move each changelog partition's persisted offset past its acknowledged sends.

        One RocksDB write per partition and call, for the last of the sends
        acknowledged in a row from the oldest (a later one may be
        acknowledged before an earlier is retried). Never past a send that
        failed: it stays first, and the worker stops for it
        (:meth:`Faults.watch_send <sysmon_faust.stream.faults.Faults.watch_send>`)
        — a restart then reads the changelog from before it. Never to an
        offset a report lacks (librdkafka's -1001); never backwards, as each
        partition's sends are acknowledged in the order sent (an idempotent
        producer, KIP-98). Not at all once a fault stops the worker: that
        write could block the event loop on a full disk
        (:func:`~sysmon_faust.stream.faults.hold_if_stopping`), and an offset
        left behind only makes a restart read more of the changelog.
        """
        if faults.faults.stopping:
            return
        for tp, (store, sends) in self._persisting.items():
            offset = -1
            while sends and sends[0].done():
                first = sends[0]
                if first.cancelled() or first.exception() is not None:
                    break
                offset = max(offset, first.result().offset)
                sends.popleft()
            if offset >= 0:
                store.set_persisted_offset(tp, offset)


def discard_state_after_crash(data_dir: Path, state_dir: Path) -> bool:
    """At start, under exactly_once: drop local state unless the last stop was clean.

    Returns True when state was discarded. The marker is removed either way:
    from now on the state may run ahead of the committed transactions again.
    """
    marker = data_dir / CLEAN_STOP_MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if clean or not state_dir.exists():
        return False
    shutil.rmtree(state_dir)
    return True


def mark_clean_stop(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CLEAN_STOP_MARKER).write_text("the state matches the committed transactions\n")
