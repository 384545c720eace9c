"""The join agent: ProcessCreate rows into the table, NetworkConnects joined against it.

It reads ``<app_id>-events-by-process-guid``, which :mod:`sysmon_faust.intake`
fills with Sysmon 1, 3 and 5 partitioned by process_guid, in batch records
(:mod:`sysmon_faust.rekey`). Guarantees that shape it:

* Order: every event of a process arrives through the same partition of that
  one topic, in the order the intake read them, so a creation is in the table
  before a connect that followed it is looked up — at any speed.
* Out of order: a connect whose process is not in the table yet waits in the
  grace buffer (:mod:`sysmon_faust.grace`; a changelog-backed table) for up
  to ``SYSMON_JOIN_GRACE`` of stream time. Its creation releases it, joined,
  in event-time order; otherwise it expires to ``sysmon-network-unmatched``
  (``process_unknown_after_grace``). Ticks (:mod:`sysmon_faust.ticks`) let a
  quiet partition expire by the wall clock.
* Nothing raised inside the agent may escape: Faust would stop the agent and
  with it the partition. An event the join cannot handle becomes a dead
  letter; the rest of its batch goes on.
* Offsets are committed only after the agent has handled a whole batch and the
  records it sent are flushed (Faust flushes its producer before every
  commit), so a crash replays rather than loses (at-least-once).
* Speed: rows travel as JSON bytes and dicts, and outputs go straight to
  Faust's producer — no ``faust.Record`` and no Topic/Channel layer per event
  (see :mod:`sysmon_faust.join`; measured with ``make bench``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from faust import StreamT
from faust.types import EventT

from sysmon_faust import deadletter, grace
from sysmon_faust.clock import utc_now_iso
from sysmon_faust.join import NO_PROCESS_GUID, PROCESS_UNKNOWN, Row, enrich, unmatched
from sysmon_faust.normalize import NETWORK_CONNECT, PROCESS_CREATE, PROCESS_TERMINATE
from sysmon_faust.rekey import (
    EVENT_ID_FIELD,
    EVENT_TIME_FIELD,
    RECEIVED_FIELD,
    TICK,
    decode_batch,
)
from sysmon_faust.rules import matching_rules
from sysmon_faust.stats import stats
from sysmon_faust.topology import (
    app,
    dlq_topic,
    events_by_guid_topic,
    expiry_index,
    pending_table,
    process_table,
    settings,
)

log = logging.getLogger(__name__)

LIMITS = grace.GraceLimits(
    grace_ms=int(settings.join_grace * 1000),
    max_per_process=settings.pending_per_process,
    max_total=settings.pending_max,
)
#: Expired entries handled per batch record at most, so a long-idle partition
#: catching up does not hold the agent for long (the rest go with the next).
EXPIRE_AT_MOST = 2_000

#: The greatest event time (ms) seen per partition of the re-keying topic.
stream_time: dict[int, int] = {}


async def send_dead_letter(event: EventT, raw: bytes | None, error: str) -> None:
    message = event.message
    letter = deadletter.dead_letter(raw, error, message.topic, message.partition, message.offset)
    await dlq_topic.send(value=letter)
    stats.dead_lettered += 1


async def _send(topic: str, key: bytes | None, row: Row, timestamp: float) -> None:
    # Faust's own producer, so its flush-before-commit covers these records.
    await app.producer.send(
        topic, key, orjson.dumps(row), partition=None, timestamp=timestamp, headers=None
    )


@app.agent(events_by_guid_topic, name="join-by-process-guid")
async def join_by_process_guid(stream: StreamT[bytes]) -> None:
    """The stream-table join, one process_guid partition at a time (see the module docstring)."""
    async for event in stream.events():
        try:
            batch = decode_batch(event.value)
        except ValueError as exc:
            await send_dead_letter(event, event.value, f"join error: {exc}")
            continue
        partition = event.message.partition
        for fields in batch:
            try:
                await _join_one(fields, partition)
            except Exception as exc:
                log.exception("join-by-process-guid: an event of %s failed", _where(event))
                error = f"join error: {type(exc).__name__}: {exc}"
                await send_dead_letter(event, orjson.dumps(fields), error)
        if LIMITS.grace_ms:
            try:
                await _expire_due(partition)
            except Exception:
                # Expiry is retried with the next record of the partition.
                log.exception("join-by-process-guid: expiry on partition %s failed", partition)


async def _join_one(fields: Row, partition: int) -> None:
    event_id = fields.pop(EVENT_ID_FIELD)
    if event_id == TICK:
        return  # only there to run expiry on a quiet partition
    received = fields.pop(RECEIVED_FIELD, None)
    event_time_ms = fields.pop(EVENT_TIME_FIELD)
    stream_time[partition] = max(stream_time.get(partition, 0), event_time_ms)
    timestamp = event_time_ms / 1000
    if event_id == PROCESS_CREATE:
        key = fields["process_guid"].encode()
        process_table[key] = orjson.dumps(fields)
        stats.process_creates += 1
        if LIMITS.grace_ms:  # with no grace nothing waits: no lookup per creation
            await _release_waiting(key, fields)
        return
    if event_id == PROCESS_TERMINATE:
        _mark_terminated(fields)
        return
    if event_id != NETWORK_CONNECT:
        raise ValueError(f"unexpected event id {event_id!r}")

    stats.network_connects += 1
    guid = fields.get("process_guid")
    key = guid.encode() if guid is not None else None
    stored = process_table.get(key) if key is not None else None
    if stored is not None:
        await _emit_joined(fields, orjson.loads(stored), timestamp, received)
    elif key is None:
        await _emit_unmatched(fields, None, NO_PROCESS_GUID, timestamp)
    elif not LIMITS.grace_ms:
        await _emit_unmatched(fields, key, PROCESS_UNKNOWN, timestamp)
    else:
        await _wait_for_process(key, fields, event_time_ms)


async def _emit_joined(
    connect: Row, process: Row, timestamp: float, received: float | None
) -> None:
    enriched = enrich(connect, process)
    key = enriched["process_guid"].encode()
    await _send(settings.topic_join, key, enriched, timestamp)
    stats.joined += 1
    now = time.time()
    stats.event_age.observe(max(now - timestamp, 0.0))
    if received is not None:
        stats.processing_latency.observe(max(now - received, 0.0))
    for rule in matching_rules(enriched):
        alert = {
            "rule_id": rule.rule_id,
            "rule_name": rule.rule_name,
            "attack_technique": rule.attack_technique,
            "severity": rule.severity,
            "detected_at": utc_now_iso(),
            "event": enriched,
        }
        await _send(settings.topic_alerts, key, alert, timestamp)
        stats.alerts += 1
        stats.alerts_by_rule[rule.rule_id] += 1


async def _emit_unmatched(connect: Row, key: bytes | None, reason: str, timestamp: float) -> None:
    await _send(settings.topic_unmatched, key, unmatched(connect, reason), timestamp)
    stats.unmatched += 1
    stats.unmatched_by_reason[reason] += 1


# --- the grace buffer ----------------------------------------------------------


async def _wait_for_process(key: bytes, connect: Row, event_time_ms: int) -> None:
    stored = pending_table.get(key)
    waiting: list[dict[str, Any]] = orjson.loads(stored) if stored is not None else []
    if not grace.admit(waiting, stats.pending, LIMITS):
        await _emit_unmatched(connect, key, grace.OVERFLOW, event_time_ms / 1000)
        return
    now_ms = int(time.time() * 1000)
    waiting.append(connect | {grace.EVENT_TIME_MS: event_time_ms, grace.BUFFERED_AT_MS: now_ms})
    pending_table[key] = orjson.dumps(waiting)
    guid = key.decode()
    deadline = event_time_ms + LIMITS.grace_ms
    expiry_index[grace.index_key(grace.PENDING_BY_EVENT_TIME, deadline, guid)] = b""
    expiry_index[grace.index_key(grace.PENDING_BY_WALL_TIME, now_ms + LIMITS.grace_ms, guid)] = b""
    stats.pending += 1


async def _release_waiting(key: bytes, process: Row) -> None:
    stored = pending_table.get(key)
    if stored is None:
        return
    del pending_table[key]
    # Their index entries stay until due; they then find nothing to expire.
    for connect in grace.release_order(orjson.loads(stored)):
        event_time_ms = connect.pop(grace.EVENT_TIME_MS)
        connect.pop(grace.BUFFERED_AT_MS, None)
        stats.pending = max(stats.pending - 1, 0)
        stats.network_connects_released += 1
        await _emit_joined(connect, process, event_time_ms / 1000, None)


async def _expire_due(partition: int) -> None:
    """Let go of the waiting connects of ``partition`` whose grace has passed."""
    now_ms = int(time.time() * 1000)
    current_stream_time = stream_time.get(partition, 0)
    due_by = {
        grace.PENDING_BY_EVENT_TIME: current_stream_time,
        grace.PENDING_BY_WALL_TIME: now_ms,
    }
    due: list[bytes] = []
    store: Any = expiry_index.data  # faust.stores.rocksdb.Store
    db = store._db_for_partition(partition)  # RocksDB iterates keys in byte order
    for kind, time_now in due_by.items():
        keys = db.iterkeys()
        keys.seek(kind)
        for index_key in keys:
            if not index_key.startswith(kind) or len(due) >= EXPIRE_AT_MOST:
                break
            if grace.parse_index_key(index_key)[1] > time_now:
                break  # the rest of this kind is due later
            due.append(index_key)
    for index_key in due:
        del expiry_index[index_key]
        _, _, guid = grace.parse_index_key(index_key)
        key = guid.encode()
        stored = pending_table.get(key)
        if stored is None:
            continue  # already released, or expired through its other entry
        expired: list[Row] = []
        remaining: list[Row] = []
        for connect in grace.release_order(orjson.loads(stored)):
            is_due = grace.is_expired(connect, current_stream_time, now_ms, LIMITS)
            (expired if is_due else remaining).append(connect)
        if not expired:
            continue
        if remaining:
            pending_table[key] = orjson.dumps(remaining)
        else:
            del pending_table[key]
        for connect in expired:
            event_time_ms = connect.pop(grace.EVENT_TIME_MS)
            connect.pop(grace.BUFFERED_AT_MS, None)
            stats.pending = max(stats.pending - 1, 0)
            await _emit_unmatched(connect, key, grace.AFTER_GRACE, event_time_ms / 1000)


def _mark_terminated(fields: Row) -> None:
    # The row stays: connects logged after the process ended still join. It
    # only says since when the process is gone (models.ProcessRow).
    stats.process_terminates += 1
    key = fields["process_guid"].encode()
    stored = process_table.get(key)
    if stored is None:
        stats.terminated_unknown += 1  # it started before the pipeline saw it
        return
    row = orjson.loads(stored)
    row["process_terminated_at"] = fields["event_date_creation"]
    process_table[key] = orjson.dumps(row)


def _where(event: EventT) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"
