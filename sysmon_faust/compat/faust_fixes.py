"""Fixes for faust-streaming 0.15 (with mode and aiokafka 0.14), each found by a bench or a test.

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

5. A worker under exactly_once that never stops. Faust ends every
   transaction when partitions are revoked or the worker stops, then commits
   again (``wait_empty`` commits, then ``commit_and_end_transactions``); a
   commit of a producer that is not in a transaction raises aiokafka's
   ``IllegalOperation``, and the worker hangs in its shutdown. Found with
   ``make chaos``. Fix: a commit of offsets begins a transaction first when
   none is open (offsets alone are a valid transaction).

6. Offsets that stop advancing under exactly_once. Faust commits, per
   partition, the end of the first run of consecutive offsets acked (or
   skipped: "gaps"). Under read_committed every transaction leaves an offset
   the consumer never returns (its commit marker), and Faust's gap tracking
   misses some (none is recorded after offset 0, and a gap that overlaps an
   acked offset duplicates it, which ends the run): the committed offset
   crept forward a few offsets per commit while the join went on, and each
   restart replayed minutes of input — 375 duplicates after 3 kills of
   ``make chaos``. Fix: a partition's records are handled in the order they
   are read (one agent, concurrency 1), so everything up to the highest
   acked offset is done, except a record read and not acked yet.

7. Records twice under exactly_once. Faust takes the offsets to commit, then
   waits for the transaction's lock (the join holds it while it handles a
   record, see sysmon_faust.stream.transactions), then commits the transaction —
   with the records the join sent meanwhile, but not their offsets: a crash
   replayed them. Fix: under the lock, the offsets are taken again.

8. Records dropped when a worker starts. After recovery Faust resumes the
   stream partitions, seeks them to their committed offsets, then resumes
   its flow control, which clears every stream's queue. Flow control is
   active at that point on a worker's first assignment, so records fetched
   during the seek reach the queues and are cleared — while the consumer has
   moved past them. Found with ``make chaos``: all the joins of a few
   records of each restart missing. Fix: flow control is suspended before
   the stream partitions are resumed; the one record the consumer then holds
   (fetched before the seek, delivered after it) comes again after the
   seek, and the join skips what it has handled (sysmon_faust.stream.agents).

9. A record skipped when a partition changes hands. The record of 8. that
   the consumer holds across the seek is not always one the join handled: on
   a partition just taken over it may be one *past* the committed offset
   (the record at that offset was fetched, queued and cleared). Delivered
   first, it was handled before the record at the committed offset, which
   then came as a "repeat" and was skipped — its events lost, and with them
   the order 6. relies on. Found by the SIGKILL test of
   tests/integration/test_scale_out.py (1 run in 6: the joins of one
   record missing). Fix: the consumer counts its seeks to the committed
   offsets (as each begins) and notes the count when it fetches a message;
   the join drops a message fetched before the last seek began without
   handling or acknowledging it (:func:`drop_if_fetched_before_seek`) — the
   seek brings it again, in order. (Counting when the seek ended instead
   dropped the first records fetched from the new position, which nothing
   brought again: `make chaos` under exactly_once lost 79 to 119 joins.)

10. Offsets committed past a record whose output was refused. Faust flushes
   its producer before it commits, but does not look at what the flush
   sent: a record the broker refused after its retries (a full disk on the
   broker, a record too large for the topic) was lost, and the offset of the
   input it came from committed. The join watches its sends
   (:meth:`sysmon_faust.stream.faults.Faults.watch_send`) and stops the worker on
   a failure; from the moment a fault is reported, no commit is made.

11. Work that must be done before offsets are committed. Under
   at_least_once Faust flushes its producer and commits; the join has
   state to settle once its records are acknowledged, and it must be done
   (and its own changelog writes acknowledged) before the offsets of the
   records that made it are committed — or a crash or a rebalance right
   after the commit leaves it undone for good. :data:`BEFORE_COMMIT` holds
   what runs between Faust's flush and its commit.

12. Transactions written on the event loop. Under exactly_once Faust keeps
   an aiokafka producer per re-keying partition, which builds, compresses
   and writes the join's records on the loop the join runs on (30 % of the
   worker's samples under exactly_once, py-spy, ``make bench``'s mix).
   :data:`TRANSACTION_PRODUCER` makes each of them instead (the worker sets
   librdkafka's, ``sysmon_faust.stream.transactional_producer``); Faust's
   transactional ids, locks and commit timer are unchanged.

13. Nothing to write just before a transaction commits. Under
   at_least_once the join writes what it keeps between commits (its
   processes' activity summaries) in :data:`BEFORE_COMMIT`; under
   exactly_once it had to write them after every record, in the record's
   transaction: 20 % of a worker's samples (each record's summaries written,
   then read back and decoded by the next). :data:`BEFORE_TRANSACTION_COMMIT`
   runs under each transaction's lock, before its offsets are sent, with
   those offsets: what it sends is in that transaction.

14. Transactional producers started one after another. On every assignment
   under exactly_once Faust starts the producer of each transactional id in
   turn, each registering its id with the coordinator (``InitProducerId``):
   0.06 s or 0.52 s each here (librdkafka, 5 ids: 1.7 s before the worker
   recovered, every restart; 0.6 s three at a time). They are started, and
   stopped on a revocation, :data:`TRANSACTIONS_AT_ONCE` at a time: each id
   has its own producer and lock, but their blocking calls run in the event
   loop's default thread pool (6 threads on 2 cores), which the intake's
   commits use too. As before, a cancelled rebalance leaves the calls
   already in their threads to finish; their producers are not kept.

15. Offsets more durable than the rows they cover. The worker writes its
   tables without RocksDB's write-ahead log, as Kafka Streams does
   (sysmon_faust.stream.store); Faust writes a table's persisted changelog
   offset with it. After a crash the log brings back the offset and not the
   rows written before it without the log, and recovery, which starts after
   that offset, would never read them again. Faust's persisted offset is
   written without the log too: a crash then loses an offset with the rows
   it covers, or keeps rows beyond the offset it kept (read again, in order),
   never the other way round.

16. A second of every start spent waiting. Faust's table manager sleeps
   1 s when it starts, for tables declared while the app starts; after it,
   declaring one raises ("Too late to add tables at this point"). The
   worker declares every table when its modules are imported
   (``sysmon_faust.stream.topology``), before Faust starts: the manager goes
   on at once (a worker was healthy 1.6 s after its launch rather than 2.7,
   on an empty topic; every start, restart and test pays it).

17. A new app that owns nothing for minutes. On its first start the worker
   creates its topics and joins its group at once, and the broker can answer
   the group leader's metadata request before its metadata cache holds the
   topics just created. The leader then assigns none of their partitions
   ("Ignoring missing topic"), and aiokafka asks again only when its
   metadata is ``metadata_max_age_ms`` old (5 min): the intake read the whole
   input while the join had nothing, still so after 240 s (1 start in 6 with
   two apps starting together on one broker). Kafka's Java consumer asks
   again after its retry backoff instead (KAFKA-4779). Here every member,
   after each assignment, refreshes its metadata with a growing backoff
   (:data:`UNKNOWN_TOPIC_BACKOFF_S`) while a topic it subscribes to is
   unknown; in the leader's fresh metadata the topic's partition count
   changes, which makes aiokafka rejoin the group and assign them.

18. A second of every stop spent waiting. mode's worker, once every service
   has stopped and every task has been gathered (cancelled past 1 s), runs
   the event loop one more second (``_sentinel_task``) before it closes it:
   1.0 of the 1.5 s between a SIGTERM and the end of an idle worker. What is
   left then is the cleanup of the tasks mode has just cancelled (their
   ``finally`` blocks, the callbacks of closed connections), which needs a
   few loop turns, not a second: :data:`SHUTDOWN_SETTLE_S`. Every restart,
   rolling upgrade and rebalance that waits for a leaving worker pays it
   (and every test that stops one).

19. A worker stuck on another worker's assignment. Under static membership
   (KIP-345) the coordinator hands a member that joins with a known
   instance id the assignment last made for that id — and Faust's
   assignment names the worker it was made for (its URL, which the other
   workers' HTTP routing uses). A second live worker with the same id, or a
   worker restarted at another address, then fails Faust's ``assert
   metadata.url == self._url`` inside aiokafka's coordinator task, which
   logs "Unexpected error in coordinator routine" and never assigns again:
   the worker stayed up, unhealthy, owning nothing (tried: two workers
   with one id). :data:`ASSIGNED_TO_ANOTHER_URL` is told (the worker says
   what to change, lets the group drop it and exits). Not covered: a
   duplicate that joins during a rebalance gets ``FENCED_INSTANCE_ID``
   answers, an error code aiokafka 0.14 does not know.

20. Transactions committed one after another. Under exactly_once Faust's
   commit timer commits each re-keying partition's transaction in turn, and
   the join waits for a partition while its transaction commits (its lock:
   ``sysmon_faust.stream.transactions``): a flush and two round trips to the
   transaction coordinator, four times every 2.8 s (~25 ms each, by the
   arithmetic of a commit every 0.5 s instead, which cost a fifth of the
   events/s: docs/benchmark.md). They are
   committed :data:`TRANSACTIONS_AT_ONCE` at a time, as 14. starts them: one
   worker of ``make bench``'s mix under exactly_once, three rounds
   alternating, 21,417 / 21,715 / 22,067 → 21,990 / 22,375 / 22,374 events/s
   (docs/benchmark.md); a partition's outputs are visible as soon.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar

import faust
from faust.assignor.client_assignment import ClientMetadata
from faust.assignor.partition_assignor import PartitionAssignor
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode import Service

from sysmon_faust.compat import private

#: Coroutines run after Faust's producer flush and before each commit under
#: at_least_once (see 11.).
BEFORE_COMMIT: list[Callable[[], Awaitable[None]]] = []


def _no_faults() -> list[str]:
    return []


#: Why nothing may be committed now (see 10.): the parts of the worker
#: stopped by a fault of their own. The worker sets it
#: (sysmon_faust.stream.faults); empty means commits go ahead.
COMMIT_BLOCKED_BY: list[Callable[[], list[str]]] = [_no_faults]


def _blocked() -> list[str]:
    return [reason for blocked_by in COMMIT_BLOCKED_BY for reason in blocked_by()]


#: Coroutines run under each transaction's lock, before its offsets (given) are
#: sent, under exactly_once (see 13.).
BEFORE_TRANSACTION_COMMIT: list[Callable[[Mapping[TP, int]], Awaitable[None]]] = []

#: Called with (the URL an assignment was made for, this worker's URL) when
#: they differ (see 19.); the worker's ends the process. Without one, Faust's
#: AssertionError is raised.
ASSIGNED_TO_ANOTHER_URL: list[Callable[[str, str], None]] = []

#: Makes the producer of a transactional id under exactly_once, with aiokafka's
#: transactional interface (see 12.); empty: aiokafka's own.
TRANSACTION_PRODUCER: list[Callable[[str], Any]] = []

#: Transactional producers started or stopped at once (see 14.): fewer than the
#: default thread pool's threads, so the intake's blocking calls never wait for all.
TRANSACTIONS_AT_ONCE = 3

#: Longest time the broker may hold a fetch of the Faust consumer (see 2.).
FETCH_MAX_WAIT_MS = 20

log = logging.getLogger(__name__)

#: What a stopping worker's event loop runs, once every service has stopped
#: and every task is gathered, before it is closed (see 18.), in seconds.
SHUTDOWN_SETTLE_S = 0.05

#: Waits between metadata refreshes while a subscribed topic is unknown (see
#: 17.), in seconds; the last repeats. The first is aiokafka's
#: ``retry_backoff_ms``; a topic just created shows within it on one broker.
UNKNOWN_TOPIC_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    #: Topics whose uncommitted partitions must start from the beginning.
    from_beginning_topics: ClassVar[frozenset[str]] = frozenset()

    #: The metadata refresh of 17., while one runs.
    _refreshing: asyncio.Future[None] | None = None

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its Fetcher at start
        return consumer

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # Runs on this thread's loop, with the aiokafka consumer (see 17.).
        if self._refreshing is not None:
            self._refreshing.cancel()
        self._refreshing = asyncio.ensure_future(
            refresh_while_topics_unknown(self._ensure_consumer())
        )
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_thread_stop(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()  # not left pending on a loop that ends (see 17.)
        await super().on_thread_stop()

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


async def refresh_while_topics_unknown(consumer: Any) -> None:
    """Refresh an aiokafka group consumer's metadata until it knows every topic it subscribes to.

    See 17. Waits :data:`UNKNOWN_TOPIC_BACKOFF_S` between refreshes (the last
    one repeating) and ends when none is unknown; a cancel ends it sooner.
    Topics created a moment ago show within the first waits (an info line);
    a topic still unknown once the waits are at their longest gets a warning.
    """
    unknown = private.unknown_subscribed_topics(consumer)
    if not unknown:
        return
    topics = ", ".join(sorted(unknown))
    log.info("assigned before the broker's metadata had %s; refreshing it", topics)
    waited, warned = 0.0, False
    for attempt in itertools.count():
        wait = UNKNOWN_TOPIC_BACKOFF_S[min(attempt, len(UNKNOWN_TOPIC_BACKOFF_S) - 1)]
        await asyncio.sleep(wait)
        waited += wait
        await private.refresh_metadata(consumer)
        still = private.unknown_subscribed_topics(consumer)
        if not still:
            log.info("the broker's metadata has them after %.1f s", waited)
            return
        if wait == UNKNOWN_TOPIC_BACKOFF_S[-1] and not warned:
            warned = True
            log.warning(
                "no partition of %s is assigned: the broker's metadata still lacks them after "
                "%.1f s; check that they exist and that this worker may describe them",
                ", ".join(sorted(still)), waited,
            )  # fmt: skip


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: How many seeks of every partition to its committed offset have
        #: ended, and per message, how many had when it was fetched (see 9.;
        #: weak: a message is forgotten with its last reference).
        self.seeks = 0
        self.seeks_before: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def _to_message(self, tp: TP, record: Any) -> Any:
        message = super()._to_message(tp, record)
        self.seeks_before[message] = self.seeks
        return message

    async def perform_seek(self) -> None:
        # Counted before the seek, not after: records the consumer fetches
        # from the new position while the seek is still being awaited are
        # not stale, and nothing would bring them again.
        self.seeks += 1
        await super().perform_seek()

    async def _commit(self, offsets: Mapping[Any, int]) -> bool:  # see 10. and 11.
        for hook in BEFORE_COMMIT:
            if not _blocked():
                await hook()
        if blocked := _blocked():
            log.warning("not committing %d offsets: %s", len(offsets), blocked)
            return False
        committed: bool = await super()._commit(offsets)
        return committed

    def _new_offset(self, tp: TP) -> int | None:  # see 6.
        acked = self._acked[tp]
        if not acked:
            return None
        offset = max(acked) + 1
        waiting = [m.offset for m in self._unacked_messages if m.tp == tp and not m.acked]
        if waiting:
            offset = min(offset, min(waiting))
        done = [n for n in acked if n < offset]
        acked[:] = [n for n in acked if n >= offset]
        self._acked_index[tp].difference_update(done)
        self._gap[tp].chop(0, offset)
        return offset

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

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        if transactional_id and TRANSACTION_PRODUCER:  # see 12.
            return TRANSACTION_PRODUCER[0](transactional_id)
        return super()._new_producer(transactional_id)

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[TP, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        # Faust's own, with 5. and 7.: one hold of the transaction's lock from
        # the offsets to the commit; and with 20.: the transactions at once.
        if blocked := _blocked():  # see 10.
            log.warning("not committing transactions: %s", blocked)
            return

        async def commit(transactional_id: str) -> None:
            await self._commit_transaction(
                transactional_id, tid_to_offset_map[transactional_id], group_id,
                start_new_transaction,
            )  # fmt: skip

        await _at_once(commit, tid_to_offset_map)

    async def _commit_transaction(
        self, transactional_id: str, offsets: Mapping[TP, int], group_id: str,
        start_new_transaction: bool,
    ) -> None:  # fmt: skip
        consumer: Any = self.app.consumer
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            if producer is None:
                log.warning("commit for unknown transaction %s", transactional_id)
                return
            committing = dict(offsets)
            for tp, offset in offsets.items():  # see 7.
                handled = consumer._new_offset(tp)
                if handled is not None and handled > offset:
                    committing[tp] = handled
            if not _in_transaction(producer):  # see 5.
                await producer.begin_transaction()
            for hook in BEFORE_TRANSACTION_COMMIT:  # see 13.
                await hook(committing)
            await producer.send_offsets_to_transaction(committing, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()


def _in_transaction(producer: Any) -> bool:
    if hasattr(producer, "is_in_transaction"):  # TRANSACTION_PRODUCER's (12.)
        return bool(producer.is_in_transaction())
    return bool(producer._txn_manager.is_in_transaction())


class _TransactionManager(TransactionManager):  # see 14.
    async def _start_transactions(self, tids: Iterable[str]) -> None:
        await _at_once(self.producer.maybe_begin_transaction, tids)

    async def _stop_transactions(self, tids: Iterable[str]) -> None:
        await _at_once(self.producer.stop_transaction, tids)


async def _at_once(call: Callable[[str], Awaitable[None]], tids: Iterable[str]) -> None:
    slots = asyncio.Semaphore(TRANSACTIONS_AT_ONCE)

    async def one(tid: str) -> None:
        async with slots:
            await call(tid)

    await asyncio.gather(*(one(tid) for tid in tids))


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the fixed consumer, producer buffer and transactions."""

    Consumer = _Consumer
    Producer = _Producer
    TransactionManager = _TransactionManager


class Worker(faust.Worker):
    """``faust.Worker`` without the terminal spinner (see 3.) nor its last second (see 18.)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None

    async def _sentinel_task(self) -> None:
        await asyncio.sleep(SHUTDOWN_SETTLE_S)


def drop_if_fetched_before_seek(app: faust.App, message: Any) -> bool:
    """Forget ``message`` if it was fetched before the last seek to the committed offsets (9.).

    The seek delivers it again, in order. It is neither handled nor
    acknowledged: an acknowledged offset would let a commit pass the records
    before it that the seek brings back.
    """
    consumer = app.consumer
    if not isinstance(consumer, _Consumer):
        return False
    if consumer.seeks_before.get(message, consumer.seeks) == consumer.seeks:
        return False
    message.acked = True  # so that Faust's own acknowledgement is a no-op
    consumer._unacked_messages.discard(message)
    return True


def start_uncommitted_from_beginning(*topics: str) -> None:
    _ConsumerThread.from_beginning_topics = frozenset(topics)


def _suspend_flow_first(resume: Any) -> Any:
    async def resume_suspended(self: Recovery, generation_id: int = 0) -> None:
        self.app.flow_control.suspend()  # see 8.
        await resume(self, generation_id)

    return resume_suspended


# Both ways Faust's recovery ends: with tables, and without.
Recovery.on_recovery_completed = _suspend_flow_first(Recovery.on_recovery_completed)  # type: ignore[method-assign]
Recovery._resume_streams = _suspend_flow_first(Recovery._resume_streams)  # type: ignore[method-assign]


def _set_persisted_offset_without_log(self: RocksDBStore, tp: TP, offset: int) -> None:
    # See 15.: faust.stores.rocksdb.Store.set_persisted_offset, without the log.
    self._db_for_partition(tp.partition).put(
        self.offset_key, str(offset).encode(), disable_wal=True
    )


RocksDBStore.set_persisted_offset = _set_persisted_offset_without_log  # type: ignore[method-assign]


def _on_assignment_for_this_url(on_assignment: Any) -> Any:
    def on_assignment_checked(self: PartitionAssignor, assignment: Any) -> None:
        # See 19.: Faust's own decoding, to read the URL before its assert.
        metadata = ClientMetadata.loads(self._decompress(assignment.user_data))
        if metadata.url != str(self._url):
            for told in ASSIGNED_TO_ANOTHER_URL:
                told(str(metadata.url), str(self._url))
        on_assignment(self, assignment)

    return on_assignment_checked


PartitionAssignor.on_assignment = _on_assignment_for_this_url(PartitionAssignor.on_assignment)  # type: ignore[method-assign]


async def _start_tables_at_once(self: TableManager) -> None:
    # See 16.: faust.tables.manager.TableManager.on_start, without its sleep.
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


TableManager.on_start = _start_tables_at_once  # type: ignore[method-assign]
