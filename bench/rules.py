"""The Sigma rules' CPU per event: no rules, the shipped rules, SigmaHQ's Windows corpus.

Pure Python, no Kafka, one process: the benchmark's generated workload is
normalized as the intake does with the default settings (every Sysmon
type that carries a ProcessGuid is enriched, ``SYSMON_ENRICH_EVENTS``, so
it reaches the rules; an event of another id no rule may match is dropped
before it is mapped) and every event left matched as the join matches it
(:mod:`sysmon_faust.core.sigma`: its Sysmon fields, the index, the lower-case
copy when a rule is to be tried, the candidate rules), rounds
alternating between the rule sets; the fastest round of each counts. What a
rule set costs is its time per event minus that of no rules. Also: how many
rules the index hands to the full test per event (of those events whose id
has rules), which is what keeps a corpus of 1,864 rules cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.sigma import fields, ruleset
from sysmon_faust.core.sigma.values import Fields
from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from sysmon_faust.settings import DEFAULT_RULES, Settings

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "sigma" / "rules" / "windows"
ROUNDS = 5


def _views(rules: ruleset.RuleSet, values: list[bytes]) -> Iterator[tuple[int, Fields]]:
    """(event id, view) of each event that reaches the rules, as in the
    worker with its default settings: the intake keeps every event of an enriched id and
    drops those of other ids no rule may match before mapping them, and the join views an
    event on the fields its id's rules test."""
    other, wants = rules.intake_filter(Settings().enrich_events)
    for value in values:
        event = normalize(value, other, wants)
        if not isinstance(event, NormalizedEvent) or not rules.covers(event.event_id):
            continue
        view = fields.event_fields(
            event.event_id,
            {**event.fields, fields.EVENT_DATA: event.event_data},
            rules.fields_of(event.event_id),
        )
        yield event.event_id, view


def _round(rules: ruleset.RuleSet, values: list[bytes]) -> float:
    """Seconds to normalize ``values`` and match what reaches the rules."""
    started = time.perf_counter()
    for event_id, view in _views(rules, values):
        rules.match(event_id, view)  # as the join: the lower-case copy only when needed
    return time.perf_counter() - started


def _candidates(rules: ruleset.RuleSet, values: list[bytes]) -> tuple[int, int]:
    """(events that reach the rules, candidate rules the index hands them), untimed."""
    events = candidates = 0
    for event_id, view in _views(rules, values):
        events += 1
        candidates += len(rules.candidates(event_id, view))
    return events, candidates


def measure(events: int = 100_000) -> dict[str, Any] | None:
    """µs per event for each rule set, the rules' share, and the index's candidates per event."""
    sets = {"no_rules": ruleset.RuleSet(()), "default": ruleset.load([DEFAULT_RULES])}
    if CORPUS.is_dir():
        sets["sigmahq_windows"] = ruleset.load([DEFAULT_RULES, CORPUS])
    values = [event.value for event in Workload(WorkloadConfig(events=events, hosts=200))]
    best = {name: float("inf") for name in sets}
    for _ in range(ROUNDS):
        for name, rules in sets.items():
            best[name] = min(best[name], _round(rules, values))
    seen = {name: _candidates(rules, values) for name, rules in sets.items()}
    bare = best["no_rules"] / len(values) * 1e6
    return {
        name: {
            "rules": len(sets[name]),
            "us_per_event": round(best[name] / len(values) * 1e6, 2),
            "rules_us_per_event": round(best[name] / len(values) * 1e6 - bare, 2),
            "events_with_rules": seen[name][0],
            "candidates_per_event": round(seen[name][1] / seen[name][0], 2) if seen[name][0] else 0,
        }
        for name in sets
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
