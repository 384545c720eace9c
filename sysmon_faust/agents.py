"""The two agents of the pipeline: normalize-and-re-key, then the join.

Guarantees that shape this code:

* Nothing raised inside an agent may escape: faust would stop the agent and
  with it the partition. Every record either produces output, is counted as
  filtered, or becomes a dead letter.
* Order: within one input partition, records are handled one at a time in
  offset order, and every keyed record of a process goes to the same
  partition of ``events_by_guid_topic``; that is what makes the join see a
  creation before the connects that followed it.
* Offsets are committed only after the agent has handled a record (faust's
  acking), so a crash replays rather than loses (at-least-once).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from faust import StreamT
from faust.types import EventT

from sysmon_faust import deadletter
from sysmon_faust.clock import utc_now_iso
from sysmon_faust.join import NO_PROCESS_GUID, PROCESS_UNKNOWN, enrich, unmatched
from sysmon_faust.models import Alert, NetworkConnect, ProcessCreate
from sysmon_faust.normalize import (
    NETWORK_CONNECT,
    PROCESS_CREATE,
    Filtered,
    Invalid,
    NormalizedEvent,
    normalize,
)
from sysmon_faust.rules import matching_rules
from sysmon_faust.stats import stats
from sysmon_faust.topology import (
    OUTPUT_TOPICS,
    alerts_topic,
    app,
    dlq_topic,
    events_by_guid_topic,
    input_topic,
    join_topic,
    network_connect_topic,
    process_create_topic,
    process_table,
    unmatched_topic,
)

log = logging.getLogger(__name__)

# Key of the event id in values of ``events_by_guid_topic``; the other keys are
# the normalized fields.
_EVENT_ID = "_event_id"
# ... and of the Kafka timestamp of the input record it came from, for the
# processing-latency histogram.
_RECEIVED = "_received"


async def send_dead_letter(event: EventT, raw: bytes | None, error: str) -> None:
    message = event.message
    letter = deadletter.dead_letter(raw, error, message.topic, message.partition, message.offset)
    await dlq_topic.send(value=letter)
    stats.dead_lettered += 1


@app.agent(input_topic, name="normalize-events")
async def normalize_events(stream: StreamT[bytes]) -> None:
    """Raw input → keyed ProcessCreate / NetworkConnect records, dead letters, counts."""
    # Output topics are declared before the first record, so they get the
    # configured partition count instead of the broker's auto-create default.
    for topic in OUTPUT_TOPICS:
        await topic.maybe_declare()
    async for event in stream.events():
        raw = event.value
        stats.consumed += 1
        try:
            await _route(event, raw)
        except Exception as exc:
            log.exception("normalize-events: record %s failed", _where(event))
            await send_dead_letter(event, raw, f"pipeline error: {type(exc).__name__}: {exc}")


async def _route(event: EventT, raw: Any) -> None:
    if not isinstance(raw, bytes):  # a tombstone (None) or an unexpected type
        await send_dead_letter(event, None, f"value is {type(raw).__name__}, not bytes")
        return
    outcome = normalize(raw)
    if isinstance(outcome, Invalid):
        await send_dead_letter(event, raw, outcome.error)
        return
    if isinstance(outcome, Filtered):
        stats.filtered += 1
        stats.filtered_by_reason[outcome.reason] += 1
        return
    await _publish(outcome, event.message.timestamp)


async def _publish(normalized: NormalizedEvent, received: float) -> None:
    stats.normalized += 1
    key = normalized.process_guid
    timestamp = normalized.timestamp_ms / 1000.0
    derived_topic, model = (
        (process_create_topic, ProcessCreate)
        if normalized.event_id == PROCESS_CREATE
        else (network_connect_topic, NetworkConnect)
    )
    await derived_topic.send(key=key, value=model(**normalized.fields), timestamp=timestamp)
    value = orjson.dumps({_EVENT_ID: normalized.event_id, _RECEIVED: received, **normalized.fields})
    await events_by_guid_topic.send(key=key, value=value, timestamp=timestamp)


@app.agent(events_by_guid_topic, name="join-by-process-guid")
async def join_by_process_guid(stream: StreamT[bytes]) -> None:
    """The stream-table join, one process_guid partition at a time.

    A ProcessCreate updates the process table; a NetworkConnect is looked up
    in it. Both arrive through the same partition of the same topic, in the
    order the normalizer wrote them, so a create is always in the table
    before a connect that followed it is looked up.
    """
    async for event in stream.events():
        try:
            await _join_one(event)
        except Exception as exc:
            log.exception("join-by-process-guid: record %s failed", _where(event))
            await send_dead_letter(event, event.value, f"join error: {type(exc).__name__}: {exc}")


async def _join_one(event: EventT) -> None:
    fields = orjson.loads(event.value)
    event_id = fields.pop(_EVENT_ID)
    received = fields.pop(_RECEIVED, None)
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
