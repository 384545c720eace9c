"""Per-worker counters behind ``GET /stats``.

They count what this worker process did since it started; they are not
summed over workers and not persisted (Kafka offsets are the durable record).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Seconds. Processing latency (Kafka append of the input record → enriched
#: record emitted) lives in the first buckets; event age (Sysmon UtcTime →
#: emitted) can be hours for late or replayed data, hence the long tail.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 3600.0, 86400.0,
)  # fmt: skip


@dataclass
class Histogram:
    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations up to it)`` per bucket, the last ``+Inf``."""
        running, out = 0, []
        for bound, count in zip([*map(_number, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{int(value)}"


@dataclass
class PipelineStats:
    consumed: int = 0
    filtered: int = 0
    normalized: int = 0
    process_creates: int = 0
    network_connects: int = 0
    process_terminates: int = 0
    #: Sigma rules of SYSMON_RULES loaded, and refused (sysmon_faust.core.sigma).
    sigma_rules_loaded: int = 0
    sigma_rules_refused: int = 0
    #: Sysmon events of other ids handled by the join agent (for their rules).
    other_events: int = 0
    #: Events whose rules on process context were not tried: their process
    #: never came within the grace, or the grace buffer was full.
    context_rules_skipped: int = 0
    #: Terminations of processes the table does not hold.
    terminated_unknown: int = 0
    #: Changelog records restored in bulk before Faust's recovery (stream/bulk_restore.py).
    changelog_records_bulk_restored: int = 0
    #: Connects waiting in the grace buffer of this worker's partitions, and
    #: those a creation released.
    pending: int = 0
    network_connects_released: int = 0
    #: Rows deleted a retention after their process ended, and a TTL after
    #: they were written (never ended).
    rows_expired_after_termination: int = 0
    rows_expired_after_ttl: int = 0
    joined: int = 0
    unmatched: int = 0
    #: Records written to sysmon-enriched (SYSMON_ENRICH_EVENTS), by Sysmon
    #: event id, and those of them whose process is unknown, by reason.
    enriched_by_event_id: Counter[int] = field(default_factory=Counter)
    enriched_unmatched_by_reason: Counter[str] = field(default_factory=Counter)
    #: Sysmon 8/10 records sent to their target's partition (the second hop).
    target_lookups_routed: int = 0
    #: Addresses of Sysmon 22 answers kept, and connects named by one (dst_query_name).
    dns_answers_kept: int = 0
    connects_named: int = 0
    dead_lettered: int = 0
    #: Events read with unpaired UTF-16 surrogates replaced by U+FFFD
    #: (sysmon_faust.core.normalize.parse_json_object).
    surrogates_replaced: int = 0
    #: Records written to sysmon-alerts at once (a group's first match, or
    #: every match with SYSMON_ALERT_WINDOW=0); rule matches in all; matches
    #: counted into an open group; group updates written when a window closed
    #: (sysmon_faust.core.alert_groups).
    alerts: int = 0
    alert_matches: int = 0
    alert_matches_grouped: int = 0
    alert_group_updates: int = 0
    #: Joins parked for an ancestor's link from another worker, those released
    #: when the wait was over rather than settled, those parked now, and
    #: those not parked because parking was full (sysmon_faust.core.join.parking).
    ancestry_waits: int = 0
    ancestry_parked: int = 0
    ancestry_parking_full: int = 0
    #: Records fetched before a rebalance's seek, dropped because the seek
    #: brings them again in order (sysmon_faust.compat.faust_fixes, 9.).
    dropped_before_seek: int = 0
    ancestry_wait_timeouts: int = 0
    #: Seconds (wall clock) joins spent parked, per re-keying partition.
    ancestry_wait_seconds: dict[int, float] = field(default_factory=dict)
    #: Start times decoded from GUIDs and not believed, by why
    #: (sysmon_faust.core.guid_time): the decision took them as unknown.
    guid_start_time_implausible: Counter[str] = field(default_factory=Counter)
    filtered_by_reason: Counter[str] = field(default_factory=Counter)
    #: Sysmon 1/3/5 events normalized, by the shape they came in (sysmon_faust.core.shapes).
    normalized_by_shape: Counter[str] = field(default_factory=Counter)
    unmatched_by_reason: Counter[str] = field(default_factory=Counter)
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    processing_latency: Histogram = field(default_factory=Histogram)
    event_age: Histogram = field(default_factory=Histogram)

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "filtered": self.filtered,
            "normalized": self.normalized,
            "process_creates": self.process_creates,
            "network_connects": self.network_connects,
            "process_terminates": self.process_terminates,
            "terminated_unknown": self.terminated_unknown,
            "changelog_records_bulk_restored": self.changelog_records_bulk_restored,
            "pending_connects": self.pending,
            "released_after_wait": self.network_connects_released,
            "rows_expired_after_termination": self.rows_expired_after_termination,
            "rows_expired_after_ttl": self.rows_expired_after_ttl,
            # Events the join agent has handled: equal to ``normalized`` (summed
            # over workers) once the join has caught up with the intake.
            "join_handled": self.process_creates
            + self.network_connects
            + self.process_terminates
            + self.other_events,
            "other_events": self.other_events,
            "sigma_rules_loaded": self.sigma_rules_loaded,
            "sigma_rules_refused": self.sigma_rules_refused,
            "context_rules_skipped": self.context_rules_skipped,
            "joined": self.joined,
            "unmatched": self.unmatched,
            "enriched": sum(self.enriched_by_event_id.values()),
            "enriched_by_event_id": {
                str(event_id): count
                for event_id, count in sorted(self.enriched_by_event_id.items())
            },
            "enriched_unmatched_by_reason": dict(self.enriched_unmatched_by_reason),
            "target_lookups_routed": self.target_lookups_routed,
            "dns_answers_kept": self.dns_answers_kept,
            "connects_named": self.connects_named,
            "dead_lettered": self.dead_lettered,
            "surrogates_replaced": self.surrogates_replaced,
            "alerts": self.alerts,
            "alert_matches": self.alert_matches,
            "alert_matches_grouped": self.alert_matches_grouped,
            "alert_group_updates": self.alert_group_updates,
            "dropped_before_seek": self.dropped_before_seek,
            "ancestry_waits": self.ancestry_waits,
            "ancestry_wait_timeouts": self.ancestry_wait_timeouts,
            "ancestry_parked": self.ancestry_parked,
            "ancestry_parking_full": self.ancestry_parking_full,
            "ancestry_wait_seconds": {
                str(p): round(s, 3) for p, s in sorted(self.ancestry_wait_seconds.items())
            },
            "guid_start_time_implausible": dict(self.guid_start_time_implausible),
            "filtered_by_reason": dict(self.filtered_by_reason),
            "normalized_by_shape": dict(self.normalized_by_shape),
            "unmatched_by_reason": dict(self.unmatched_by_reason),
            "alerts_by_rule": dict(self.alerts_by_rule),
        }


#: The counters of this worker process.
stats = PipelineStats()
