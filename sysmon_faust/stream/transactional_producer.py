"""The intake's writes under exactly_once: one librdkafka transaction per batch (KIP-98, KIP-447).

Each batch the intake reads becomes one Kafka transaction: its keyed
records, dead letters and process-tree links, and the batch's input offsets
(``send_offsets_to_transaction`` with the input consumer's group metadata),
committed together. A consumer reading ``read_committed`` (the join) sees
a batch whole or not at all.

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
from typing import Any

import confluent_kafka

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

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        partition: int | None = None, timestamp_ms: int | None = None,
    ) -> Delivery:  # fmt: skip
        """:meth:`OutputProducer.send` inside the open transaction (opened if there is none)."""
        self._begin()
        return await super().send(topic, key, value, partition, timestamp_ms)

    def _begin(self) -> None:
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
            self._begin()
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
            log.warning("intake: open transaction not aborted at stop: %s", exc.args[0].str())
