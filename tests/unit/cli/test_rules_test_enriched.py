"""``sysmon-enriched`` as ``rules test --enriched`` makes it, on the real recordings.

Every event of an id that names its process must come out once, with its
own fields and its process's creation fields and ancestry — compared, as
multisets per file, with an independent reference computed from the raw
file (tests/reference.py: stdlib json, the contract's names restated from
../shared/docs/DATA.md). The worker runs the same engine; the integration
test tests/integration/test_pipeline_recordings.py holds it to the same
reference through Kafka.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sysmon_faust.cli.rules_test import DEFAULT_DEPTH, DEFAULT_GRACE_S, check_file
from sysmon_faust.core.sigma.ruleset import load
from sysmon_faust.settings import DEFAULT_RULES, Settings
from tests.reference import ENRICHED_IDS, RECORDINGS, compute, enriched_expected, enriched_identity
from tests.support import DATASETS


def _enriched(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    check_file(
        path, load([DEFAULT_RULES]), DEFAULT_GRACE_S * 1000, DEFAULT_DEPTH, lambda _: None,
        window_ms=0, enrich_events=Settings().enrich_events, on_enriched=records.append,
    )  # fmt: skip
    return records


def test_the_default_enriches_every_id_that_names_a_process() -> None:
    assert Settings().enrich_events == ENRICHED_IDS


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_enriched_event_equals_the_reference(name: str) -> None:
    path = DATASETS / f"{name}.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared/datasets)")
    expected = compute(path)
    records = _enriched(path)
    by_id = Counter(record["event_id"] for record in records)
    assert by_id == Counter(event.event_id for event in expected.enriched)
    for event_id in by_id:
        got = Counter(enriched_identity(r) for r in records if r["event_id"] == event_id)
        want = Counter(enriched_expected(e) for e in expected.enriched if e.event_id == event_id)
        assert got == want, f"Sysmon {event_id}: {len(got - want)} differ"
    # Some events of other ids than 1/3/5 did find their process in every file.
    assert any(r["process"] is not None and r["event_id"] not in (1, 3, 5) for r in records)
