"""The join agent: ProcessCreate rows into the table, NetworkConnects looked up in it.

It reads ``<app_id>-events-by-process-guid``, which :mod:`sysmon_faust.intake`
fills with Sysmon 1, 3 and 5 partitioned by process_guid, in batch records
(:mod:`sysmon_faust.rekey`). Guarantees that shape it:

* Order: both event types of a process arrive through the same partition of
  that one topic, in the order the intake read them, so a creation is in the
  table before a connect that followed it is looked up — at any speed.
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

import orjson
from faust import StreamT
from faust.types import EventT

from sysmon_faust import deadletter
from sysmon_faust.clock import utc_now_iso
from sysmon_faust.join import NO_PROCESS_GUID, PROCESS_UNKNOWN, Row, enrich, unmatched
from sysmon_faust.normalize import NETWORK_CONNECT, PROCESS_CREATE, PROCESS_TERMINATE
from sysmon_faust.rekey import EVENT_ID_FIELD, EVENT_TIME_FIELD, RECEIVED_FIELD, decode_batch
from sysmon_faust.rules import matching_rules
from sysmon_faust.stats import stats
from sysmon_faust.topology import (
    app,
    dlq_topic,
    events_by_guid_topic,
    process_table,
    settings,
)

log = logging.getLogger(__name__)


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
        for fields in batch:
            try:
                await _join_one(fields)
            except Exception as exc:
                log.exception("join-by-process-guid: an event of %s failed", _where(event))
                error = f"join error: {type(exc).__name__}: {exc}"
                await send_dead_letter(event, orjson.dumps(fields), error)


async def _join_one(fields: Row) -> None:
    event_id = fields.pop(EVENT_ID_FIELD)
    received = fields.pop(RECEIVED_FIELD, None)
    timestamp = fields.pop(EVENT_TIME_FIELD) / 1000
    if event_id == PROCESS_CREATE:
        # The row is stored as the JSON the intake wrote (models.ProcessCreate's fields).
        process_table[fields["process_guid"].encode()] = orjson.dumps(fields)
        stats.process_creates += 1
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
    if stored is None:
        reason = PROCESS_UNKNOWN if guid is not None else NO_PROCESS_GUID
        await _send(settings.topic_unmatched, key, unmatched(fields, reason), timestamp)
        stats.unmatched += 1
        stats.unmatched_by_reason[reason] += 1
        return

    enriched = enrich(fields, orjson.loads(stored))
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
