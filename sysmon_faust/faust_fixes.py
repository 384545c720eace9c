"""Fixes for faust-streaming 0.15 (with aiokafka 0.14), each found by ``make bench``.

1. Records skipped after a rebalance. Faust "seeks stream partitions to
   committed offsets" with aiokafka's ``seek_to_committed``, which leaves a
   partition with no committed offset (or offset 0) where its fetch position
   happens to be. Faust has by then dropped the records it had fetched but not
   yet processed for the revoked generation, so a partition that stays on the
   same worker across a rebalance before its first commit resumes *after*
   them. Seen as ~1 % of the re-keyed records lost when two workers start
   together on a filled topic. Fix: partitions of the re-keying topic without
   a committed offset are sought to their beginning, as
   ``auto_offset_reset=earliest`` promises (at worst a replay, never a skip).

2. Seconds of latency in the join. Faust hard-codes ``fetch_max_wait_ms=1500``.
   aiokafka keeps one fetch in flight per broker and leaves out of it every
   partition whose records are still buffered; right after a fetch returns,
   that is every busy partition, so the next request holds only idle ones
   (the assignor's leader topic, standby changelogs) and the broker parks it
   for the full 1.5 s while new records wait behind it. Measured at half load:
   join p50 1.6 s, p99 5.7 s with 1500 ms; 65 ms / 320 ms with 20 ms. The cost
   is empty fetches on an idle worker: 1.2 % → 6.5 % of a core at 20 ms,
   3.4 % at 50 ms (see the README's benchmark section).

3. Debug logging switched on by the terminal spinner. With ``-l warn`` or
   higher, ``faust.Worker`` adds a spinner handler and sets the *root logger*
   to DEBUG, so every ``log.debug`` in aiokafka and Faust builds a LogRecord:
   18 % of the worker's CPU in a py-spy profile at half load. The worker here
   never shows the spinner; the root logger stays at the requested level.

4. Table writes throttled by the event loop. A table assignment queues its
   changelog record in Faust's ProducerBuffer, whose task sends *one* record
   per loop iteration; once 100 wait, Faust stops feeding the agent until
   they drain. With the intake sharing the loop, that capped the table at
   ~90 new processes/s while the intake ran. The buffer here sends all that
   is queued each time it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode import Service

#: Longest time the broker may hold a fetch of the Faust consumer (see 2.).
FETCH_MAX_WAIT_MS = 20


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    #: Topics whose uncommitted partitions must start from the beginning.
    from_beginning_topics: ClassVar[frozenset[str]] = frozenset()

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its Fetcher at start
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        result: Mapping[TP, int] = await self.call_thread(self._seek_committed_or_beginning)
        return result

    async def _seek_committed_or_beginning(self) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int] = await consumer.seek_to_committed()
        uncommitted = [
            tp
            for tp, offset in committed.items()
            if not offset and tp.topic in self.from_beginning_topics
        ]
        if uncommitted:
            await consumer.seek_to_beginning(*uncommitted)
        return committed


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _DrainingProducerBuffer(ProducerBuffer):
    @Service.task
    async def _handle_pending(self) -> None:
        while not self.should_stop:
            message = await self.pending.get()
            await self._send_pending(message)
            while not self.pending.empty():  # the rest, in this same iteration (see 4.)
                await self._send_pending(self.pending.get_nowait())
            self.message_sent.set()


class _Producer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = _DrainingProducerBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.app = self.app


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the fixed consumer and producer buffer."""

    Consumer = _Consumer
    Producer = _Producer


class Worker(faust.Worker):
    """``faust.Worker`` without the terminal spinner (see 3.)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def start_uncommitted_from_beginning(*topics: str) -> None:
    _ConsumerThread.from_beginning_topics = frozenset(topics)
