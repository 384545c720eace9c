"""The join agent: ProcessCreate rows into the table, NetworkConnects looked up in it.

It reads ``<app_id>-events-by-process-guid``, which :mod:`sysmon_faust.intake`
fills with Sysmon 1 and 3 keyed by process_guid. Guarantees that shape it:

* Order: both event types of a process arrive through the same partition of
  that one topic, in the order the intake read them, so a creation is in the
  table before a connect that followed it is looked up — at any speed.
* Nothing raised inside the agent may escape: Faust would stop the agent and
  with it the partition. A record the join cannot handle becomes a dead letter.
* Offsets are committed only after the agent has handled a record and the
  records it sent are flushed (Faust's acking), so a crash replays rather
  than loses (at-least-once).
"""

from __future__ import annotations

import logging
import time

import orjson
from faust import StreamT
from faust.types import EventT

from sysmon_faust import deadletter
from sysmon_faust.clock import utc_now_iso
from sysmon_faust.join import NO_PROCESS_GUID, PROCESS_UNKNOWN, enrich, unmatched
from sysmon_faust.models import Alert, NetworkConnect, ProcessCreate
from sysmon_faust.normalize import NETWORK_CONNECT, PROCESS_CREATE
from sysmon_faust.rules import matching_rules
from sysmon_faust.stats import stats
from sysmon_faust.topology import (
    EVENT_ID_FIELD,
    RECEIVED_FIELD,
    alerts_topic,
    app,
    dlq_topic,
    events_by_guid_topic,
    join_topic,
    process_table,
    unmatched_topic,
)

log = logging.getLogger(__name__)


async def send_dead_letter(event: EventT, raw: bytes | None, error: str) -> None:
    message = event.message
    letter = deadletter.dead_letter(raw, error, message.topic, message.partition, message.offset)
    await dlq_topic.send(value=letter)
    stats.dead_lettered += 1


@app.agent(events_by_guid_topic, name="join-by-process-guid")
async def join_by_process_guid(stream: StreamT[bytes]) -> None:
    """The stream-table join, one process_guid partition at a time (see the module docstring)."""
    async for event in stream.events():
        try:
            await _join_one(event)
        except Exception as exc:
            log.exception("join-by-process-guid: record %s failed", _where(event))
            await send_dead_letter(event, event.value, f"join error: {type(exc).__name__}: {exc}")


async def _join_one(event: EventT) -> None:
    fields = orjson.loads(event.value)
    event_id = fields.pop(EVENT_ID_FIELD)
    received = fields.pop(RECEIVED_FIELD, None)
    timestamp = event.message.timestamp
    if event_id == PROCESS_CREATE:
        created = ProcessCreate(**fields)
        process_table[created.process_guid.encode()] = created
        stats.process_creates += 1
        return
    if event_id != NETWORK_CONNECT:
        raise ValueError(f"unexpected event id {event_id!r} on {event.message.topic}")

    connect = NetworkConnect(**fields)
    stats.network_connects += 1
    guid = connect.process_guid
    process: ProcessCreate | None = process_table.get(guid.encode()) if guid is not None else None
    if process is None:
        reason = PROCESS_UNKNOWN if guid is not None else NO_PROCESS_GUID
        await unmatched_topic.send(key=guid, value=unmatched(connect, reason), timestamp=timestamp)
        stats.unmatched += 1
        stats.unmatched_by_reason[reason] += 1
        return

    enriched = enrich(connect, process)
    await join_topic.send(key=guid, value=enriched, timestamp=timestamp)
    stats.joined += 1
    now = time.time()
    stats.event_age.observe(max(now - timestamp, 0.0))
    if received is not None:
        stats.processing_latency.observe(max(now - received, 0.0))
    for rule in matching_rules(enriched):
        alert = Alert(
            rule_id=rule.rule_id,
            rule_name=rule.rule_name,
            attack_technique=rule.attack_technique,
            severity=rule.severity,
            detected_at=utc_now_iso(),
            event=enriched,
        )
        await alerts_topic.send(key=guid, value=alert, timestamp=timestamp)
        stats.alerts += 1
        stats.alerts_by_rule[rule.rule_id] += 1


def _where(event: EventT) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"
