"""The join agent: records of the re-keying topic through the join engine, and what it makes, out.

What the join decides is :mod:`sysmon_faust.core.join.engine`'s, the same
engine ``rules test`` runs; this agent decodes each record, hands its events
to the engine, sends what the engine made (to the outputs, the dead-letter
topic, the process-tree topic and the tables' changelogs), and acknowledges.

It reads ``<app_id>-events-by-process-guid``, which :mod:`sysmon_faust.stream.intake`
fills with Sysmon 1, 3 and 5 partitioned by process_guid, in batch records
(:mod:`sysmon_faust.core.rekey`). Guarantees that shape it:

* Order: every event of a process arrives through the same partition of that
  one topic, in the order the intake read them, so a creation is in the table
  before a connect that followed it is looked up — at any speed.
* Out of order: a connect whose process is not in the table yet waits in the
  grace buffer for up to ``SYSMON_JOIN_GRACE`` of stream time. Its creation
  releases it, joined, in event-time order; otherwise it expires to
  ``sysmon-network-unmatched`` (``process_unknown_after_grace``).
* Bounded: rows go a retention after their process ended, or a TTL after
  they were written. Expiry reads a time-ordered index after every record
  (:mod:`sysmon_faust.core.join.state`); ticks (:mod:`sysmon_faust.stream.ticks`) give a quiet
  partition a record to run it in.
* Nothing a record contains may stop the agent: an event the join cannot
  handle becomes a dead letter; the rest of its batch goes on. A fault of
  the machine or the cluster (RocksDB, the disk, Kafka after its retries) is
  no record's: it stops the worker at that record, unacknowledged
  (:mod:`sysmon_faust.stream.faults`).
* Offsets are committed only after the agent has handled a whole batch and the
  records it sent — outputs and changelog writes — are flushed
  (:func:`_settle_before_commit`), so a crash replays rather than loses
  (at-least-once). State a
  replay could not rebuild — a waiting connect handed out — is deleted only
  after its record is acknowledged (:meth:`JoinState.settle`).
* Ancestry: each enriched record carries the process's ancestors, read from
  this worker's copy of the whole process tree — never from another worker
  (:mod:`sysmon_faust.stream.tree_replica`); the rules of ``SYSMON_RULES`` see them.
  A join whose ancestor's link may still be in flight is parked, never
  awaited: the agent goes on with the next record (:mod:`sysmon_faust.core.join.parking`).
* Speed: rows travel as JSON bytes and dicts, and outputs go straight to
  a producer — no ``faust.Record`` and no Topic/Channel layer per event
  (see :mod:`sysmon_faust.core.join.semantics`; measured with ``make bench``);
  under at_least_once, librdkafka's (:mod:`sysmon_faust.stream.output_producer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust import StreamT
from faust.types import TP, EventT

from sysmon_faust import engine_limits
from sysmon_faust.compat import faust_fixes
from sysmon_faust.core import deadletter
from sysmon_faust.core.clock import record_timestamp_ms
from sysmon_faust.core.join.engine import (
    ALERTS,
    ENRICHED,
    JOINED,
    REKEYED,
    UNMATCHED,
    JoinEngine,
    Output,
)
from sysmon_faust.core.join.state import JoinState
from sysmon_faust.core.rekey import BatchBuilder, decode_batch
from sysmon_faust.core.stats import stats
from sysmon_faust.stream import (
    detections,
    faults,
    output_producer,
    ticks,
    transactional_producer,
    transactions,
)
from sysmon_faust.stream.output_producer import Delivery
from sysmon_faust.stream.store import RocksDBTable
from sysmon_faust.stream.topology import (
    MAX_RECORD_BYTES,
    app,
    events_by_guid_topic,
    expiry_index,
    pending_table,
    process_table,
    settings,
    tree_replica,
)

log = logging.getLogger(__name__)

RULES = detections.RULES

EXACTLY_ONCE = settings.processing_guarantee == transactions.EXACTLY_ONCE
if EXACTLY_ONCE:
    # Each re-keying partition's transaction on librdkafka (faust_fixes, 12.).
    faust_fixes.TRANSACTION_PRODUCER.append(
        transactional_producer.faust_transaction_producers(settings, MAX_RECORD_BYTES)
    )
outputs = transactions.Outputs(
    app, settings.topic_by_guid, EXACTLY_ONCE,
    output_producer.OutputProducer(
        output_producer.config(settings, f"{settings.app_id}-join-outputs", MAX_RECORD_BYTES)
    ),
)  # fmt: skip
#: The tables as the join's stores; each writes the changelog of its Faust table.
STORES = (RocksDBTable(process_table), RocksDBTable(pending_table), RocksDBTable(expiry_index))
state = JoinState(*STORES, engine_limits.lifetimes(settings))
engine = JoinEngine(state, tree_replica, RULES, engine_limits.limits(settings), stats)
#: Where each of the engine's outputs goes.
TOPICS = {JOINED: settings.topic_join, UNMATCHED: settings.topic_unmatched,
          ALERTS: settings.topic_alerts, ENRICHED: settings.topic_enriched,
          REKEYED: settings.topic_by_guid}  # fmt: skip
#: Per partition of the re-keying topic: the offset of the last record handled.
handled_up_to: dict[int, int] = {}
#: The outputs and changelog writes sent while the current record is handled
#: (under at_least_once, what the connects it hands out wait for: JoinState.seal).
sent_by_record: list[Any] = []


@app.on_partitions_revoked.connect
async def _forget_state(*args: Any, **kwargs: Any) -> None:
    # Faust revokes every partition before each new assignment (eager
    # rebalancing): what this worker counted may be another's now. Faust has
    # flushed and committed: what was handed out is settled first, durably,
    # or the partition's next owner would hand it out again.
    if not EXACTLY_ONCE:
        await _settle_before_commit()
    engine.forget()
    sent_by_record.clear()
    handled_up_to.clear()  # after the rebalance: from the committed offsets again


async def send_dead_letter(event: EventT, raw: bytes | None, error: str) -> None:
    message = event.message
    letter = deadletter.dead_letter(raw, error, message.topic, message.partition, message.offset)
    sent = await outputs.send(settings.topic_dlq, None, letter.dumps(), message.partition)
    faults.faults.watch_send("join", sent, log)
    stats.dead_lettered += 1


async def _send(
    made: list[Output], partition: int, hops: BatchBuilder, group: Delivery | None
) -> None:
    # Flushed before each commit (_settle_before_commit); under
    # exactly_once, in the transaction of the source partition. Every send
    # reports to the record's group (_handle).
    now_ms = int(time.time() * 1000)
    for output in made:
        if not output.written:
            continue
        value = orjson.dumps(output.row)
        if output.topic == REKEYED:
            # A Sysmon 8/10's hop to its target's partition: batched per
            # partition like the intake's records (_send_hops).
            assert output.partition is not None
            hops.add(output.partition, value)
            continue
        timestamp_ms = record_timestamp_ms(int(output.timestamp * 1000), now_ms)
        topic = TOPICS[output.topic]
        sent = outputs.send_nowait(topic, output.key, value, partition, timestamp_ms,
                                   output.partition, group)  # fmt: skip
        if sent is None:
            sent = await outputs.send(topic, output.key, value, partition, timestamp_ms,
                                      output.partition, group)  # fmt: skip
        if group is None:
            _watch(sent)


async def _send_hops(hops: BatchBuilder, partition: int, group: Delivery | None) -> None:
    """The record's Sysmon 8/10 hops (``engine.REKEYED``), one re-keying record per target
    partition (a JSON array, as the intake writes; up to ``rekey.MAX_BATCH_BYTES`` each).

    One Kafka record per hop made every Sysmon 10 whose target lives in another
    partition pay a whole record's way through Faust and the join: of the
    13,891 re-keying records the join read for 200 k events of make bench's
    mix, 12,371 were single hops; batched, 5,711, and 88.3 -> 83.1 µs per
    event (docs/benchmark.md). Stamped now, as the intake's batches: the
    events keep their own time in their fields.
    """
    for target_partition, value in hops.finish():
        sent = await outputs.send(settings.topic_by_guid, None, value, partition, None,
                                  target_partition, group)  # fmt: skip
        if group is None:
            _watch(sent)


def _watch(sent: Any) -> None:
    faults.faults.watch_send("join", sent, log)
    sent_by_record.append(sent)


@app.task
async def read_process_tree() -> None:
    """This worker's copy of the process tree, filled for as long as it runs."""
    while True:
        try:
            await tree_replica.run(app.conf.datadir / "process-tree")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if faults.is_own_fault(exc) and not isinstance(exc, KafkaError):
                # Its RocksDB failed (a full disk): joins would go on with
                # ancestry it cannot store.
                await faults.stop_worker("process-tree copy", tree_replica.topic, exc, log)
            # Without its copy the join would lose ancestry, not events: log
            # loudly and read again.
            log.exception("process-tree copy failed; reading again in 5 s")
            await asyncio.sleep(5)


async def _tree_caught_up() -> None:
    # Joins made before the copy has read what the topic held would miss
    # ancestors that are there to be read.
    while True:
        try:
            await asyncio.wait_for(tree_replica.caught_up.wait(), 30)
            return
        except TimeoutError:
            log.warning("join waits for the process-tree copy to read %s", tree_replica.topic)


@app.agent(events_by_guid_topic, name="join-by-process-guid")
async def join_by_process_guid(stream: StreamT[bytes]) -> None:
    """The stream-table join, one process_guid partition at a time (see the module docstring)."""
    await _tree_caught_up()
    async for event in stream.events():
        await faults.hold_if_stopping()
        message = event.message
        if faust_fixes.drop_if_fetched_before_seek(app, message):
            # Fetched before a rebalance's seek, which brings it again (faust_fixes, 9.).
            stats.dropped_before_seek += 1
            continue
        if message.offset <= handled_up_to.get(message.partition, -1):
            # Read twice by Faust when a worker starts (sysmon_faust.compat.faust_fixes,
            # 8.): handled already.
            continue
        handled_up_to[message.partition] = message.offset
        # Under exactly_once, all a record makes goes in one transaction with
        # the offset after it, or none (sysmon_faust.stream.transactions): the record
        # is acknowledged before the transaction may be committed.
        async with outputs.whole_record(event.message.partition):
            try:
                await _handle(event)
            except faults.OWN_FAULTS as exc:
                # Not the record's fault: no dead letter, not acknowledged.
                await faults.stop_worker("join", _where(event), exc, log)
            event.ack()


async def _handle(event: EventT) -> None:
    try:
        batch = decode_batch(event.value)
    except ValueError as exc:
        await send_dead_letter(event, event.value, f"join error: {exc}")
        return
    # What the record makes but its changelog writes is one group of
    # deliveries, watched and waited for as one (output_producer).
    group = outputs.group(event.message.partition)
    try:
        await _handle_batch(event, batch, group)
    finally:
        if group is not None:
            group.close()
    if not EXACTLY_ONCE:
        state.seal(list(sent_by_record))
    sent_by_record.clear()


async def _handle_batch(event: EventT, batch: list[dict[str, Any]], group: Delivery | None) -> None:
    if group is not None:
        _watch(group)
    message = event.message
    partition = message.partition
    wall_ms = int(time.time() * 1000)
    hops = BatchBuilder()
    for index, fields in enumerate(batch):
        try:
            made = engine.handle(fields, partition, (message.offset, index), wall_ms)
        except Exception as exc:
            if faults.is_own_fault(exc):
                raise
            log.exception("join-by-process-guid: an event of %s failed", _where(event))
            error = f"join error: {type(exc).__name__}: {exc}"
            await send_dead_letter(event, orjson.dumps(fields), error)
            continue
        await _send(made, partition, hops, group)
        if faults.faults.stopping:  # inline: no coroutine per event on the hot path
            # Another part stopped the worker while this one waited: no more
            # RocksDB writes (faults.hold_if_stopping).
            await faults.hold_if_stopping()
    try:
        await _send(engine.after_record(partition, wall_ms), partition, hops, group)
    except Exception as exc:
        if faults.is_own_fault(exc):
            raise
        # What is due stays due: the next record of the partition tries again.
        log.exception("join-by-process-guid: releasing or expiring on %s failed", _where(event))
    await _send_hops(hops, partition, group)
    await faults.hold_if_stopping()  # as after each event's sends
    # Waiting connects released or expired by this record leave the buffer
    # only once their records are acknowledged: under exactly_once the
    # deletes share their records' transaction; under at_least_once they are
    # made by a later record, once Kafka acknowledged (JoinState.seal).
    if EXACTLY_ONCE:
        if state.must_settle():
            state.settle()
    else:
        state.settle_acknowledged()
    tree_topic = settings.topic_process_tree
    for tree_partition, key, link in state.take_tree_changes():
        sent = outputs.send_nowait(tree_topic, key, link, partition, None, tree_partition, group)
        if sent is None:
            sent = await outputs.send(tree_topic, key, link, partition, None, tree_partition,
                                      group)  # fmt: skip
        if group is None:
            faults.faults.watch_send("join", sent, log)
    for store, changes in state.unsent_changes():
        for sent in await outputs.send_changelog(_table(store), changes):
            faults.faults.watch_send("join", sent, log)
            sent_by_record.append(sent)
    outputs.note_persisted()


async def _settle_before_commit() -> None:
    """Before Faust commits (at_least_once): settle every acknowledged hand-out, durably.

    Faust has just flushed its producer, and the outputs' producer is
    flushed first here, so the records of every record it is about to
    commit are acknowledged: their waiting connects' and parked
    joins' entries are deleted now, and those deletes acknowledged before
    the offsets go (faust_fixes, 11.). Left to a later record, a rebalance
    or a crash right after the commit would leave them for good: a joined
    connect expired again as unmatched, a parked join emitted twice.
    """
    await outputs.flush()
    # The worker may have stopped on a fault meanwhile (a full disk): the
    # writes below could block the loop for good (faults.hold_if_stopping).
    await faults.hold_if_stopping()
    state.settle_acknowledged()
    # The activity summaries kept since the last commit: written with it, so
    # that what a crash replays is what they do not include.
    try:
        state.flush_activity()
    except faults.OWN_FAULTS as exc:
        # A full disk, say: the commit waits for ever (the worker exits).
        await faults.stop_worker("join", "the activity summaries before a commit", exc, log)
    try:
        for store, changes in state.unsent_changes():
            for sent in await outputs.send_changelog(_table(store), changes):
                faults.faults.watch_send("join", sent, log)  # a failure stops the worker
    except faults.OWN_FAULTS as exc:
        # Refused at once (a value over message.max.bytes): the changes are
        # taken, so this commit and every later one must not go.
        await faults.stop_worker("join", "the changelog writes before a commit", exc, log)
    await outputs.flush()  # these writes too, before the offsets go
    outputs.note_persisted()


async def _flush_activity_in_transaction(offsets: Mapping[TP, int]) -> None:
    """Before Faust commits a partition's transaction (exactly_once): that partition's activity
    summaries, in the transaction, with the offsets of the records they include."""
    partitions = {tp.partition for tp in offsets if tp.topic == settings.topic_by_guid}
    await faults.hold_if_stopping()  # as in _settle_before_commit
    state.flush_activity(partitions)
    for store, changes in state.unsent_changes():
        for sent in await outputs.send_changelog(_table(store), changes):
            faults.faults.watch_send("join", sent, log)
    outputs.note_persisted()


if EXACTLY_ONCE:
    faust_fixes.BEFORE_TRANSACTION_COMMIT.append(_flush_activity_in_transaction)
else:
    faust_fixes.BEFORE_COMMIT.append(_settle_before_commit)


@app.timer(interval=0.1)
async def wake_parked() -> None:
    """A tick to each partition whose parked joins may be released: only a record of it can."""
    now_ms = int(time.time() * 1000)
    for partition in engine.parked.partitions():
        if engine.parked.due_for_a_look(partition, tree_replica.version, now_ms):
            await ticks.send_tick(partition)


def _table(store: Any) -> Any:
    """The Faust table whose changelog a store of :data:`STORES` writes."""
    return store.table


def _where(event: EventT) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"
