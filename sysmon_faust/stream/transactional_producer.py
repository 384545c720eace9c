"""Writes under exactly_once: librdkafka's transactions (KIP-98), for the intake and the join.

The intake: each batch it reads becomes one Kafka transaction: its keyed
records, dead letters and process-tree links, and the batch's input offsets
(``send_offsets_to_transaction`` with the input consumer's group metadata),
committed together. A consumer reading ``read_committed`` (the join) sees
a batch whole or not at all.

The join: Faust keeps one transaction per re-keying partition, committed
with that partition's offsets on Faust's commit timer
(:mod:`sysmon_faust.stream.transactions`); :class:`FaustTransactionProducer`
is that partition's producer as Faust's aiokafka driver calls it, on
librdkafka (``compat.faust_fixes.TRANSACTION_PRODUCER``). Its offsets go with
the group's name alone, as aiokafka sent them: Faust's consumer is
aiokafka's, whose generation librdkafka cannot name; a zombie is fenced by
the partition's transactional id, which the partition's next owner
registers.

Why librdkafka and not aiokafka, which wrote these transactions before:
aiokafka builds record batches, compresses them and writes them to the
socket on the event loop the join shares (under exactly_once 30 % of the
worker's samples were aiokafka's producing, py-spy, ``make bench``'s mix);
librdkafka does all of that in its own threads, as under at_least_once
(:mod:`sysmon_faust.stream.output_producer`).

Why the group metadata matters (KIP-447, Kafka 2.5): the offsets are
committed with the consumer's generation and member id, so a worker that
lost its partitions in a rebalance but still runs (a zombie) cannot commit
them — the coordinator refuses its offsets and its transaction aborts.
The transactional id (stable across restarts) fences a crashed
predecessor: ``init_transactions`` aborts what it left open.

librdkafka's transactional calls block (a round trip to the transaction
coordinator): they run in a thread while the loop goes on with the join.
Delivery reports are served on the loop only: a commit first waits for
every record of the transaction to be acknowledged (:meth:`flush`), so the
flush librdkafka makes inside ``commit_transaction`` has none to serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import confluent_kafka

from sysmon_faust.settings import Settings
from sysmon_faust.stream import output_producer
from sysmon_faust.stream.output_producer import Delivery, OutputProducer

log = logging.getLogger(__name__)

#: Seconds a transactional call (init, offsets, commit) may take before it
#: fails with a timeout: an own fault, which stops the worker (exit 75) with
#: the transaction open; its restart aborts it (``init_transactions``).
CALL_TIMEOUT_SECONDS = 60.0
#: Seconds a stopping worker gives the abort of its open transaction.
ABORT_TIMEOUT_SECONDS = 5.0


class TransactionalProducer(OutputProducer):
    """librdkafka's transactional producer, used from the event loop, one transaction at a time.

    ``config``: librdkafka properties with ``transactional.id``
    (:func:`sysmon_faust.stream.output_producer.config` plus it). Call
    :meth:`start` before the first :meth:`send`; a send opens a transaction
    when none is open; :meth:`commit` ends it with the input offsets.
    Errors are ``confluent_kafka.KafkaException`` (an own fault of the
    worker: :mod:`sysmon_faust.stream.faults`).
    """

    #: A transaction's records are read (read_committed) once it is committed,
    #: and its commit waits for all of them: lingering would only hold it.
    sends_lingering_on_flush = True

    def __init__(self, config: dict[str, Any]) -> None:
        if not config.get("transactional.id"):
            raise ValueError("a transactional producer needs transactional.id")
        super().__init__(config)
        self.in_transaction = False

    async def start(self) -> None:
        """Register the transactional id with its coordinator (fencing a predecessor of the same
        id and aborting what it left open); blocks a thread up to ``CALL_TIMEOUT_SECONDS``."""
        producer = self._started()
        await asyncio.to_thread(producer.init_transactions, CALL_TIMEOUT_SECONDS)

    def send_nowait(
        self, topic: str, key: bytes | None, value: bytes | None,
        partition: int | None = None, timestamp_ms: int | None = None,
        delivery: Delivery | None = None,
    ) -> Delivery:  # fmt: skip
        """:meth:`OutputProducer.send_nowait` inside the open transaction (opened if there is
        none); :meth:`OutputProducer.send` goes through it."""
        self.begin()
        return super().send_nowait(topic, key, value, partition, timestamp_ms, delivery)

    def begin(self) -> None:
        """Open a transaction, unless one is open (local: no round trip)."""
        if not self.in_transaction:
            self._started().begin_transaction()  # local: no round trip
            self.in_transaction = True

    async def commit(
        self, offsets: list[confluent_kafka.TopicPartition] | None, group_metadata: Any
    ) -> None:
        """Commit the open transaction with ``offsets`` (the next offset to read, per input
        partition) for the consumer group of ``group_metadata``
        (``confluent_kafka.Consumer.consumer_group_metadata()``).

        No offsets and no transaction open: nothing to do. Raises
        ``confluent_kafka.KafkaException`` when a record or the commit
        failed; the transaction is then left to the restart to abort.
        """
        if offsets:
            self.begin()
        if not self.in_transaction:
            return
        producer = self._started()
        await self.flush()
        if offsets:
            await asyncio.to_thread(
                producer.send_offsets_to_transaction, offsets, group_metadata,
                CALL_TIMEOUT_SECONDS,
            )  # fmt: skip
        await asyncio.to_thread(producer.commit_transaction, CALL_TIMEOUT_SECONDS)
        self.in_transaction = False

    async def abort(self) -> None:
        """Abort the open transaction, if any (a stopping worker's); errors are logged, not raised:
        the next ``init_transactions`` of this id aborts it anyway."""
        if not self.in_transaction or self._producer is None:
            return
        self.in_transaction = False
        try:
            await asyncio.to_thread(self._producer.abort_transaction, ABORT_TIMEOUT_SECONDS)
        except confluent_kafka.KafkaException as exc:
            log.warning(
                "transaction %s not aborted: %s",
                self._config["transactional.id"],
                exc.args[0].str(),
            )


def group_only_metadata(client: dict[str, Any], group_id: str) -> Any:
    """Consumer group metadata naming the group alone (no generation, no member): what a
    transaction's offsets carry for a consumer that is not librdkafka's (the broker checks no
    generation then, as for the group id of KIP-98's ``sendOffsetsToTransaction``).

    ``client``: librdkafka properties of the cluster (``output_producer.client_config``).
    """
    consumer = confluent_kafka.Consumer(client | {"group.id": group_id})
    try:
        return consumer.consumer_group_metadata()
    finally:
        consumer.close()  # never subscribed: it has no group to leave


class FaustTransactionProducer:
    """One transactional id's producer with the interface Faust's aiokafka driver calls
    (aiokafka's ``AIOKafkaProducer``: ``start``, ``stop``, ``begin_transaction``, ``send``,
    ``send_offsets_to_transaction``, ``commit_transaction``, ``abort_transaction``,
    ``flush``), on a :class:`TransactionalProducer`.

    ``send`` returns a :class:`~sysmon_faust.stream.output_producer.Delivery`
    (done, exception, ``result().offset``, ``add_done_callback``), which is
    what the join reads of a send (:mod:`sysmon_faust.stream.transactions`).
    Errors are ``confluent_kafka.KafkaException``.
    """

    def __init__(self, config: dict[str, Any], client: dict[str, Any]) -> None:
        """``config``: the producer's librdkafka properties with ``transactional.id``;
        ``client``: the cluster's (for the group metadata)."""
        self._producer = TransactionalProducer(config)
        self._client = client
        self._offsets: list[confluent_kafka.TopicPartition] | None = None
        self._group_metadata: Any = None

    @property
    def librdkafka(self) -> TransactionalProducer:
        """The producer itself: the join sends by it straight, in groups
        (:meth:`Outputs.send_nowait <sysmon_faust.stream.transactions.Outputs.send_nowait>`)."""
        return self._producer

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Abort what is open (Faust ended its transaction before: what is left was never
        to be committed), and drop the producer."""
        await self._producer.abort()
        self._producer.close()

    def is_in_transaction(self) -> bool:
        return self._producer.in_transaction

    async def begin_transaction(self) -> None:
        self._producer.begin()

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int | None = None, timestamp_ms: int | None = None, headers: Any = None,
    ) -> Delivery:  # fmt: skip
        """aiokafka's ``send`` (``headers`` are not sent: the join writes none)."""
        return await self._producer.send(topic, key, value, partition, timestamp_ms)

    async def send_offsets_to_transaction(self, offsets: Mapping[Any, int], group_id: str) -> None:
        """Keep ``{TP: next offset}`` for :meth:`commit_transaction`, which sends them."""
        if self._group_metadata is None:
            self._group_metadata = group_only_metadata(self._client, group_id)
        self._offsets = [
            confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)
            for tp, offset in offsets.items()
        ]

    async def commit_transaction(self) -> None:
        offsets, self._offsets = self._offsets, None
        await self._producer.commit(offsets, self._group_metadata)

    async def abort_transaction(self) -> None:
        self._offsets = None
        await self._producer.abort()

    async def flush(self) -> None:
        await self._producer.flush()


def faust_transaction_producers(
    settings: Settings, max_record_bytes: int
) -> Callable[[str], FaustTransactionProducer]:
    """What makes the join's producer of each transactional id
    (``faust_fixes.TRANSACTION_PRODUCER``): the worker's cluster, security and codec;
    ``max_record_bytes`` the largest record (bytes)."""
    client = output_producer.client_config(settings, f"{settings.app_id}-join-transactions")
    config = output_producer.config(settings, client["client.id"], max_record_bytes)

    def make(transactional_id: str) -> FaustTransactionProducer:
        # linger.ms is SYSMON_PRODUCER_LINGER_MS, as under at_least_once: the
        # commit sends what lingers at once (sends_lingering_on_flush).
        properties = config | {"transactional.id": transactional_id}
        return FaustTransactionProducer(properties, client)

    return make
