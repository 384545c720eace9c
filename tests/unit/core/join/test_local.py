""":class:`LocalJoin` settled per event (``rules test``) and every few thousand events (as a
worker settles before each commit, and ``bench/engine.py`` feeds) makes the same records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.sigma import ruleset
from sysmon_faust.core.sigma.logsource import SYSMON_EVENT_IDS
from sysmon_faust.core.synthetic import Workload, WorkloadConfig

DEFAULT_RULES = Path(__file__).parents[4] / "sysmon_faust" / "core" / "default_rules"


def _records(settle_every: int) -> Counter[bytes]:
    rules = ruleset.load([DEFAULT_RULES])
    enrich = frozenset(SYSMON_EVENT_IDS)
    join = LocalJoin.with_defaults(rules, 5_000, 4, 600_000, enrich_events=enrich)
    other_ids, wanted = rules.intake_filter(enrich)
    made = []
    # The bench's mix: creations, connects, every other Sysmon type, processes
    # started before the stream (their events wait out the grace).
    for n, event in enumerate(Workload(WorkloadConfig(events=20_000, hosts=20)), 1):
        outcome = normalize(event.value, other_ids, wanted)
        if isinstance(outcome, NormalizedEvent):
            made += join.feed(outcome, settle=settle_every == 1)
        if n % settle_every == 0:
            join.settle()
    made += join.finish()
    for output in made:
        output.row.pop("detected_at", None)  # an alert's wall clock: the only field that differs
    sort = orjson.OPT_SORT_KEYS
    return Counter(b"%s %s %s" % (o.topic.encode(), o.key or b"", orjson.dumps(o.row, option=sort))
                   for o in made)  # fmt: skip


def test_settling_every_few_thousand_events_makes_the_same_records() -> None:
    per_event = _records(1)
    assert sum(per_event.values()) > 10_000  # enriched records of every type, not a trivial run
    assert _records(5_000) == per_event
