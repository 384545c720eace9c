"""Intake: the input topic → normalized Sysmon 1/3/5, re-keyed by process_guid, in batches.

Why not a Faust agent: Faust's stream machinery costs about 200 µs of CPU per
record, and 92-95 % of what Winlogbeat sends is not Sysmon 1/3/5 — it only has
to be read, counted and dropped. A plain consume→transform→produce loop
(librdkafka reads, :mod:`sysmon_faust.stream.input_consumer`, and writes,
:mod:`sysmon_faust.stream.output_producer`) reads batches of
raw bytes, normalizes them (pure functions), writes each Sysmon 1/3 keyed to
its output topic, and hands them to the join as one
record per re-keying partition and batch (:mod:`sysmon_faust.core.rekey`); only
those travel through Faust (the join agent and its table). Measured with
``make bench``, see the README.

Guarantees:

* at-least-once — a batch's input offsets are committed only after every
  record it produced (keyed records, dead letters) is acknowledged by Kafka,
  and after the batch before's; on a backlog that wait runs while the next
  batch is read (``Intake._settle_later``); a crash replays what is not
  committed;
* exactly-once (``SYSMON_PROCESSING_GUARANTEE=exactly_once``) — a batch's
  records and its input offsets are one Kafka transaction
  (:mod:`sysmon_faust.stream.transactional_producer`), by a producer whose
  transactional id is the worker's (``<app_id>-intake-<web port>``, stable
  across restarts, as the state directory is): a restarted worker fences its
  dead predecessor and aborts what it left open, and the offsets carry the
  intake group's generation (KIP-447), so a worker that lost the partitions
  in a rebalance cannot commit them. The join reads committed records only;
* order — each input partition's records are handled in offset order (the
  partitions of a batch merged by event time), and the producer is
  idempotent (no reordering on retry), so the events of one process that
  share an input partition leave in the order they came in, to one partition
  of the re-keying topic (within a batch record, and batch after batch);
* scale-out — the intake consumer group (``<app_id>-intake``) spreads the
  input partitions over the workers; on a rebalance the batch in flight is
  finished and committed before the partitions are given up (under
  at_least_once inside librdkafka's ``on_revoke``, ``Intake._settle_now``);
* in step — Sysmon 1/3/5 of the input partitions are handled merged by
  event time, as Kafka Streams does (:mod:`sysmon_faust.core.alignment`), so a
  backlog reaches the join in event-time order and stream time does not run
  ahead of a partition that is read later;
* ancestry — each ProcessCreate's parent link goes to the process-tree topic
  (and this worker's copy of it) before the events read after it, and how far
  each input partition has been written goes after them
  (:mod:`sysmon_faust.stream.tree_replica`);
* nothing disappears — every record is counted as filtered, produced, or
  dead-lettered; an error of a record dead-letters it and the loop goes
  on; a fault of the machine or the cluster stops the worker with the batch
  uncommitted (:mod:`sysmon_faust.stream.faults`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaClient
from confluent_kafka import Message, TopicPartition
from mode import Service

from sysmon_faust.compat import private
from sysmon_faust.core import ancestry, deadletter
from sysmon_faust.core.alignment import InStep
from sysmon_faust.core.clock import record_timestamp_ms
from sysmon_faust.core.intake_read import read_records
from sysmon_faust.core.normalize import (
    NETWORK_CONNECT,
    PROCESS_CREATE,
    NormalizedEvent,
)
from sysmon_faust.core.rekey import BatchBuilder, event_record, key_partition
from sysmon_faust.core.stats import stats
from sysmon_faust.stream import detections, faults, input_consumer, output_producer, transactions
from sysmon_faust.stream.input_consumer import InputConsumer, position
from sysmon_faust.stream.output_producer import Delivery, OutputProducer
from sysmon_faust.stream.topology import MAX_RECORD_BYTES, app, settings
from sysmon_faust.stream.topology import tree_replica as tree_copy
from sysmon_faust.stream.transactional_producer import TransactionalProducer

log = logging.getLogger(__name__)

#: Records the intake takes from librdkafka at most per batch (it takes what is
#: queued: with ~1.1 KiB events the consumer's 16 MiB fetched ahead, ~15,000 by
#: arithmetic, binds first; input_consumer.py). Measured when each batch still
#: ended waiting for its acknowledgements and its commit (before _settle_later):
#: at 5,000 a worker enriching only 1, 3, 5 made 60,696 / 37,950 / 50,607
#: events/s, at 20,000 63,875 / 42,531 / 64,761 (faster in 3 of 3 pairs;
#: 300,000 events of make bench's mix, three rounds alternating); every type
#: 22,393 / 16,266 / 19,484 against 20,528 / 21,866 / 20,527 (2 of 3;
#: docs/benchmark.md, "How it got there").
BATCH_RECORDS = 20_000
#: ms the intake's producer waits to fill a request: the next batch waits for a
#: batch's acknowledgements before it commits, so under at_least_once a
#: longer linger would delay that (under exactly_once the batch's
#: commit sends what lingers at once: TransactionalProducer).
INTAKE_LINGER_MS = 5
#: Sysmon 1/3/5 events an input partition may have waiting for the others
#: (sysmon_faust.core.alignment) before it is paused.
BUFFERED_AT_MOST = 5_000
#: A watermark is written again when it moved this much.
WATERMARK_EVERY_MS = 1_000
#: Seconds a stopping worker gives the batch in flight before it cancels it
#: (and closes the input consumer after either).
STOP_WAIT_SECONDS = 10.0
#: The intake lets the join run at least this often (seconds of CPU) within
#: a batch, which is ~100 ms of CPU at 5,000 records of every type.
YIELD_EVERY_SECONDS = 0.002
#: Seconds a revocation waits, blocking the loop, for the acknowledgements of the
#: batch in flight (Intake._settle_now); past them the batch is not committed and
#: the partitions' next owner reads it again. Well within a third of the
#: smallest SYSMON_SESSION_TIMEOUT (6 s): a blocked loop sends none of the
#: join's heartbeats. Acknowledgements take ~10 ms on a healthy cluster
#: (instrumented, 2026-12-05); the commit after them is sent without waiting
#: (InputConsumer.commit_in_callback: librdkafka holds the partitions until its answer).
REVOCATION_SETTLE_SECONDS = 1.0
#: Under at_least_once, while the input partitions hold this many records or
#: more not read yet (a backlog), a batch is acknowledged and committed while
#: the next is read (Intake._settle_later); otherwise it is waited for first,
#: as every batch was before. Input read as it comes makes small batches, and
#: the wait lets the next one grow: overlapped, a worker fed 12,000 events/s
#: (every type enriched) read ~73 batches/s of ~30 records (the code before
#: fewer than 67/s of ~42), its loop gave the intake 47.5 % instead of
#: 41.5 % and the join fell behind (latency p50
#: 2.7-5.9 s against 0.1-0.5 s; py-spy, make bench's latency run,
#: 2026-12-05). Deciding by the batch's size instead (2,000 records) lost most
#: of the gain on a backlog, whose batches are what librdkafka fetched
#: meanwhile, often fewer.
OVERLAP_FROM_LAG = 2_000
#: Records read between two looks at whether the join is to run (a few hundred
#: microseconds of the loop's CPU: ~1-2 µs a record filtered, more kept).
READ_SLICE = 256


@dataclass
class IntakeState:
    """What /health and /stats report of the intake of this worker."""

    joined_group: bool = False
    input_partitions: list[int] = field(default_factory=list)
    #: Assignments of input partitions the intake's group gave it.
    rebalances: int = 0
    #: Records not yet read, per input partition, as of the last batch.
    lag: dict[int, int] = field(default_factory=dict)
    #: Per input partition: wall-clock ms the others were held back waiting
    #: for it (sysmon_faust.core.alignment.InStep.held_ms).
    alignment_held_ms: dict[int, int] = field(default_factory=dict)
    #: Per input partition: the offset committed last, and the end offset on
    #: the broker as of the last batch (sysmon_faust.stream.stall).
    committed: dict[int, int] = field(default_factory=dict)
    highwater: dict[int, int] = field(default_factory=dict)
    #: The consume loop runs (False once it has ended: /health).
    consuming: bool = False
    #: The intake's aiokafka client, which /health's cluster probe uses.
    client: Any = None


state = IntakeState()


@app.service
class Intake(Service):
    """Runs inside every worker; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next_yield = 0.0
        self.consumer: InputConsumer | None = None
        self._consuming: asyncio.Task[Any] | None = None
        #: What the intake writes with, librdkafka in its own threads: under
        #: at_least_once a producer whose batch is flushed before its offsets are
        #: committed; under exactly_once one transaction per batch. aiokafka wrote
        #: under at_least_once until 2026-12-02, building, compressing and writing
        #: on the event loop the join shares (~12 % of the worker's samples,
        #: py-spy, only 1, 3, 5 enriched): moving it took 116.8 -> 111.5 µs per
        #: event with every type enriched, 32.2 -> 30.3 with only 1, 3, 5
        #: (medians of four rounds alternating, 300 k events; docs/benchmark.md).
        self.producer: OutputProducer | None = None
        self.transactional: TransactionalProducer | None = None
        self._probe_client: AIOKafkaClient | None = None
        #: Sysmon 1/3/5 read but not handled yet, released in event-time order
        #: across the input partitions (sysmon_faust.core.alignment).
        self.in_step: InStep[tuple[Message, NormalizedEvent]] = InStep()
        state.alignment_held_ms = self.in_step.held_ms
        #: Per input partition: the offset after the last record read.
        self.read_up_to: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self.exactly_once = settings.processing_guarantee == transactions.EXACTLY_ONCE
        #: Event time of the latest event released (the intake's stream time),
        #: and the watermark last written per input partition.
        self._released_ms = -1
        self._watermarks: dict[int, int] = {}
        self._told_detail = False
        #: Where Sysmon 1 and 3 are published besides the join (_route).
        self._derived_topics = {
            PROCESS_CREATE: settings.topic_process_create,
            NETWORK_CONNECT: settings.topic_network_connect,
        }
        #: Faust's producer buffer: records not sent yet (_make_way_for_the_join).
        self._pending: asyncio.Queue[Any] | None = None
        #: Every record the batch in hand sent (keyed records, tree links, dead
        #: letters): all are checked before its offsets are committed, also those
        #: of a record that failed after its first write.
        self._sent: list[Delivery] = []
        #: Under at_least_once: the batch before, waiting for its acknowledgements
        #: and its commit while this one is read (_settle), and that wait.
        self._unsettled: _Unsettled | None = None
        self._settling: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        config = output_producer.config(settings, f"{settings.app_id}-intake", MAX_RECORD_BYTES) | {
            "linger.ms": INTAKE_LINGER_MS
        }
        if self.exactly_once:
            self.transactional = TransactionalProducer(
                config | {"transactional.id": f"{settings.app_id}-intake-{app.conf.web_port}"}
            )
            await self.transactional.start()
        else:
            self.producer = OutputProducer(config)
        self._probe_client = AIOKafkaClient(
            bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
        )
        await self._probe_client.bootstrap()
        state.client = self._probe_client
        properties = input_consumer.config(
            output_producer.client_config(settings, f"{settings.app_id}-intake"),
            settings.intake_group,
            settings.session_timeout,
            read_committed=self.exactly_once,
            instance_id=settings.group_instance_id,
        )
        self.consumer = InputConsumer(
            properties, settings.topic_input, self._assigned, self._revoked
        )

    def _assigned(self, partitions: list[int]) -> None:
        self.in_step.track(partitions)
        state.input_partitions = sorted(partitions)
        state.joined_group = True
        state.rebalances += 1
        log.info("intake: input partitions %s", state.input_partitions or "none")

    def _revoked(self, partitions: list[int]) -> None:
        # Called between batches (InputConsumer.batch): the batch before is
        # produced; it is committed here if its wait has not committed it yet,
        # and the partitions' next owner starts right after it. Events
        # buffered but not handled are not committed either: the next owner
        # reads them again.
        self._settle_now()
        for partition in partitions:
            self.in_step.drop(partition)
            self.read_up_to.pop(partition, None)
            self._committed.pop(partition, None)
            state.lag.pop(partition, None)
            state.highwater.pop(partition, None)
            state.committed.pop(partition, None)

    async def on_stop(self) -> None:
        # Faust's services run on_stop before they cancel their tasks: the
        # consume loop (which sees should_stop) ends its batch first, so that
        # nothing uses the consumer while it closes (input_consumer.py).
        if self._consuming is not None and not self._consuming.done():
            _done, running = await asyncio.wait([self._consuming], timeout=STOP_WAIT_SECONDS)
            for task in running:
                task.cancel()
                await asyncio.wait([task])
                self._abandon_settling()  # cut short: its batch is read again
        if self.consumer is not None:
            await self.consumer.close()
        if self.producer is not None:
            # The loop waited for its last batch's records; any left are of a batch
            # not committed, which the next owner reads again (at-least-once).
            self.producer.close()
        if self.transactional is not None:
            await self.transactional.abort()
        if self._probe_client is not None:
            await self._probe_client.close()

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        self._consuming = asyncio.current_task()
        state.consuming = True
        try:
            await self._consume_until_stopped()
        finally:
            state.consuming = False

    async def _consume_until_stopped(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            try:
                batch = await self.consumer.batch(BATCH_RECORDS)
                if not batch and not self.read_up_to:
                    # No partitions (all revoked): the batch before is still
                    # waited for, and what it raises stops the worker.
                    await self._settled()
                    continue
                await faults.hold_if_stopping()  # the process-tree copy is RocksDB
                await self._process(batch)
            except faults.OWN_FAULTS as exc:
                # Nothing of the batch is committed: its records come again.
                where = f"{settings.topic_input}{state.input_partitions}"
                self._abandon_settling()
                await faults.stop_worker("intake", where, exc, log)
        try:
            await self._settled()  # the last batch's offsets, before the consumer closes
        except faults.OWN_FAULTS as exc:
            log.warning("intake: the last batch is not committed (%s): its records come again", exc)

    async def _process(self, batch: list[Message]) -> None:
        assert self.consumer is not None
        self._sent.clear()
        wall_ms = int(time.time() * 1000)
        read: dict[int, int] = {}
        # The records are read a slice at a time (sysmon_faust.core.intake_read,
        # compiled), and the join may run between two slices; only what must
        # wait is awaited (a dead letter). With a coroutine to read and one to
        # route each record a worker spent 49.2 µs per input event, without them
        # 47.6 (every type enriched; docs/benchmark.md).
        for start in range(0, len(batch), READ_SLICE):
            if self._join_waits():
                await self._make_way_for_the_join()
            found = read_records(batch, start, min(start + READ_SLICE, len(batch)),
                                 detections.OTHER_EVENT_IDS, detections.wanted)  # fmt: skip
            read.update(found.read_up_to)
            if found.detail is not None and not self._told_detail:
                # Once: a shipper whose shape we do not know would otherwise
                # look like a quiet one (every record filtered, counted).
                self._told_detail = True
                message, detail = found.detail
                log.warning("intake: record %s[%s]@%s filtered: %s (see docs/shapes.md)",
                            *_where(message), detail)  # fmt: skip
            for message, error in found.invalid:
                await self._dead_letter(message, error)
            for message, exc in found.failed:
                await self._record_failed(message, exc)
            for message, outcome, partition in found.events:
                self.in_step.add(partition, outcome.timestamp_ms, (message, outcome), wall_ms)
        for partition, up_to in read.items():
            self.read_up_to[partition] = up_to
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                state.lag[partition] = max(highwater - up_to, 0)
                state.highwater[partition] = highwater

        rekeyed = BatchBuilder()
        for message, outcome in self.in_step.release(self._has_more, wall_ms):
            self._released_ms = max(self._released_ms, outcome.timestamp_ms)
            if self._join_waits():
                await self._make_way_for_the_join()
            try:
                derived = self._route(message, outcome, rekeyed)
                if derived is not None:
                    await self._publish(derived, outcome)
            except Exception as exc:
                await self._record_failed(message, exc)
        for partition, value in rekeyed.finish():
            await self._send(settings.topic_by_guid, value, partition=partition)
        await self._write_watermarks(wall_ms)
        # Everything produced is in Kafka before the offsets are, and no offset
        # passes an event still waiting in the buffer.
        offsets = {p: self._committable(p) for p in self.read_up_to}
        if self.transactional is not None:
            await self._commit_transaction(offsets)
        else:
            await self._settle_later(offsets)
            if sum(state.lag.get(p, 0) for p in self.read_up_to) < OVERLAP_FROM_LAG:
                await self._settled()
        state.committed = dict(self._committed)
        self._bound_buffers()

    async def _send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:  # fmt: skip
        """Queue one record of the batch; its :class:`~sysmon_faust.stream.output_producer.Delivery`
        is kept with the batch's, checked before the batch is committed (:meth:`_settle`)."""
        if self.transactional is not None:
            delivery = await self.transactional.send(topic, key, value, partition, timestamp_ms)
        else:
            assert self.producer is not None
            delivery = await self.producer.send(topic, key, value, partition, timestamp_ms)
        self._sent.append(delivery)

    async def _settle_later(self, offsets: dict[int, int]) -> None:
        """Under at_least_once: wait for the batch before to be settled (:meth:`_settled`), and
        leave this one's acknowledgements and commit to a task while the next batch is read
        (on a backlog: ``OVERLAP_FROM_LAG``; else the caller waits for it at once).

        Why: waiting for them at the end of each batch left the intake idle
        for the broker's acknowledgements and the coordinator's answer, 1.27 s
        of a 4.5 s run of a worker enriching only 1, 3, 5 (docs/benchmark.md).
        Offsets still go in order and only once their batch's records are
        acknowledged: a batch's wait starts once the one before has committed,
        and a revocation in between commits it first (:meth:`_settle_now`).
        """
        assert self.producer is not None
        unsettled = _Unsettled(self._sent, offsets)
        self._sent = []
        acknowledged = self.producer.flush()  # the records sent so far: this batch's
        try:
            await self._settled()
        except BaseException:
            acknowledged.close()  # a coroutine never awaited
            raise
        self._unsettled = unsettled
        self._settling = asyncio.ensure_future(self._settle(unsettled, acknowledged))

    async def _settled(self) -> None:
        """Wait for the batch before to be acknowledged and committed; raises what its wait raised
        (a refused record, a commit refused for good: own faults)."""
        settling, self._settling = self._settling, None
        if settling is not None:
            try:
                await settling
            finally:
                self._unsettled = None
        state.committed = dict(self._committed)

    async def _settle(self, unsettled: _Unsettled, acknowledged: Awaitable[None]) -> None:
        # Raises the first refusal (confluent_kafka.KafkaException: an own
        # fault, nothing of the batch is committed).
        assert self.consumer is not None
        await acknowledged
        for delivery in unsettled.sent:
            if (error := delivery.exception()) is not None:
                raise error
            if not delivery.done():
                return  # the producer was closed (a stop): not committed
        offsets = unsettled.offsets
        if unsettled.at_revocation or offsets == self._committed:
            return
        # Checked again in the commit's thread, right before it commits: had a
        # revocation committed these offsets meanwhile, once the group moved on
        # they would take another owner's backwards. (None can come in between
        # now: batch() waits while a commit's thread is inside the consumer.)
        wanted = await self.consumer.commit(offsets, lambda: not unsettled.at_revocation)
        if wanted and not unsettled.at_revocation:
            self._committed = offsets

    def _settle_now(self) -> None:
        """Inside librdkafka's on_revoke: the batch whose wait is not over is acknowledged and
        committed before its partitions go, blocking the loop up to ``REVOCATION_SETTLE_SECONDS``
        for the acknowledgements (a rebalance, not every batch); its commit is sent, and
        librdkafka gives the partitions up once it is answered
        (``InputConsumer.commit_in_callback``).

        Not committed when a record is refused or not acknowledged in time:
        its wait raises the refusal at the next batch, and the partitions'
        next owner reads the batch again (at-least-once).
        """
        unsettled, settling = self._unsettled, self._settling
        if unsettled is None or settling is None:
            return
        if settling.done() and (settling.cancelled() or settling.exception() is not None):
            return  # a refusal: _settled raises it
        # Done without error: committed, or its commit was not taken then
        # (coordinator busy): committed here if not.
        assert self.producer is not None and self.consumer is not None
        # Its wait commits nothing after this: a commit of these offsets once
        # the partitions came back and moved on would take them backwards.
        unsettled.at_revocation = True
        if not self.producer.flush_blocking(REVOCATION_SETTLE_SECONDS):
            log.warning("intake: the batch in flight is not acknowledged within %s s of a "
                        "revocation: not committed, its records come again",
                        REVOCATION_SETTLE_SECONDS)  # fmt: skip
            return
        if any(not d.done() or d.exception() is not None for d in unsettled.sent):
            return
        # Sent, and answered before the partitions go; _revoked drops them
        # from _committed right after, so a refusal leaves nothing behind.
        if unsettled.offsets != self._committed and self.consumer.commit_in_callback(
            unsettled.offsets
        ):
            self._committed = unsettled.offsets

    def _abandon_settling(self) -> None:
        # A fault stops the worker: the batch before is not waited for, and
        # its task's error (if any) is the same fault's or one after it.
        settling, self._settling = self._settling, None
        self._unsettled = None
        if settling is not None:
            settling.cancel()
            settling.add_done_callback(_retrieved)

    async def _commit_transaction(self, offsets: dict[int, int]) -> None:
        # The batch's records and, when they moved, its input offsets, in one
        # transaction: commit() waits for every record first and raises if
        # one failed.
        assert self.transactional is not None and self.consumer is not None
        moved = offsets != self._committed
        await self.transactional.commit(
            [TopicPartition(settings.topic_input, p, o) for p, o in offsets.items()]
            if moved
            else None,
            self.consumer.group_metadata(),
        )
        self._committed = offsets

    async def _write_watermarks(self, wall_ms: int) -> None:
        """How far each input partition's links are written: after them, in every tree partition."""
        for input_partition in self.read_up_to:
            watermark = self._watermark(input_partition, wall_ms)
            last = self._watermarks.get(input_partition)
            if last is not None and abs(watermark - last) < WATERMARK_EVERY_MS:
                continue
            self._watermarks[input_partition] = watermark
            key = ancestry.watermark_key(input_partition)
            value = ancestry.encode_watermark(watermark)
            for partition in range(settings.partitions):
                await self._send(settings.topic_process_tree, value, key=key, partition=partition)

    def _watermark(self, partition: int, wall_ms: int) -> int:
        if not self.in_step.buffered(partition) and not self._has_more(partition):
            # Read to its end: what comes next is logged from now on (a Sysmon
            # event is logged when it happens, on the host's clock).
            return max(self._released_ms, wall_ms)
        # Events are released in event-time order across the partitions: what
        # is still to come of this one is not earlier than what was released.
        return self._released_ms

    def _has_more(self, partition: int) -> bool:
        lag = state.lag.get(partition)
        return lag is None or lag > 0

    def _committable(self, partition: int) -> int:
        waiting = self.in_step.first(partition)
        return position(waiting[0])[1] if waiting is not None else self.read_up_to[partition]

    def _bound_buffers(self) -> None:
        # A partition far ahead of the others fills its buffer: it is paused
        # (as Kafka Streams does) until the others catch up. librdkafka drops
        # what it had fetched of it and fetches it again on resume.
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        full = {p for p in assigned if self.in_step.buffered(p) >= BUFFERED_AT_MOST}
        paused = self.consumer.paused()
        if to_pause := full - paused:
            self.consumer.pause(to_pause)
        if to_resume := (paused & assigned) - full:
            self.consumer.resume(to_resume)

    def _join_waits(self) -> bool:
        # The intake shares the event loop with the join agent. Faust's
        # producer sends through a buffer one record per loop iteration (and
        # stops the agent when 100 are waiting); the join's changelog writes
        # went that way once, and an intake that only yielded between batches
        # left the join ~90 rows/s. So it yields every few milliseconds, and
        # lets that buffer (ticks, Faust's own records) drain first.
        pending = self._pending
        if pending is None:
            pending = self._pending = private.producer_buffer(app)
        return bool(pending.qsize()) or time.perf_counter() >= self._next_yield

    async def _make_way_for_the_join(self) -> None:
        """Yield to the loop until Faust's producer buffer is empty; only after
        :meth:`_join_waits` said so (it finds the buffer)."""
        pending = self._pending
        assert pending is not None
        while True:
            await asyncio.sleep(0)
            if not pending.qsize():
                break
        self._next_yield = time.perf_counter() + YIELD_EVERY_SECONDS

    def _route(
        self, message: Message, outcome: NormalizedEvent, rekeyed: BatchBuilder
    ) -> tuple[str, bytes | None, int] | None:
        """Add the event to its re-keying batch. Sysmon 1 and 3 are also published, as in
        the recipe: (their derived topic, key, re-keying partition) for :meth:`_publish`;
        None for the others (Sysmon 5 only goes to the join: it ends a table row)."""
        stats.normalized += 1
        stats.normalized_by_shape[outcome.shape] += 1
        key = outcome.process_guid.encode() if outcome.process_guid else None
        # A connect without a process identity joins nothing: any partition will do.
        partition = (
            key_partition(key, settings.partitions)
            if key is not None
            else position(message)[0] % settings.partitions
        )
        # The fields are exactly those of the models.ProcessCreate / NetworkConnect
        # records (a unit test holds them together); serialized directly. The
        # EventData is for the rules; it is not in the derived topics.
        record = event_record(outcome, message.timestamp()[1] / 1000)
        rekeyed.add(partition, orjson.dumps(record))
        derived = self._derived_topics.get(outcome.event_id)
        return None if derived is None else (derived, key, partition)

    async def _publish(
        self, derived: tuple[str, bytes | None, int], outcome: NormalizedEvent
    ) -> None:
        """A Sysmon 1 or 3 to its derived topic, and a creation's link to the process tree."""
        topic, key, partition = derived
        if outcome.event_id == PROCESS_CREATE and key is not None:
            # Before the events read after it: see sysmon_faust.stream.tree_replica.
            link = ancestry.encode_link(outcome.fields)
            # Checked per write, not per batch: once another part stopped the
            # worker (a full disk), a RocksDB write may block the loop for good
            # and /health could not say why (a batch holds up to 20,000 creations).
            await faults.hold_if_stopping()
            tree_copy.write_through(key.decode(), link)
            await self._send(settings.topic_process_tree, link, key=key, partition=partition)
        await self._send(
            topic,
            orjson.dumps(outcome.fields),
            key=key,
            timestamp_ms=record_timestamp_ms(outcome.timestamp_ms, int(time.time() * 1000)),
        )

    async def _record_failed(self, message: Message, exc: Exception) -> None:
        """The record's dead letter, for an error of the record; a fault of our own is re-raised
        (it stops the worker with the batch uncommitted: sysmon_faust.stream.faults)."""
        if faults.is_own_fault(exc):
            raise exc
        log.exception("intake: record %s[%s]@%s failed", *_where(message))
        await self._dead_letter(message, f"pipeline error: {type(exc).__name__}: {exc}")

    async def _dead_letter(self, message: Message, error: str) -> None:
        letter = deadletter.dead_letter(message.value(), error, *_where(message))
        stats.dead_lettered += 1
        await self._send(settings.topic_dlq, letter.dumps())


@dataclass(slots=True)
class _Unsettled:
    """A batch produced under at_least_once whose acknowledgements and commit are awaited."""

    #: Its records (keyed records, tree links, dead letters).
    sent: list[Delivery]
    #: ``{input partition: next offset to read}`` to commit once they are acknowledged.
    offsets: dict[int, int]
    #: A revocation settled it (:meth:`Intake._settle_now`): its wait commits nothing.
    at_revocation: bool = False


def _retrieved(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


def _where(message: Message) -> tuple[str, int, int]:
    return settings.topic_input, *position(message)
