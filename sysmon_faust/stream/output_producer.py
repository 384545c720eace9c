"""The join's output records and the intake's writes under at_least_once, produced by librdkafka
(confluent-kafka).

Every Sysmon event the join enriches goes out as one record of its own
(``sysmon-enriched``), so producing is most of the join's per-event work once
every type is enriched. aiokafka, Faust's client, spends 13.7 µs of the
event loop's CPU per ~1 KB record (a future, a Python batch builder, the
produce request built in Python; zstd); librdkafka 1.9 µs, in threads of its
own, off the event loop (``/tmp`` micro-benchmark, 200,000 records, one
broker on this machine class; see docs/benchmark.md). Quix Streams produces
with the same library.

The guarantee stays Faust's: offsets are committed only after every output
of the records they cover is acknowledged. Faust flushes its own producer
before a commit; :meth:`OutputProducer.flush` runs in the same place
(``faust_fixes.BEFORE_COMMIT``) for this one. A record Kafka refuses after
librdkafka's retries (``message.timeout.ms``) fails its :class:`Delivery`,
which stops the worker before any commit (:meth:`Faults.watch_send
<sysmon_faust.stream.faults.Faults.watch_send>`, as for Faust's producer).

The tables' changelog writes go the same way: where Faust's recovery starts
after a restart is the persisted offset the join moves on from each
acknowledged write's offset (:attr:`Delivery.offset`,
:meth:`Outputs.note_persisted <sysmon_faust.stream.transactions.Outputs.note_persisted>`),
not Faust's producer's. A ProcessCreate makes four changelog writes; moving
them here took the table fill from 139.4 to 99.6 µs of worker CPU per
creation, 6,558 to 9,282 creations/s (``make bench``, 100,000 rows).
Under exactly_once each record's outputs and changelog writes go in the
transaction of its source partition (:mod:`sysmon_faust.stream.transactions`),
on librdkafka too (:mod:`sysmon_faust.stream.transactional_producer`, a
subclass of this one).

Records of one partition keep their order: the producer is idempotent
(KIP-98), so a retry neither reorders nor doubles them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

import confluent_kafka

from sysmon_faust.settings import Settings
from sysmon_faust.stream.broker_watch import STATS_INTERVAL_MS, BrokerWatch

log = logging.getLogger(__name__)

#: Seconds between two looks at librdkafka's delivery reports while records are in flight.
POLL_INTERVAL = 0.002
#: Seconds a flush of a producer that :attr:`OutputProducer.sends_lingering_on_flush`
#: blocks the loop in librdkafka's own ``flush()``: long enough for its
#: broker thread to wake and send what lingers (0.5 ms missed 2 times in 6
#: here, 1 ms none in 6; a miss costs a wait, not a record).
SEND_LINGERING_SECONDS = 0.001
#: Seconds after which a flush still waiting does that again.
SEND_LINGERING_AGAIN_SECONDS = 0.02


class Delivery:
    """The delivery reports of one record, or of a group of records, read like an asyncio future
    (done, cancelled, exception, add_done_callback) by :meth:`JoinState.settle_acknowledged`,
    :meth:`Faults.watch_send` and :meth:`Outputs.note_persisted
    <sysmon_faust.stream.transactions.Outputs.note_persisted>`.

    Not an asyncio future: completing one schedules each callback on the
    loop, an iteration per record; here they run at once, inside the poll
    that served the report.

    A group (:meth:`OutputProducer.group`) is done once it is closed and every
    record sent with it is reported: the join sends what one record of the
    re-keying topic makes as one group, and each changelog partition's writes
    of it as another, rather than one object per record. Per record sent, a
    :class:`Delivery` of its own with its flush epoch's count cost 4.6-4.8 µs
    of the producing thread's CPU (the fault watch, the persisted offset's
    queue and the hand-outs' wait came on top in the join), a report into a
    group 2.4-3.3, no report at all 1.6-1.8 (``produce()`` of 300,000
    records of 600 bytes, this machine class, 2026-12-05); a worker enriching
    every type went from 47.4 to 41.5 µs of CPU per event (docs/benchmark.md).
    """

    __slots__ = (
        "_callbacks", "_cancelled", "_done", "_epoch", "_error", "_left", "_open",
        "_outstanding", "offset", "producer",
    )  # fmt: skip

    def __init__(
        self, epoch: int = 0, outstanding: dict[int, int] | None = None, group: bool = False
    ) -> None:
        self._done = False
        self._cancelled = False
        self._error: BaseException | None = None
        #: The highest offset of its records once acknowledged (-1 before): a
        #: record's offset in its partition, or the last of a group's records
        #: when all went to one partition (acknowledged in order, KIP-98).
        self.offset = -1
        self._callbacks: list[Callable[[Delivery], None]] = []
        #: Records sent with it and not yet reported: a record of its own is
        #: its one; a group counts its records as they are sent.
        self._left = 0 if group else 1
        #: A group not yet closed: more records may be sent with it.
        self._open = group
        #: A group's producer (:meth:`OutputProducer.group`): its records go by it.
        self.producer: OutputProducer | None = None
        #: The flush epoch it was sent in, and its producer's count per epoch.
        self._epoch = epoch
        self._outstanding = outstanding
        if outstanding is not None:
            outstanding[epoch] = outstanding.get(epoch, 0) + 1

    def add_done_callback(self, callback: Callable[[Delivery], None]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def close(self) -> None:
        """No more records will be sent with this group: done once those sent are reported."""
        self._open = False
        if not self._left and not self._done:
            self._finish()

    def _report(self, error: Any, message: Any) -> None:
        # librdkafka's on_delivery(err, msg), served by poll() on the loop.
        if error is not None:
            if self._error is None:
                self._error = confluent_kafka.KafkaException(error)
        elif message is not None:
            # An offset the report lacks: librdkafka's -1001 up to 2.13, None
            # from confluent-kafka 2.16 (seen after a broker restart): never
            # taken for one.
            offset = message.offset()
            if offset is not None and offset > self.offset:
                self.offset = offset
        self._left -= 1
        if not self._left and not self._open:
            self._finish()

    def _not_queued(self) -> None:
        # librdkafka did not take the record (its queue was full): no report
        # will come for it. The send waits for room and tries again, or is
        # cancelled (_never_sent).
        self._left -= 1
        if self._open:
            return
        self._cancelled = True  # a record of its own: nothing will wait for it
        if not self._left:
            self._finish()

    def _never_sent(self) -> None:
        # A send cancelled while it waited for room: its record is not in
        # Kafka, nor ever will be. The delivery counts as cancelled (a group,
        # once closed), and no flush may wait for the record.
        self._cancelled = True

    def _finish(self) -> None:
        self._done = True
        if self._outstanding is not None:
            left = self._outstanding[self._epoch] - 1
            if left:
                self._outstanding[self._epoch] = left
            else:
                del self._outstanding[self._epoch]
        for callback in self._callbacks:
            callback(self)

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def exception(self) -> BaseException | None:
        """The first error (``confluent_kafka.KafkaException``); None: acknowledged, or not done."""
        return self._error

    def result(self) -> Delivery:
        """Itself once acknowledged (its :attr:`offset` set): read as aiokafka's
        ``RecordMetadata`` is by ``Outputs.note_persisted``
        (:mod:`sysmon_faust.stream.transactions`).

        Raises the delivery's error, ``asyncio.CancelledError`` for a record never
        produced, or ``asyncio.InvalidStateError`` while not done.
        """
        if not self._done:
            raise asyncio.InvalidStateError("not delivered yet")
        if self._cancelled:
            raise asyncio.CancelledError("never produced")
        if self._error is not None:
            raise self._error
        return self


class OutputProducer:
    """librdkafka's producer, used from the event loop.

    ``config``: librdkafka properties (:func:`config`). The producer starts
    with the first record, on the running loop.
    """

    #: Whether :meth:`flush` first has librdkafka send the records that wait
    #: for ``linger.ms`` at once, rather than wait out the linger. Off here:
    #: under at_least_once an output is visible as soon as it is sent, so the
    #: linger is what batches it, and a commit's flush waits for it while the
    #: join goes on; a transaction's records are invisible until its commit,
    #: which only waits for the linger (:class:`TransactionalProducer
    #: <sysmon_faust.stream.transactional_producer.TransactionalProducer>`).
    sends_lingering_on_flush = False

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._producer: confluent_kafka.Producer | None = None
        self._poller: asyncio.Task[None] | None = None
        self._in_flight = asyncio.Event()
        #: Deliveries not yet done (records, groups), per flush epoch: a flush waits for its
        #: own epoch and those before, not for what is sent meanwhile.
        self._outstanding: dict[int, int] = {}
        self._epoch = 0

    def _started(self) -> confluent_kafka.Producer:
        if self._producer is None:
            self._producer = confluent_kafka.Producer(self._config)
            self._poller = asyncio.ensure_future(self._poll())
        return self._producer

    def group(self) -> Delivery:
        """A :class:`Delivery` for the records sent with it until :meth:`Delivery.close`.

        Close it in a ``finally``: a flush started meanwhile waits for it.
        """
        group = Delivery(self._epoch, self._outstanding, group=True)
        group.producer = self
        return group

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        partition: int | None = None, timestamp_ms: int | None = None,
        delivery: Delivery | None = None,
    ) -> Delivery:  # fmt: skip
        """Queue one record; its :class:`Delivery` is done once Kafka acknowledged it (or not).

        :meth:`send_nowait`, waiting while librdkafka's queue is full
        (``queue.buffering.max.*``): backpressure. Raises what it raises but
        ``BufferError``; cancelled while it waits, its group (``delivery``)
        counts as cancelled.
        """
        while True:
            try:
                return self.send_nowait(topic, key, value, partition, timestamp_ms, delivery)
            except BufferError:
                self._started().poll(0)  # its reports make room
                try:
                    await asyncio.sleep(POLL_INTERVAL)
                except asyncio.CancelledError:
                    if delivery is not None:
                        delivery._never_sent()
                    raise

    def send_nowait(
        self, topic: str, key: bytes | None, value: bytes | None,
        partition: int | None = None, timestamp_ms: int | None = None,
        delivery: Delivery | None = None,
    ) -> Delivery:  # fmt: skip
        """:meth:`send` without waiting: the join's path for each record it makes.

        ``partition`` None: Kafka's default partitioner (murmur2 of the key, as
        the Java client; librdkafka's sticky partitioning without a key);
        ``timestamp_ms``: Unix ms (None: now); ``delivery``: the open group
        (:meth:`group`) to report to and return (None: a :class:`Delivery` of
        the record's own). Raises ``BufferError`` when librdkafka's queue is
        full (nothing was queued: :meth:`send` waits for room),
        ``confluent_kafka.KafkaException`` for a record librdkafka refuses at
        once (larger than ``message.max.bytes``, an unknown partition): the
        delivery carries that error.

        Not a coroutine: with the awaited ``send`` (two coroutines per record)
        and a closure per watched record, a record cost 10.3 to 11.7 µs of CPU;
        queued here and watched by one callback per component
        (:meth:`Faults.watch_send <sysmon_faust.stream.faults.Faults.watch_send>`),
        7.7 to 9.1 µs, 2.6 to 3.3 µs less in each of four pairs (200,000 records
        of ~1 KB, all threads counted; ``produce()`` alone 3.7 µs; docs/benchmark.md).
        """
        producer = self._started()
        if delivery is None:
            delivery = Delivery(self._epoch, self._outstanding)
        else:
            delivery._left += 1
        try:
            # confluent-kafka's defaults: partition -1 (the partitioner's), timestamp 0 (now).
            producer.produce(
                topic, value, key, -1 if partition is None else partition,
                on_delivery=delivery._report, timestamp=timestamp_ms or 0,
            )  # fmt: skip
        except confluent_kafka.KafkaException as refused:
            delivery._report(refused.args[0], None)  # no flush waits for it
            raise
        except BaseException:
            delivery._not_queued()  # nor for a record never queued (BufferError)
            raise
        if not self._in_flight.is_set():
            self._in_flight.set()
        return delivery

    def flush(self) -> Coroutine[Any, Any, None]:
        """A coroutine that returns once every record sent before the call is acknowledged or
        failed.

        Records sent after the call are not waited for, also those sent before
        the coroutine is first awaited: the join goes on producing during a
        commit, and a flush that waited for an empty queue would hold the
        commit for as long as the join is busy; the intake waits for a batch's
        records while it reads the next (:mod:`sysmon_faust.stream.intake`).
        """
        epoch = self._epoch
        self._epoch += 1
        return self._flushed(epoch)

    async def _flushed(self, epoch: int) -> None:
        producer = self._producer
        if producer is None:
            return
        next_send = time.monotonic() if self.sends_lingering_on_flush else math.inf
        while True:
            if time.monotonic() >= next_send:
                # While librdkafka's flush() runs, its broker threads send what
                # lingers at once (librdkafka 1.8, confluentinc/librdkafka#3494);
                # it serves the delivery reports as poll() does. Only for a
                # moment (it would wait for records sent meanwhile too), and
                # again now and then: a broker thread not woken in that moment
                # would leave the rest to the linger.
                producer.flush(SEND_LINGERING_SECONDS)
                next_send = time.monotonic() + SEND_LINGERING_AGAIN_SECONDS
            else:
                producer.poll(0)  # serves the reports, which count down _outstanding
            if not any(sent <= epoch for sent in self._outstanding):
                return
            await asyncio.sleep(POLL_INTERVAL)

    def flush_blocking(self, timeout_s: float) -> bool:
        """Wait, blocking the thread, until every record sent so far is acknowledged or failed;
        at most ``timeout_s`` seconds. False: some are still in flight.

        For librdkafka's rebalance callback, which cannot await (the intake's
        revocation, :mod:`sysmon_faust.stream.intake`); it serves the delivery
        reports on the calling thread, as :meth:`flush` does.
        """
        if self._producer is None:
            return True
        return self._producer.flush(timeout_s) == 0

    def close(self) -> None:
        """Stop serving delivery reports (the producer is dropped with it): for a producer whose
        records are all reported, or whose open transaction is aborted."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        self._producer = None

    async def _poll(self) -> None:
        # Delivery reports are served only by poll(): a look every
        # POLL_INTERVAL while records are in flight, none while idle.
        producer = self._producer
        assert producer is not None
        while True:
            await self._in_flight.wait()
            producer.poll(0)
            if not len(producer):
                self._in_flight.clear()
            await asyncio.sleep(POLL_INTERVAL)


def config(settings: Settings, client_id: str, max_record_bytes: int) -> dict[str, Any]:
    """librdkafka's properties for the worker's settings: the same cluster, security and codec
    as Faust's clients (``Settings.kafka_client_options``), librdkafka's defaults otherwise
    (``message.timeout.ms`` 300 s, ``queue.buffering.max.kbytes`` 1 GiB).

    ``max_record_bytes``: the largest record (bytes), as Faust's ``producer_max_request_size``.
    """
    properties: dict[str, Any] = client_config(settings, client_id) | {
        "compression.type": settings.compression,
        # SYSMON_PRODUCER_LINGER_MS: Kafka Streams' 100 ms by default. At 5 ms
        # (Kafka's default since 4.0, KIP-1030) the join's ~5,000 records/s
        # went out a few per batch, and librdkafka's thread spent ~15 µs per
        # input event compressing and sending them; at 100 ms 5-8, and the
        # worker 115.4 -> 104.6 µs per event (make bench's mix, every type
        # enriched, two rounds each; per-thread CPU from /proc). Under
        # at_least_once a commit's flush waits for the linger (the join goes on
        # meanwhile); a transaction's commit sends what lingers at once
        # (OutputProducer.sends_lingering_on_flush).
        "linger.ms": settings.producer_linger_ms,
        "enable.idempotence": True,
        # Kafka's default partitioner: the partitions Faust's producer, the
        # intake and Kafka Streams give a key (sysmon_faust.core.rekey).
        "partitioner": "murmur2_random",
        "message.max.bytes": max_record_bytes,
    }
    return properties


#: Every librdkafka client's statistics go here: which has lost every broker.
BROKER_WATCH: Final = BrokerWatch()


def client_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """librdkafka's properties of any client of the worker's: the cluster and its security, as
    Faust's clients have them (``Settings.kafka_client_options``), and its statistics to
    :data:`BROKER_WATCH` (:mod:`sysmon_faust.stream.broker_watch`)."""
    properties: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": client_id,
        "security.protocol": settings.kafka_security_protocol,
        "statistics.interval.ms": STATS_INTERVAL_MS,
        "stats_cb": BROKER_WATCH,
    }
    if settings.kafka_uses_tls:
        # No CA file: the system's CAs, as Settings.kafka_ssl_context.
        properties["ssl.ca.location"] = settings.kafka_ssl_cafile or "probe"
        if settings.kafka_ssl_certfile:
            properties["ssl.certificate.location"] = settings.kafka_ssl_certfile
            properties["ssl.key.location"] = (
                settings.kafka_ssl_keyfile or settings.kafka_ssl_certfile
            )
    if settings.kafka_uses_sasl:
        properties["sasl.mechanism"] = settings.kafka_sasl_mechanism
        properties["sasl.username"] = settings.kafka_sasl_username
        properties["sasl.password"] = settings.kafka_sasl_password
    return properties
