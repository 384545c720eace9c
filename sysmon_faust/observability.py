"""What a worker says about itself: health, table size, Prometheus metrics, rebalance log lines."""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from sysmon_faust import intake, metrics
from sysmon_faust.agents import state
from sysmon_faust.stats import stats
from sysmon_faust.topology import app, process_table, settings, tree_replica

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


def health_state() -> dict[str, Any]:
    """Is this worker recovered and processing? Each condition is reported by name."""
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
    healthy = (
        checks["started"]
        and checks["partitions_assigned"]
        and checks["intake_joined"]
        and not checks["rebalancing"]
        and not checks["recovering"]
        and checks["process_tree_read"]
    )
    return {
        "status": "ok" if healthy else "starting",
        "healthy": healthy,
        "assigned_partitions": len(assignment),
        **checks,
    }


def table_rows() -> int:
    """Rows of the process table in the partitions this worker owns, exactly.

    Counted by a key scan once per partition after each assignment (a second
    or so at a million rows), then kept up to date by the join
    (:meth:`sysmon_faust.state.JoinState.row_count`). RocksDB's O(1)
    estimate is no count under churn: it kept deleted rows for minutes.
    """
    global _counted_while_unsettled
    changelog = process_table.changelog_topic.get_topic_name()
    actives = app.assignor.assigned_actives()
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    settled = not app.rebalancing and recovery.completed.is_set() and not recovery.in_recovery
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
        # Records of the process-tree topic this worker's copy has read.
        "process_tree_records_read": tree_replica.records_read,
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


def render_metrics() -> str:
    counters = {
        "consumed": "Input records read",
        "filtered": "Input records that are not Sysmon 1/3/5 (counted, dropped)",
        "normalized": "Sysmon 1/3/5 events normalized and re-keyed",
        "joined": "Network events enriched (sysmon-join)",
        "unmatched": "Network events whose process is unknown",
        "dead_lettered": "Records sent to the dead-letter topic",
        "alerts": "Alerts emitted",
    }
    families = [
        metrics.Metric(
            f"sysmon_{name}_total", "counter", text, [metrics.Sample(getattr(stats, name))]
        )
        for name, text in counters.items()
    ]
    families += [
        metrics.Metric(
            "sysmon_filtered_by_reason_total",
            "counter",
            "Filtered input records by reason",
            [metrics.Sample(v, {"reason": k}) for k, v in sorted(stats.filtered_by_reason.items())],
        ),
        metrics.Metric(
            "sysmon_alerts_by_rule_total",
            "counter",
            "Alerts by rule",
            [metrics.Sample(v, {"rule": k}) for k, v in sorted(stats.alerts_by_rule.items())],
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
