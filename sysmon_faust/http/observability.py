"""What a worker says about itself: health, table size, Prometheus metrics, rebalance log lines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import confluent_kafka
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from sysmon_faust.compat import private
from sysmon_faust.core.stats import stats
from sysmon_faust.http import metrics
from sysmon_faust.stream import agents, intake, output_producer, recovery_watch
from sysmon_faust.stream.agents import state
from sysmon_faust.stream.faults import faults, stop_worker
from sysmon_faust.stream.stall import Position, StallWatch
from sysmon_faust.stream.topology import app, process_table, settings, tree_replica

log = logging.getLogger(__name__)

_assigned_once = False


@app.on_partitions_assigned.connect
async def _log_assignment(app: Any, /, *_: Any, signal: Any, **__: Any) -> None:
    """One readable line per rebalance: what this worker now owns, and stands by for."""
    global _assigned_once
    _assigned_once = True
    actives = app.assignor.assigned_actives()
    standbys = app.assignor.assigned_standbys()
    log.info(
        "rebalance #%d: active %s; standby %s",
        app.monitor.rebalances,
        _describe(actives),
        _describe(standbys),
    )


def _describe(tps: set[TP]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    if not by_topic:
        return "nothing"
    return ", ".join(f"{topic}{sorted(parts)}" for topic, parts in sorted(by_topic.items()))


#: Per source partition this worker owns: committed progress (sysmon_faust.stream.stall).
stall_watch = StallWatch(settings.stall_timeout)
#: When (time.monotonic()) this worker last had an answer from the cluster.
_broker_answered_at: float | None = None
#: Seconds between two probes of the cluster, and how long one may take.
BROKER_PROBE_EVERY = 2.0
BROKER_PROBE_TIMEOUT = 5.0


def _source_positions() -> list[Position]:
    """(part, ``topic[partition]``, committed offset, lag) of every source partition owned."""
    found: list[Position] = []
    for partition in intake.state.input_partitions:
        committed = intake.state.committed.get(partition)
        highwater = intake.state.highwater.get(partition)
        lag = max(highwater - (committed or 0), 0) if highwater is not None else 0
        found.append(("intake", f"{settings.topic_input}[{partition}]", committed, lag))
    consumer: Any = app.consumer
    if consumer is None:
        return found
    try:
        assignment = consumer.assignment()
    except ConsumerNotStarted:
        return found
    for tp in assignment:
        if tp.topic != settings.topic_by_guid:
            continue
        committed = private.committed_offset(consumer, tp)
        highwater = consumer.highwater(tp)
        lag = max(highwater - (committed or 0), 0) if highwater is not None else 0
        found.append(("join", f"{tp.topic}[{tp.partition}]", committed, lag))
    return found


@app.timer(interval=1.0)
async def watch_progress() -> None:
    """Note each owned partition's committed offset and lag (for /health: stalled)."""
    stall_watch.observe(_source_positions(), time.monotonic())


@app.timer(interval=1.0)
async def watch_recovery() -> None:
    """Sample the tables' recovery (sysmon_faust.stream.recovery_watch) once a second."""
    recovery_watch.sample(app.tables.recovery, time.monotonic())  # type: ignore[attr-defined]


@app.timer(interval=1.0)
async def watch_kafka_clients() -> None:
    """Stop the worker when one of its librdkafka clients has lost every broker for good
    (:mod:`sysmon_faust.stream.broker_watch`): its supervisor starts it with new clients."""
    lost = output_producer.BROKER_WATCH.lost()
    if lost and not faults.stopping:
        client, seconds = lost[0]
        error = confluent_kafka.KafkaError(
            confluent_kafka.KafkaError._ALL_BROKERS_DOWN,
            f"librdkafka client {client} has known no broker for {seconds:.0f} s (librdkafka "
            "drops them all when a broker shutting down names none, and may never connect "
            "again: confluentinc/librdkafka#5301); new clients will",
        )
        await stop_worker("kafka client", client, confluent_kafka.KafkaException(error), log)


@app.task
async def probe_broker() -> None:
    """Ask the cluster for its metadata every few seconds; /health says when it has not answered.

    A loop, not a timer: a probe of a broker that is down takes its whole
    timeout, longer than the interval (Faust warns of overlapping timers).
    """
    global _broker_answered_at
    # Silence is counted from the start: a worker healthy before its first
    # probe answered (1.6 s after launch) must not call a cluster that went
    # away then reachable for ever (test_health saw it once starts got fast).
    _broker_answered_at = time.monotonic()
    while True:
        await asyncio.sleep(BROKER_PROBE_EVERY)
        client = intake.state.client
        if client is None:
            continue
        try:
            # The metadata of the input topic alone (all topics' is large on
            # a big cluster); aiokafka's public fetch_all_metadata asks for all.
            answered = await asyncio.wait_for(
                private.fetch_topic_metadata(client, settings.topic_input), BROKER_PROBE_TIMEOUT
            )
        except Exception as exc:  # an unreachable cluster is what this probe is for
            log.debug("cluster probe failed: %r", exc)
            continue
        if answered:
            _broker_answered_at = time.monotonic()


def _agents_running() -> dict[str, bool]:
    join: Any = agents.join_by_process_guid
    actors = private.agent_actors(join)
    return {
        "join_running": bool(actors) and not any(actor.actor_task.done() for actor in actors),
        "intake_running": intake.state.consuming,
    }


def health_state() -> dict[str, Any]:
    """Is this worker recovered, in touch with the cluster and processing? Each condition by name.

    ``status``: ``ok``; ``starting`` while it joins, recovers or reads the
    process tree; ``unhealthy`` (with ``reasons``) when it stopped on a fault
    of its own (sysmon_faust.stream.faults), has not reached the cluster for the
    session timeout, has a partition with lag and no committed progress for
    ``SYSMON_STALL_TIMEOUT`` (sysmon_faust.stream.stall), or its join agent or
    intake loop has ended.
    """
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # on the TableManager, not its ABC
    try:
        assignment = app.consumer.assignment() if app.consumer is not None else set()
    except ConsumerNotStarted:  # asked while the worker starts: not healthy yet, no error
        assignment = set()
    checks = {
        "started": bool(app.started),
        "partitions_assigned": _assigned_once,
        "intake_joined": intake.state.joined_group,
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(recovery.in_recovery) or not recovery.completed.is_set(),
        # The join waits for it: ancestry from a half-read tree would be short.
        "process_tree_read": tree_replica.caught_up.is_set(),
    }
    ready = (
        checks["started"]
        and checks["partitions_assigned"]
        and checks["intake_joined"]
        and not checks["rebalancing"]
        and not checks["recovering"]
        and checks["process_tree_read"]
    )
    now = time.monotonic()
    reasons = [f"{fault.component}: {fault.reason}" for fault in faults.current.values()]
    silent = now - _broker_answered_at if _broker_answered_at is not None else None
    broker_reachable = silent is None or silent < settings.session_timeout
    if not broker_reachable:
        reasons.append(f"no answer from the Kafka cluster for {silent:.0f} s")
    stalled = stall_watch.stalled(now) if ready else []
    reasons += [
        f"{s.partition}: {s.lag} records behind, no progress for {s.seconds:.0f} s" for s in stalled
    ]
    running = _agents_running() if ready else {"join_running": True, "intake_running": True}
    recovery_watch.sample(recovery, now)
    reasons += [
        f"{name.removesuffix('_running')} has stopped" for name, up in running.items() if not up
    ]
    status = "unhealthy" if reasons else ("ok" if ready else "starting")
    return {
        "status": status,
        "healthy": status == "ok",
        "reasons": reasons,
        "assigned_partitions": len(assignment),
        **checks,
        "broker_reachable": broker_reachable,
        "stalled_partitions": [str(s.partition) for s in stalled],
        **running,
        # Sampled once a second (watch_recovery): the current recovery, or the last.
        "recovery": recovery_watch.progress.answer(),
    }


def table_rows() -> int:
    """Rows of the process table in the partitions this worker owns, exactly.

    Counted by a key scan once per partition after each assignment (a second
    or so at a million rows; again after every ~3 times its rows written:
    :mod:`sysmon_faust.core.join.row_count`), then kept up to date by the join
    (:meth:`sysmon_faust.core.join.state.JoinState.row_count`). RocksDB's O(1)
    estimate is no count under churn: it kept deleted rows for minutes.
    """
    global _counted_while_unsettled
    changelog = process_table.changelog_topic.get_topic_name()
    actives = app.assignor.assigned_actives()
    settled = recovery_watch.settled(app)
    if not settled and _counted_while_unsettled is not None:
        # A scan takes a second at a million rows, and slowed a recovery
        # polled every half second fifteenfold (make chaos): at most one
        # scan per UNSETTLED_SCAN_EVERY seconds until the worker is settled.
        counted_at, rows = _counted_while_unsettled
        if time.monotonic() - counted_at < UNSETTLED_SCAN_EVERY:
            return rows
    rows = sum(
        state.row_count(tp.partition, keep=settled) for tp in actives if tp.topic == changelog
    )
    _counted_while_unsettled = None if settled else (time.monotonic(), rows)
    return rows


#: While a worker recovers or rebalances, table_rows is counted this seldom.
UNSETTLED_SCAN_EVERY = 10.0
_counted_while_unsettled: tuple[float, int] | None = None


def worker_state() -> dict[str, Any]:
    """What belongs to this worker rather than to the pipeline: rows, partitions, rebalances."""
    changelog = process_table.changelog_topic.get_topic_name()
    actives = app.assignor.assigned_actives()
    standbys = app.assignor.assigned_standbys()
    return {
        "table_rows": table_rows(),
        "table_partitions_active": sorted(tp.partition for tp in actives if tp.topic == changelog),
        "table_partitions_standby": sorted(
            tp.partition for tp in standbys if tp.topic == changelog
        ),
        "rebalances": app.monitor.rebalances,
        "input_partitions": intake.state.input_partitions,
        "input_rebalances": intake.state.rebalances,
        # Records of the process-tree topic this worker's copy has read.
        "process_tree_records_read": tree_replica.records_read,
        # Per input partition: seconds the intake held the others back for it.
        "input_alignment_wait_seconds": {
            str(p): ms / 1000 for p, ms in sorted(intake.state.alignment_held_ms.items())
        },
        # SYSMON_ALERT_WINDOW, for whoever reads alerts (the demo waits on it).
        "alert_window_seconds": int(settings.alert_window),
    }


def consumer_lag() -> dict[TP, int]:
    """Per source partition this worker reads: records not yet processed."""
    lag: dict[TP, int] = {}
    consumer = app.consumer
    if consumer is None:
        return lag
    for partition, behind in intake.state.lag.items():
        if partition in intake.state.input_partitions:
            lag[TP(settings.topic_input, partition)] = behind
    read = app.monitor.tp_read_offsets or {}
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog"):
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        position = read.get(tp)
        next_offset = position + 1 if position is not None else 0
        lag[tp] = max(highwater - next_offset, 0)
    return lag


def _recovery_metrics(recovery: Mapping[str, Any]) -> list[metrics.Metric]:
    """The tables' changelog recovery (:mod:`sysmon_faust.core.recovery_progress`) as gauges."""
    gauges = [
        ("sysmon_recovery_records_remaining", "Changelog records the table recovery has left",
         recovery["records_remaining"]),
        ("sysmon_recovery_records_total", "Changelog records of the current (or last) recovery",
         recovery["records_total"]),
        ("sysmon_recovery_records_per_second", "Changelog records restored per second (last 10 s)",
         recovery["records_per_second"]),
        ("sysmon_recovery_eta_seconds", "Seconds the table recovery has left at its current rate",
         recovery["eta_seconds"]),
    ]  # fmt: skip
    return [
        metrics.Metric(name, "gauge", text, [metrics.Sample(value)] if value is not None else [])
        for name, text, value in gauges
    ]


def _health_metrics() -> list[metrics.Metric]:
    """What /health says, as gauges: one alert rule per condition."""
    health = health_state()
    now = time.monotonic()
    return [
        metrics.Metric(
            "sysmon_healthy", "gauge", "1 when /health answers 200", [
                metrics.Sample(int(health["healthy"]))
            ]
        ),
        metrics.Metric(
            "sysmon_broker_reachable", "gauge",
            "1 while the Kafka cluster answered within the session timeout",
            [metrics.Sample(int(health["broker_reachable"]))],
        ),
        metrics.Metric(
            "sysmon_running", "gauge", "1 while the part of the worker runs",
            [metrics.Sample(int(health["join_running"]), {"part": "join"}),
             metrics.Sample(int(health["intake_running"]), {"part": "intake"})],
        ),
        *_recovery_metrics(health["recovery"]),
        metrics.Metric(
            "sysmon_fault", "gauge",
            "1 per part stopped by a fault of the machine or the cluster (stream/faults.py)",
            [metrics.Sample(1, {"part": f.component, "reason": f.reason})
             for f in faults.current.values()],
        ),
        metrics.Metric(
            "sysmon_no_progress_seconds", "gauge",
            "Per part with lag (intake, join): seconds since a committed offset of it moved",
            [metrics.Sample(round(seconds, 1), {"part": part})
             for part, seconds in sorted(stall_watch.unmoved_seconds(now).items())],
        ),
    ]  # fmt: skip


def _counter_by(
    name: str, help_text: str, label: str, counts: Mapping[Any, float]
) -> metrics.Metric:
    """A counter with one sample per key of ``counts``, the key (as text) under ``label``."""
    return metrics.Metric(
        name, "counter", help_text,
        [metrics.Sample(value, {label: str(key)}) for key, value in sorted(counts.items())],
    )  # fmt: skip


def render_metrics() -> str:
    counters = {
        "consumed": "Input records read",
        "filtered": "Input records dropped: not Sysmon, or an event no rule or enrichment wants",
        "normalized": (
            "Sysmon events normalized and re-keyed (1/3/5, those enriched and those a rule wants)"
        ),
        "other_events": "Sysmon events other than 1/3/5 the join handled (rules, enrichment)",
        "context_rules_skipped": "Events whose process never came: their context rules not tried",
        "joined": "Network events enriched (sysmon-join)",
        "unmatched": "Network events whose process is unknown",
        "dead_lettered": "Records sent to the dead-letter topic",
        "surrogates_replaced": "Events read with unpaired UTF-16 surrogates replaced by U+FFFD",
        "alerts": "Alerts written at once (a group's first match)",
        "alert_matches": "Sigma rule matches, grouped or not",
        "alert_matches_grouped": "Rule matches counted into an open alert group",
        "alert_group_updates": "Alert group updates written when a window closed",
    }
    families = [
        metrics.Metric(
            f"sysmon_{name}_total", "counter", text, [metrics.Sample(getattr(stats, name))]
        )
        for name, text in counters.items()
    ]
    families += [
        metrics.Metric(
            "sysmon_sigma_rules", "gauge", "Sigma rules of SYSMON_RULES, by state",
            [metrics.Sample(stats.sigma_rules_loaded, {"state": "loaded"}),
             metrics.Sample(stats.sigma_rules_refused, {"state": "refused"})],
        ),
    ]  # fmt: skip
    families += _health_metrics()
    families += [
        _counter_by(
            "sysmon_enriched_total",
            "Records written to sysmon-enriched, by Sysmon event id",
            "event_id",
            stats.enriched_by_event_id,
        ),
        _counter_by(
            "sysmon_enriched_unmatched_total",
            "Records written to sysmon-enriched without their process, by reason",
            "reason",
            stats.enriched_unmatched_by_reason,
        ),
        _counter_by(
            "sysmon_filtered_by_reason_total",
            "Filtered input records by reason",
            "reason",
            stats.filtered_by_reason,
        ),
        _counter_by(
            "sysmon_normalized_by_shape_total",
            "Sysmon 1/3/5 events normalized, by the shape they came in (docs/shapes.md)",
            "shape",
            stats.normalized_by_shape,
        ),
        _counter_by("sysmon_alerts_by_rule_total", "Alerts by rule", "rule", stats.alerts_by_rule),
        _counter_by(
            "sysmon_guid_start_time_implausible_total",
            "Start times decoded from process GUIDs and not believed (taken as unknown), by why",
            "reason",
            stats.guid_start_time_implausible,
        ),
        metrics.Metric(
            "sysmon_ancestry_parked",
            "gauge",
            "Joins parked until an ancestor's link is read or the wait is over",
            [metrics.Sample(stats.ancestry_parked)],
        ),
        _counter_by(
            "sysmon_ancestry_wait_seconds_total",
            "Wall-clock seconds joins spent parked for an ancestor, per re-keying partition",
            "partition",
            stats.ancestry_wait_seconds,
        ),
        metrics.Metric(
            "sysmon_input_alignment_wait_seconds_total",
            "counter",
            "Wall-clock seconds the intake held the other input partitions back for this one",
            [
                metrics.Sample(ms / 1000, {"partition": str(p)})
                for p, ms in sorted(intake.state.alignment_held_ms.items())
            ],
        ),
        metrics.Metric(
            "sysmon_table_rows",
            "gauge",
            "ProcessCreate rows in the partitions this worker owns",
            [metrics.Sample(table_rows())],
        ),
        metrics.Metric(
            "sysmon_rebalances_total",
            "counter",
            "Rebalances this worker went through",
            [metrics.Sample(app.monitor.rebalances)],
        ),
        metrics.Metric(
            "sysmon_consumer_lag",
            "gauge",
            "Records not yet processed, per source partition",
            [
                metrics.Sample(lag, {"topic": tp.topic, "partition": str(tp.partition)})
                for tp, lag in sorted(consumer_lag().items())
            ],
        ),
    ]
    return metrics.render(
        families,
        {
            "sysmon_processing_latency_seconds": (
                "Input record appended to Kafka -> enriched record emitted",
                stats.processing_latency,
            ),
            "sysmon_event_age_seconds": (
                "Sysmon UtcTime -> enriched record emitted (large for late or replayed data)",
                stats.event_age,
            ),
        },
    )
