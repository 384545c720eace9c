"""The intake's consumer of the input topic: librdkafka (confluent-kafka), used from the event loop.

Why not aiokafka, Faust's client: aiokafka parses every fetch response and
record batch in Python on the event loop the join shares. On 300,000 events
of ``make bench``'s mix it spent 5.8 µs of the loop's CPU per event to consume
(165,000 events/s), where librdkafka spent 2.4-2.7 µs of CPU in all, most
of it in its own fetcher threads, off the loop (420,000 events/s; one
process each, the same topic, 2026-12-01, ``/tmp`` micro-benchmark). Quix
Streams and Kafka Streams' peers in ``make bench`` read with such a client too.

What stays the intake's (:mod:`sysmon_faust.stream.intake`):

* the consumer group ``<app_id>-intake`` and its offsets, committed only by
  the intake once a batch's records are acknowledged (``enable.auto.commit``
  off), or in the intake's transaction under exactly_once (``read_committed``);
* rebalances happen between batches: librdkafka calls ``on_assign`` and
  ``on_revoke`` only inside :meth:`InputConsumer.batch`, which the intake
  calls when no batch is being read — the batch before is produced, and
  committed before its partitions go, if need be inside ``on_revoke``
  (:meth:`InputConsumer.commit_in_callback`, sent there and answered before
  librdkafka gives the partitions up; what aiokafka's listener did under a
  lock);
* pausing a partition that ran ahead (:mod:`sysmon_faust.core.alignment`):
  librdkafka drops what it had fetched of it and fetches again from the
  record after the last one handed out (librdkafka issues #2052, #2557), as
  aiokafka did. A partition stays paused across a rebalance in librdkafka
  (issue #1849), so a revoked one is resumed before it goes;
* one thread in the consumer at a time: since confluent-kafka 2.16 a call
  on a consumer waits, blocking its thread, while another thread is inside
  one (its reentrancy gate, confluent-kafka-python pull requests #2317,
  #2322). A batch's commit waits in a thread for the group coordinator, so
  the loop does not call the consumer meanwhile: :meth:`InputConsumer.batch`
  awaits the commit, ``highwater`` answers the end offsets taken right after
  the last ``consume()``, ``assignment`` what the rebalance callbacks left,
  and a pause or resume is applied before the next fetch. Before, a
  broker that hung (SIGSTOP) with a commit under way held the loop, and with
  it ``/health`` and the join, until the broker went on
  (tests/integration/test_health.py, CI of 2026-12-05);
* nothing after close: librdkafka's consumer crashes the process when it
  is used while (or after) it is closed (confluent-kafka-python issues
  #255, #1797). The intake is the only caller (its loop, and the task that
  commits a batch while the next is read); :meth:`InputConsumer.close` waits
  for the commit still in its thread, and after it every method is a
  no-op. Faust's services call ``on_stop`` before they cancel their tasks,
  so the intake ends its loop before it closes this (``Intake.on_stop``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

#: Seconds between two looks at librdkafka's queue while it is empty, and how
#: long :meth:`InputConsumer.batch` looks before it returns an empty batch
#: (aiokafka's ``getmany(timeout_ms=100)`` before).
IDLE_POLL_SECONDS: Final = 0.005
EMPTY_BATCH_AFTER_SECONDS: Final = 0.1
#: Commit errors that mean the group moved on: the offsets are not committed
#: and the partitions' next owner reads from the last committed ones again
#: (at-least-once). Any other commit error is the cluster's fault.
REBALANCED: Final = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)
#: Commit errors that mean the group coordinator could not take the commit
#: now: it is loading the group's offsets (right after a broker restart),
#: moved, or was out of reach. The offsets are not committed; the next batch
#: commits them further (at-least-once: a crash meanwhile replays more).
#: Kafka's Java consumer retries these too (``RetriableCommitFailedException``).
#: Seen after a broker restart in tests/integration/test_crash_recovery.py:
#: COORDINATOR_LOAD_IN_PROGRESS stopped the worker (exit 75) as a fault.
COORDINATOR_BUSY: Final = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError._TRANSPORT,
    }
)
#: Consume errors that stop the worker (a fault of the cluster or of the
#: settings, not of a record): what aiokafka raised from ``getmany``.
STOPS: Final = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
    }
)
#: What a commit's thread returns when ``still_wanted()`` said no (InputConsumer.commit).
_NOT_WANTED: Final = object()
#: A consume error that does not stop the worker is logged once per this many seconds.
WARN_EVERY_SECONDS: Final = 60.0


class StaticMemberFenced(KafkaException):
    """This static member fenced: a newer member joined the group with its
    ``group.instance.id`` (KIP-345; the broker's FENCED_INSTANCE_ID, error 82, which
    librdkafka makes a fatal error), most likely because two running workers share
    ``SYSMON_GROUP_INSTANCE_ID``.

    A fault of the settings, not of a record: it stops the worker like any
    other (:mod:`sysmon_faust.stream.faults`), with a line that says why and
    what to do where librdkafka says only what ("Static consumer fenced by
    other consumer with same group.instance.id", or for a commit after it
    "Local: Fatal error"). ``args[0]`` is librdkafka's ``KafkaError``, as in
    any ``KafkaException``; ``str()`` is the line.
    """

    def __str__(self) -> str:
        error: KafkaError = self.args[0]
        return (
            f"{error.str()} — this worker's SYSMON_GROUP_INSTANCE_ID was taken by another "
            "member of the intake's consumer group: most likely two running workers share "
            "the id, and each needs its own (docs/operations.md, Restarts without a "
            "rebalance); otherwise a restart takes it back"
        )


def _stops_worker(error: KafkaError) -> bool:
    """Whether a consume ``error`` stops the worker: one of ``STOPS``, or fatal.

    librdkafka's consumer hands a fatal error to ``consume()`` with the code
    ``_FATAL`` and ``fatal()`` False (confluent-kafka 2.x), its cause only in
    the text ("Fatal error: Broker: Static consumer fenced ..."); after it the
    consumer reads nothing more. Taken for a passing error, it left the intake
    retrying a dead consumer: a fenced static member stalled
    (tests/integration/test_input_consumer.py).
    """
    return error.fatal() or error.code() in STOPS or error.code() == KafkaError._FATAL


def _stop_exception(error: KafkaError, static: bool) -> KafkaException:
    """The exception a consume or commit ``error`` that stops the worker raises.

    ``static``: the consumer has a ``group.instance.id``. With the classic
    group protocol (the intake's) the one fatal error of a consumer is being
    fenced: a commit after it fails with ``_FATAL`` alone ("Local: Fatal
    error"), and one under way then with the broker's FENCED_INSTANCE_ID.
    """
    if static and error.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID):
        return StaticMemberFenced(error)
    return KafkaException(error)


def config(
    client: dict[str, Any], group: str, session_timeout_s: float, read_committed: bool,
    instance_id: str = "",
) -> dict[str, Any]:  # fmt: skip
    """librdkafka's consumer properties: ``client`` (``output_producer.client_config``: the
    cluster and its security) plus the intake's group and reading rules.

    ``session_timeout_s`` in seconds (``SYSMON_SESSION_TIMEOUT``, as Faust's consumer);
    ``instance_id``: the static member's (``SYSMON_GROUP_INSTANCE_ID``, KIP-345), or none.
    """
    properties = client | {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": int(session_timeout_s * 1000),
        "heartbeat.interval.ms": int(min(3.0, session_timeout_s / 3) * 1000),
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        # What librdkafka fetches ahead of the intake: ~15,000 events of ~1.1 KiB,
        # a batch of the intake's (at most 20,000; librdkafka's default is 64 MiB) ...
        "queued.max.messages.kbytes": 16 * 1024,
        "queued.min.messages": 15_000,
        # ... and once it holds that, it fetches again this soon after the
        # intake took some: at librdkafka's 1,000 ms the intake waited 60 ms
        # for every batch and read 30 % fewer events per second.
        "fetch.queue.backoff.ms": 10,
    }
    if instance_id:
        properties["group.instance.id"] = instance_id
    return properties


def position(message: Message) -> tuple[int, int]:
    """A record's (partition, offset) as :meth:`InputConsumer.batch` hands it out: both are
    set on a consumed record (confluent-kafka 2.16's types allow None, for a message that was
    not consumed)."""
    # Once per record on the intake's path: 148-154 ns a call against 90-91
    # for the two reads alone (timeit, 2026-12-04), of the ~90 us an event costs.
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    return partition, offset


def not_committed_now(error: KafkaError) -> bool:
    """Whether a commit that failed with ``error`` is simply not committed (:data:`REBALANCED`,
    :data:`COORDINATOR_BUSY`) rather than a fault of the cluster or the settings."""
    return error.code() in REBALANCED or error.code() in COORDINATOR_BUSY


class InputConsumer:
    """A librdkafka consumer of one topic in a consumer group, read in batches from the loop.

    ``on_assign`` and ``on_revoke`` get the partition numbers (``list[int]``)
    and run inside :meth:`batch`. Records are librdkafka's ``Message``
    (``value()``, ``offset()``, ``partition()``, ``timestamp()`` in ms).
    """

    def __init__(
        self,
        properties: dict[str, Any],
        topic: str,
        on_assign: Callable[[list[int]], None],
        on_revoke: Callable[[list[int]], None],
    ) -> None:
        self.topic = topic
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._consumer = confluent_kafka.Consumer(properties | {"on_commit": self._commit_answered})
        self._static = bool(properties.get("group.instance.id"))
        #: The partitions paused by pause() (what paused() answers) and those
        #: librdkafka has paused: they differ while a commit holds the handle.
        self._paused: set[int] = set()
        self._paused_in_librdkafka: set[int] = set()
        #: The end offsets taken right after the last consume() (highwater), and
        #: the assignment, kept by the rebalance callbacks: what the loop
        #: answers without a call into the handle, which a commit may hold.
        self._highwaters: dict[int, int] = {}
        self._assignment: set[int] = set()
        self._warned_at: dict[str, float] = {}
        self._closing = False
        #: A commit running in its thread (close waits for it).
        self._committing: asyncio.Future[Any] | None = None
        self._consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._closing:
            return
        assigned = [tp.partition for tp in partitions]
        self._assignment.update(assigned)
        self._on_assign(assigned)

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Inside consume(), on the loop (no commit holds the handle: batch), or
        # inside close(), on its thread.
        revoked = [tp.partition for tp in partitions]
        if still_paused := self._paused_in_librdkafka.intersection(revoked):
            self._consumer.resume([TopicPartition(self.topic, p) for p in still_paused])
        self._paused_in_librdkafka.difference_update(revoked)
        self._paused.difference_update(revoked)
        self._assignment.difference_update(revoked)
        for partition in revoked:
            self._highwaters.pop(partition, None)
        if not self._closing:
            self._on_revoke(revoked)

    def _handle_busy(self) -> bool:
        """Whether a commit's thread is inside the consumer: a call from the loop now would
        block it until the coordinator answers (confluent-kafka 2.16's gate)."""
        committing = self._committing
        return committing is not None and not committing.done()

    def _apply_pauses(self) -> None:
        # Only when the handle is free (not _handle_busy()).
        if to_pause := self._paused - self._paused_in_librdkafka:
            self._consumer.pause([TopicPartition(self.topic, p) for p in to_pause])
        if to_resume := self._paused_in_librdkafka - self._paused:
            self._consumer.resume([TopicPartition(self.topic, p) for p in to_resume])
        self._paused_in_librdkafka = set(self._paused)

    async def batch(self, max_records: int) -> list[Message]:
        """Up to ``max_records`` records in offset order per partition, as soon as there are
        some; an empty list after ``EMPTY_BATCH_AFTER_SECONDS`` without any.

        Raises ``confluent_kafka.KafkaException`` for a fatal error or one of
        ``STOPS`` (:class:`StaticMemberFenced` for a static member fenced); other
        errors (a broker away, a topic not there yet) are logged and retried by
        librdkafka.
        """
        give_up = time.monotonic() + EMPTY_BATCH_AFTER_SECONDS
        while not self._closing:
            committing = self._committing
            if committing is not None and not committing.done():
                # The commit's thread holds the handle: wait for it here, not
                # blocked in consume() (the module's docstring).
                left = give_up - time.monotonic()
                if left <= 0:
                    return []
                await asyncio.wait([committing], timeout=left)
                continue
            self._apply_pauses()
            # timeout 0: what librdkafka's fetchers have queued, at once. A
            # blocking consume would hold the loop, and in a thread it waits
            # for all max_records (or its timeout) before it returns.
            messages = self._consumer.consume(max_records, 0)
            if messages:
                self._note_highwaters()
                if any(message.error() is not None for message in messages):
                    return self._without_errors(messages)
                return messages
            if time.monotonic() >= give_up:
                return messages
            await asyncio.sleep(IDLE_POLL_SECONDS)
        return []

    def _without_errors(self, messages: list[Message]) -> list[Message]:
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif _stops_worker(error):
                raise _stop_exception(error, self._static)
            elif error.code() != KafkaError._PARTITION_EOF:
                now, text = time.monotonic(), error.str()
                if now - self._warned_at.get(text, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
                    self._warned_at[text] = now
                    log.warning("intake: reading %s: %s (retrying)", self.topic, text)
        return records

    async def commit(
        self, offsets: dict[int, int], still_wanted: Callable[[], bool] | None = None
    ) -> bool:
        """Commit ``{partition: next offset to read}`` and wait for the group coordinator.

        False: not committed, and not a fault (:func:`not_committed_now`): the
        group rebalanced meanwhile (the partitions' next owner reads from the
        last committed offsets), or the coordinator could not take it now (the
        next batch commits further), or ``still_wanted()`` said no in the thread,
        right before the commit (a revocation committed them meanwhile: see
        ``Intake._settle``). Raises ``confluent_kafka.KafkaException`` for any
        other failure.
        """
        if self._closing:
            return False
        partitions = [TopicPartition(self.topic, p, offset) for p, offset in offsets.items()]
        try:
            # In a thread: the coordinator's answer is a round trip, and the
            # join and the intake's processing go on meanwhile. The thread
            # holds the handle until the answer, and the loop's batch() waits
            # for it (module docstring), so no revocation comes in between
            # now; still_wanted is checked all the same, right before.
            self._committing = asyncio.get_running_loop().run_in_executor(
                None, self._commit_unless, partitions, still_wanted
            )
            # Shielded: a cancelled caller leaves the thread running, and close waits for it.
            answered = await asyncio.shield(self._committing)
        except KafkaException as exc:
            if not_committed_now(exc.args[0]):
                log.warning("intake: offsets %s not committed: %s", offsets, exc.args[0].str())
                return False
            raise _stop_exception(exc.args[0], self._static) from exc
        if answered is _NOT_WANTED:
            return False
        failed = [tp for tp in answered or [] if tp.error is not None]
        if failed:
            if all(not_committed_now(tp.error) for tp in failed):
                log.warning("intake: offsets %s not committed: %s", offsets, failed[0].error.str())
                return False
            raise _stop_exception(failed[0].error, self._static)
        return True

    def _commit_unless(
        self, partitions: list[TopicPartition], still_wanted: Callable[[], bool] | None
    ) -> Any:
        if still_wanted is not None and not still_wanted():
            return _NOT_WANTED
        return self._consumer.commit(offsets=partitions, asynchronous=False)

    def commit_in_callback(self, offsets: dict[int, int]) -> bool:
        """Commit ``{partition: next offset to read}`` from inside ``on_revoke``, without waiting
        for the group coordinator: True once the commit is sent, False when librdkafka refused it
        at once (logged).

        The commit goes on librdkafka's group queue before the unassign
        confluent-kafka makes once ``on_revoke`` returns, and librdkafka calls
        an assignment change done, and this member rejoins the group, only once
        no commit is outstanding (``wait_commit_cnt`` in
        ``rd_kafka_assignment_serve``, ``rdkafka_assignment.c``): the group's
        next generation, and the partitions' next owner, come after the answer,
        as with a commit that blocks. Should the group go on without this member
        meanwhile (its rebalance timeout), the broker refuses a commit of the
        generation before (ILLEGAL_GENERATION): the next owner reads the batch
        again, and no offset goes backwards, as before. Blocking is what this
        did until 2026-12-05: a round trip (~10 ms) on a healthy cluster, but
        with the coordinator away up to librdkafka's ``socket.timeout.ms``
        (60 s) on the loop's thread, when the join sends none of its heartbeats.
        From another thread, waited for up to 1 s, the commit had no answer
        within it (confluent-kafka 2.16's gate keeps another thread out while
        ``consume()`` runs the callback) and the partitions' next owner read the
        batch again (85 and 100 records written twice in two runs of
        tests/integration/test_scale_out.py). A refusal the coordinator sends is
        logged when the loop next reads, or at close (``on_commit``,
        :meth:`_commit_answered`); the batch is then read again by the next
        owner (at-least-once). Raises nothing: a callback's exception would
        surface from ``consume()`` in the middle of the rebalance.
        """
        partitions = [TopicPartition(self.topic, p, offset) for p, offset in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=True)
        except KafkaException as exc:
            log.warning("intake: offsets %s not committed at revocation: %s",
                        offsets, exc.args[0].str())  # fmt: skip
            return False
        return True

    def _commit_answered(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # librdkafka's offset_commit_cb, for the asynchronous commits alone
        # (commit_in_callback): a blocking commit has a queue of its own.
        partitions = partitions or []
        failed = [tp for tp in partitions if tp.error is not None]
        cause = error if error is not None else (failed[0].error if failed else None)
        if cause is not None:
            offsets = {tp.partition: tp.offset for tp in partitions}
            log.warning("intake: offsets %s not committed at revocation: %s",
                        offsets, cause.str())  # fmt: skip

    def group_metadata(self) -> Any:
        """The group's id, generation and member id, for offsets committed in a producer's
        transaction (``send_offsets_to_transaction``, KIP-447)."""
        # Under exactly_once only, which commits in its transactions: no
        # commit's thread is ever inside the handle then.
        assert not self._handle_busy()
        return self._consumer.consumer_group_metadata()

    def highwater(self, partition: int) -> int | None:
        """The partition's end offset as librdkafka knew it when :meth:`batch` last returned
        records (None: not known yet): never below what that batch read of it."""
        if self._closing:
            return None
        return self._highwaters.get(partition)

    def _note_highwaters(self) -> None:
        # Right after consume(), with no commit inside the handle (batch): a
        # look taken later, once a commit's thread held it, could only be an
        # older one, below the records just read, and the intake would take
        # a partition with more to come for one read to its end (its lag,
        # its links' watermark, the alignment's wait).
        for partition in self._assignment:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), cached=True
            )
            if high >= 0:
                self._highwaters[partition] = high
            else:
                self._highwaters.pop(partition, None)

    def assignment(self) -> set[int]:
        """The partitions this consumer holds now, as the rebalance callbacks left them (they
        run only inside :meth:`batch`)."""
        if self._closing:
            return set()
        return set(self._assignment)

    def paused(self) -> set[int]:
        """The partitions paused by :meth:`pause`."""
        return set(self._paused)

    def pause(self, partitions: set[int]) -> None:
        """Stop fetching ``partitions`` (before the next :meth:`batch` reads, at the latest);
        what was fetched of them is dropped."""
        if self._closing:
            return
        self._paused |= partitions
        if not self._handle_busy():
            self._apply_pauses()

    def resume(self, partitions: set[int]) -> None:
        """Fetch ``partitions`` again, from the record after the last one handed out (at the
        next :meth:`batch` at the latest)."""
        if self._closing:
            return
        self._paused -= partitions
        if not self._handle_busy():
            self._apply_pauses()

    async def close(self) -> None:
        """Leave the group (its partitions go to the others at once; a static member's,
        ``group.instance.id``, after the session timeout) and stop librdkafka.

        In a thread, which librdkafka's last revocation runs in: the intake
        is not called from there (it is stopping, and it lives on the loop).
        """
        if self._closing:
            return
        self._closing = True
        if self._committing is not None:
            await asyncio.wait([self._committing])
        await asyncio.to_thread(self._consumer.close)
