""":class:`LocalJoin` settled per event (``rules test``) and every few thousand events (as a
worker writes its activity summaries before each commit; ``bench/engine.py``) makes the same
records and leaves the same state."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from sysmon_faust.core.join.engine import Output
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.sigma import ruleset
from sysmon_faust.core.sigma.logsource import SYSMON_EVENT_IDS
from sysmon_faust.core.synthetic import Workload, WorkloadConfig

DEFAULT_RULES = Path(__file__).parents[4] / "sysmon_faust" / "core" / "default_rules"


def _serialized(output: Output) -> bytes:
    row = orjson.dumps(output.row, option=orjson.OPT_SORT_KEYS)
    return b"%s %s %s" % (output.topic.encode(), output.key or b"", row)


def _run(settle_every: int) -> tuple[Counter[bytes], dict[str, list[tuple[bytes, bytes]]], int]:
    """(the records made, every store's entries at the end, connects handed out but not
    settled, at most, at a settle)."""
    rules = ruleset.load([DEFAULT_RULES])
    enrich = frozenset(SYSMON_EVENT_IDS)
    # A short alert window and row retention: groups close, rows and their
    # links go, within the stream's ~7 minutes of event time.
    join = LocalJoin.with_defaults(rules, 5_000, 4, 60_000, retention_ms=60_000,
                                   enrich_events=enrich)  # fmt: skip
    other_ids, wanted = rules.intake_filter(enrich)
    made = []
    unsettled = 0
    # The bench's mix: creations, connects, every other Sysmon type, processes
    # started before the stream (their events wait out the grace).
    for n, event in enumerate(Workload(WorkloadConfig(events=20_000, hosts=20)), 1):
        outcome = normalize(event.value, other_ids, wanted)
        if isinstance(outcome, NormalizedEvent):
            made += join.feed(outcome, settle=settle_every == 1)
        if settle_every > 1 and n % settle_every == 0:
            # What waits for a settle (private: no caller but a test needs the count).
            unsettled = max(unsettled, len(join.state._handed_out))
            join.settle()
    made += join.finish()
    for output in made:
        output.row.pop("detected_at", None)  # an alert's wall clock: the only field that differs
    records = Counter(_serialized(output) for output in made)
    state = join.state
    stores = {name: store.items_from(0, b"")
              for name, store in (("rows", state.rows), ("pending", state.pending),
                                  ("index", state.index))}  # fmt: skip
    return records, stores, unsettled


def test_settling_every_few_thousand_events_makes_the_same_records() -> None:
    per_event, stores, _ = _run(1)
    assert sum(per_event.values()) > 10_000  # enriched records of every type, not a trivial run
    deferred, deferred_stores, unsettled = _run(5_000)
    assert unsettled > 0  # the settles were deferred: handed-out connects waited for them
    assert deferred == per_event
    assert deferred_stores == stores
