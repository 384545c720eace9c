"""The join agent: ProcessCreate rows into the table, NetworkConnects joined against it.

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
  records it sent are flushed (Faust flushes its producer before every
  commit), so a crash replays rather than loses (at-least-once). State a
  replay could not rebuild — a waiting connect handed out — is deleted only
  after its record is acknowledged (:meth:`JoinState.settle`).
* Ancestry: each enriched record carries the process's ancestors, read from
  this worker's copy of the whole process tree — never from another worker
  (:mod:`sysmon_faust.stream.tree_replica`); the rules of ``SYSMON_RULES`` see them.
  A join whose ancestor's link may still be in flight is parked, never
  awaited: the agent goes on with the next record (:mod:`sysmon_faust.core.join.parking`).
* Speed: rows travel as JSON bytes and dicts, and outputs go straight to
  Faust's producer — no ``faust.Record`` and no Topic/Channel layer per event
  (see :mod:`sysmon_faust.core.join.semantics`; measured with ``make bench``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust import StreamT
from faust.types import EventT

from sysmon_faust.compat import faust_fixes
from sysmon_faust.core import alert_groups, deadletter, guid_time, rules
from sysmon_faust.core.clock import record_timestamp_ms, utc_now_iso
from sysmon_faust.core.join import grace, parking
from sysmon_faust.core.join.semantics import (
    NO_PROCESS_GUID,
    PROCESS_UNKNOWN,
    Row,
    enrich,
    unmatched,
)
from sysmon_faust.core.join.state import JoinState, Lifetimes
from sysmon_faust.core.normalize import NETWORK_CONNECT, PROCESS_CREATE, PROCESS_TERMINATE
from sysmon_faust.core.rekey import (
    EVENT_ID_FIELD,
    EVENT_TIME_FIELD,
    RECEIVED_FIELD,
    TICK,
    decode_batch,
)
from sysmon_faust.core.stats import stats
from sysmon_faust.stream import faults, ticks, transactions
from sysmon_faust.stream.store import RocksDBTable
from sysmon_faust.stream.topology import (
    app,
    events_by_guid_topic,
    expiry_index,
    pending_table,
    process_table,
    settings,
    tree_replica,
)

log = logging.getLogger(__name__)

#: The detection rules. A bad rule raises RuleError here, which the worker's
#: entry point (sysmon_faust.__getattr__) reports in one line naming the
#: rule and the field: the worker must not start without the detections it
#: was given.
RULES = rules.load_rules(settings.rules_path)

EXACTLY_ONCE = settings.processing_guarantee == transactions.EXACTLY_ONCE
outputs = transactions.Outputs(app, settings.topic_by_guid, EXACTLY_ONCE)
#: The tables as the join's stores, each with the Faust table whose changelog it writes.
STORES = {
    "rows": RocksDBTable(process_table),
    "pending": RocksDBTable(pending_table),
    "index": RocksDBTable(expiry_index),
}
state = JoinState(
    STORES["rows"],
    STORES["pending"],
    STORES["index"],
    Lifetimes(
        grace=grace.GraceLimits(
            grace_ms=int(settings.join_grace * 1000),
            max_per_process=settings.pending_per_process,
            max_total=settings.pending_max,
        ),
        retention_ms=int(settings.table_retention * 1000),
        ttl_ms=int(settings.table_ttl * 1000),
    ),
)
#: Joins parked until their ancestry is settled, per partition and process.
parked = parking.Parking()
#: Joins parked on one worker at most: past that, a join whose ancestor may
#: still come is emitted with the ancestry known, and a process with parked
#: joins has them released first (counted): a flood of such joins costs
#: ancestry, never memory. Each look at a partition's parked joins walks
#: each parked process once: at most this many walks (~7 µs each).
PARKED_AT_MOST = 10_000
#: Per partition of the re-keying topic: the offset of the last record handled.
handled_up_to: dict[int, int] = {}
#: The outputs and changelog writes sent while the current record is handled
#: (under at_least_once, what the connects it hands out wait for: JoinState.seal).
sent_by_record: list[Any] = []
#: Entries expired per record at most, so a partition whose stream time jumps
#: (a long-idle partition, a replay) does not hold the agent for long; the
#: rest go with the next records.
EXPIRE_AT_MOST = 2_000


@app.on_partitions_revoked.connect
async def _forget_state(*args: Any, **kwargs: Any) -> None:
    # Faust revokes every partition before each new assignment (eager
    # rebalancing): what this worker counted may be another's now. Faust has
    # flushed and committed: what was handed out is settled first, durably,
    # or the partition's next owner would hand it out again.
    if not EXACTLY_ONCE:
        await _settle_before_commit()
    state.forget()
    parked.forget()
    sent_by_record.clear()
    handled_up_to.clear()  # after the rebalance: from the committed offsets again


async def send_dead_letter(event: EventT, raw: bytes | None, error: str) -> None:
    message = event.message
    letter = deadletter.dead_letter(raw, error, message.topic, message.partition, message.offset)
    sent = await outputs.send(settings.topic_dlq, None, letter.dumps(), message.partition)
    faults.faults.watch_send("join", sent, log)
    stats.dead_lettered += 1


async def _send(topic: str, key: bytes | None, row: Row, timestamp: float, partition: int) -> None:
    # Faust's own producer, so its flush-before-commit covers these records;
    # under exactly_once, in the transaction of the source partition.
    now_ms = int(time.time() * 1000)
    timestamp_ms = record_timestamp_ms(int(timestamp * 1000), now_ms)
    sent = await outputs.send(topic, key, orjson.dumps(row), partition, timestamp_ms / 1000)
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
    message = event.message
    wall_ms = int(time.time() * 1000)
    if not parked.loaded(message.partition):
        # After an assignment: the joins this partition's last owner parked.
        unreadable = parked.load(message.partition, state.parked(message.partition))
        for key, error in unreadable:
            log.error("parked join %r of partition %d unreadable, dropped: %s",
                      key, message.partition, error)  # fmt: skip
    for index, fields in enumerate(batch):
        try:
            await _join_one(fields, message.partition, (message.offset, index), wall_ms)
        except Exception as exc:
            if faults.is_own_fault(exc):
                raise
            log.exception("join-by-process-guid: an event of %s failed", _where(event))
            error = f"join error: {type(exc).__name__}: {exc}"
            await send_dead_letter(event, orjson.dumps(fields), error)
    for step in (_release_parked, _expire_due):
        try:
            await step(message.partition, wall_ms)
        except Exception as exc:
            if faults.is_own_fault(exc):
                raise
            # What is due stays due: the next record of the partition tries again.
            log.exception("join-by-process-guid: %s on %s failed", step.__name__, _where(event))
    # Waiting connects released or expired by this record leave the buffer
    # only once their records are acknowledged: under exactly_once the
    # deletes share their records' transaction; under at_least_once they are
    # made by a later record, once Kafka acknowledged (JoinState.seal).
    if EXACTLY_ONCE:
        if state.must_settle():
            state.settle()
    else:
        state.settle_acknowledged()
    for partition, key, link in state.take_tree_changes():
        tree_topic = settings.topic_process_tree
        sent = await outputs.send(tree_topic, key, link, message.partition, None, partition)
        faults.faults.watch_send("join", sent, log)
    for store, changes in state.unsent_changes():
        for sent in await outputs.send_changelog(_table(store), changes):
            faults.faults.watch_send("join", sent, log)
            sent_by_record.append(sent)
    outputs.note_persisted()
    if not EXACTLY_ONCE:
        state.seal(list(sent_by_record))
    sent_by_record.clear()


async def _join_one(fields: Row, partition: int, position: tuple[int, int], wall_ms: int) -> None:
    event_id = fields.pop(EVENT_ID_FIELD)
    if event_id == TICK:
        return  # only there to run expiry on a quiet partition
    received = fields.pop(RECEIVED_FIELD, None)
    event_time_ms = fields.pop(EVENT_TIME_FIELD)
    stream_time = state.stream_time(partition, wall_ms, event_time_ms)
    timestamp = event_time_ms / 1000
    if event_id == PROCESS_CREATE:
        key = fields["process_guid"].encode()
        state.put_row(partition, key, fields, stream_time)
        stats.process_creates += 1
        for waited in state.release(fields["process_guid"], partition):
            stats.network_connects_released += 1
            await _join(
                waited.connect, fields, waited.event_time_ms, None, partition, waited.position
            )
        return
    if event_id == PROCESS_TERMINATE:
        stats.process_terminates += 1
        key = fields["process_guid"].encode()
        # The row stays for the retention: connects logged after the process
        # ended (or read after its end) still join.
        ended_at = fields["event_date_creation"]
        if not state.mark_terminated(partition, key, ended_at, stream_time):
            stats.terminated_unknown += 1  # it started before the pipeline saw it
        return
    if event_id != NETWORK_CONNECT:
        raise ValueError(f"unexpected event id {event_id!r}")

    stats.network_connects += 1
    guid: str | None = fields.get("process_guid")
    if guid is None:
        await _emit_unmatched(fields, None, NO_PROCESS_GUID, timestamp, partition)
        return
    key = guid.encode()
    stored = state.row(partition, key)
    grace_ms = state.lifetimes.grace.grace_ms
    if stored is not None:
        await _join(fields, orjson.loads(stored), event_time_ms, received, partition, position)
    elif not grace_ms:
        await _emit_unmatched(fields, key, PROCESS_UNKNOWN, timestamp, partition)
    elif not grace.creation_may_still_come(_start_ms(guid, event_time_ms), event_time_ms, grace_ms):
        await _emit_unmatched(fields, key, grace.STARTED_BEFORE_GRACE, timestamp, partition)
    elif not state.wait(fields, event_time_ms, position, partition, stream_time):
        await _emit_unmatched(fields, key, grace.OVERFLOW, timestamp, partition)


async def _join(
    connect: Row, process: Row, event_time_ms: int, received: float | None, partition: int,
    position: tuple[int, int],
) -> None:  # fmt: skip
    """Emit the connect joined with its process — or park it while an ancestor may still come."""
    guid = process["process_guid"]
    behind = parked.holds(partition, guid)
    if behind and (behind >= settings.pending_per_process or parked.count() >= PARKED_AT_MOST):
        # Parking is bounded per process (like waiting connects) and per
        # worker: the process's parked joins go now, with the ancestry known.
        stats.ancestry_parking_full += 1
        await _release(partition, guid, int(time.time() * 1000), timed_out=False)
        behind = 0
    if not behind:
        walk = tree_replica.walk(process, settings.ancestry_depth)
        if not _may_come(walk.unknown, event_time_ms):
            await _emit_joined(
                connect, process, walk.ancestors, event_time_ms / 1000, received, partition
            )
            return
        if parked.count() >= PARKED_AT_MOST:
            stats.ancestry_parking_full += 1
            await _emit_joined(
                connect, process, walk.ancestors, event_time_ms / 1000, received, partition
            )
            return
    # Parked, and behind its process's parked joins: released in order.
    now_ms = int(time.time() * 1000)
    join = parking.ParkedJoin(
        key=parking.parked_key(guid, event_time_ms, *position),
        connect=connect,
        process=process,
        event_time_ms=event_time_ms,
        received=received,
        parked_at_ms=now_ms,
        deadline_ms=now_ms + int(settings.ancestry_wait * 1000),
    )
    if parked.park(partition, join):
        state.park(partition, join)
        stats.ancestry_waits += 1


def _start_ms(guid: str, event_time_ms: int) -> int | None:
    """The start time in ``guid`` if plausible for the event (counted when not)."""
    start = guid_time.plausible_start_ms(guid, event_time_ms)
    if start.implausible is not None:
        stats.guid_start_time_implausible[start.implausible] += 1
    return start.ms


def _may_come(ancestor: str | None, event_time_ms: int) -> bool:
    """Whether the link of the ancestor a walk stopped at may still come (so: park)."""
    if ancestor is None or not settings.ancestry_wait:
        return False
    return tree_replica.may_come(ancestor, _start_ms(ancestor, event_time_ms))


async def _release_parked(partition: int, wall_ms: int) -> None:
    """Release the parked joins of ``partition`` whose ancestry is settled or whose wait is over."""
    if not parked.due_for_a_look(partition, tree_replica.version, wall_ms):
        return
    parked.looked(partition, tree_replica.version, wall_ms)
    for guid, joins in parked.processes(partition):
        timed_out = min(join.deadline_ms for join in joins) <= wall_ms
        if not timed_out:
            walk = tree_replica.walk(joins[0].process, settings.ancestry_depth)
            if _may_come(walk.unknown, joins[0].event_time_ms):
                continue
        await _release(partition, guid, wall_ms, timed_out)


async def _release(partition: int, guid: str, wall_ms: int, timed_out: bool) -> None:
    """Emit every parked join of the process, in order, with the ancestry known now."""
    joins = parked.take(partition, guid)
    if not joins:
        return
    ancestors = tree_replica.walk(joins[0].process, settings.ancestry_depth).ancestors
    for join in joins:
        # Its record leaves the table once the joined record is in Kafka (settle).
        state.unpark(partition, join.key)
        stats.ancestry_wait_timeouts += timed_out
        waited_s = max(wall_ms - join.parked_at_ms, 0) / 1000
        stats.ancestry_wait_seconds[partition] = (
            stats.ancestry_wait_seconds.get(partition, 0.0) + waited_s
        )
        await _emit_joined(
            join.connect, join.process, ancestors, join.event_time_ms / 1000, join.received,
            partition,
        )  # fmt: skip


async def _settle_before_commit() -> None:
    """Before Faust commits (at_least_once): settle every acknowledged hand-out, durably.

    Faust has just flushed its producer, so the records of every record it
    is about to commit are acknowledged: their waiting connects' and parked
    joins' entries are deleted now, and those deletes acknowledged before
    the offsets go (faust_fixes, 11.). Left to a later record, a rebalance
    or a crash right after the commit would leave them for good: a joined
    connect expired again as unmatched, a parked join emitted twice.
    """
    state.settle_acknowledged()
    sent = []
    for store, changes in state.unsent_changes():
        sent += await outputs.send_changelog(_table(store), changes)
    for one in sent:
        faults.faults.watch_send("join", one, log)  # a failure stops the worker: no commit
    await asyncio.gather(*sent, return_exceptions=True)
    outputs.note_persisted()


if not EXACTLY_ONCE:
    faust_fixes.BEFORE_COMMIT.append(_settle_before_commit)


@app.timer(interval=0.1)
async def wake_parked() -> None:
    """A tick to each partition whose parked joins may be released: only a record of it can."""
    now_ms = int(time.time() * 1000)
    for partition in parked.partitions():
        if parked.due_for_a_look(partition, tree_replica.version, now_ms):
            await ticks.send_tick(partition)


async def _emit_joined(
    connect: Row, process: Row, ancestors: list[Row], timestamp: float, received: float | None,
    partition: int,
) -> None:  # fmt: skip
    enriched = enrich(connect, process, ancestors)
    key = enriched["process_guid"].encode()
    await _send(settings.topic_join, key, enriched, timestamp, partition)
    stats.joined += 1
    now = time.time()
    stats.event_age.observe(max(now - timestamp, 0.0))
    if received is not None:
        stats.processing_latency.observe(max(now - received, 0.0))
    for rule in rules.matching_rules(enriched, RULES):
        stats.alert_matches += 1
        stats.alerts_by_rule[rule.rule_id] += 1
        await _alert(rule, enriched, int(timestamp * 1000), partition)


async def _alert(rule: rules.Rule, enriched: Row, event_time_ms: int, partition: int) -> None:
    """Alert on a match at once, or count it into its rule's open group on the process.

    See sysmon_faust.core.alert_groups: the group's update goes out when its
    window closes (_expire_due).
    """
    key = enriched["process_guid"].encode()
    timestamp = event_time_ms / 1000
    window_ms = int(settings.alert_window * 1000)
    stream_time = state.stream_time(partition, int(time.time() * 1000), event_time_ms)
    if window_ms:
        found = state.open_alert_group(
            partition, rule.rule_id, enriched["process_guid"], stream_time
        )
        if found is not None:
            group_key, group = found
            alert_groups.add_match(group, enriched, event_time_ms)
            state.keep_alert_group(partition, group, group_key)
            stats.alert_matches_grouped += 1
            return
    alert = rules.alert_record(rule, enriched, utc_now_iso())
    group = alert_groups.open_group(alert, event_time_ms, stream_time, window_ms)
    if window_ms:
        state.keep_alert_group(partition, group)
    await _send(settings.topic_alerts, key, alert_groups.first_alert_record(group), timestamp,
                partition)  # fmt: skip
    stats.alerts += 1


async def _emit_unmatched(
    connect: Row, key: bytes | None, reason: str, timestamp: float, partition: int
) -> None:
    await _send(settings.topic_unmatched, key, unmatched(connect, reason), timestamp, partition)
    stats.unmatched += 1
    stats.unmatched_by_reason[reason] += 1


async def _expire_due(partition: int, wall_ms: int) -> None:
    """Let go of the waiting connects and rows of ``partition`` whose time has come."""
    stream_time = state.stream_time(partition, wall_ms)
    if stream_time < 0:
        return
    state.keep_stream_time(partition, stream_time)
    expired = state.expire_due(partition, stream_time, EXPIRE_AT_MOST)
    stats.rows_expired_after_termination += expired.rows_after_termination
    stats.rows_expired_after_ttl += expired.rows_after_ttl
    for waited in expired.connects:
        key = waited.connect["process_guid"].encode()
        await _emit_unmatched(
            waited.connect, key, grace.AFTER_GRACE, waited.event_time_ms / 1000, partition
        )
    for group in expired.alert_groups:
        update = alert_groups.closing_record(group, utc_now_iso())
        if update is not None:
            key = group.process_guid.encode()
            await _send(settings.topic_alerts, key, update, group.last_seen_ms / 1000, partition)
            stats.alert_group_updates += 1
    stats.pending = state.waiting()
    stats.ancestry_parked = parked.count()


def _table(store: Any) -> Any:
    """The Faust table a store of :data:`STORES` writes the changelog of."""
    return store.table


def _where(event: EventT) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"
