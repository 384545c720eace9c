"""The generated workload: reproducible, shaped like the recordings, and its expectations hold."""

from __future__ import annotations

from collections import Counter

from sysmon_faust.core.normalize import Filtered, NormalizedEvent, normalize
from sysmon_faust.core.synthetic import Workload, WorkloadConfig, sample_lines


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = WorkloadConfig(events=500)
    first = [e.value for e in Workload(config)]
    assert first == [e.value for e in Workload(config)]
    assert first != [e.value for e in Workload(WorkloadConfig(events=500, seed=8))]


def test_mix_sizes_and_expected_joins_match_an_in_order_join() -> None:
    workload = Workload(WorkloadConfig(events=20_000, early_connect_share=0.2))
    events = list(workload)
    kinds: Counter[str] = Counter()
    created: set[str | None] = set()
    joined = 0
    for event in events:
        outcome = normalize(event.value)
        if isinstance(outcome, NormalizedEvent):
            kinds[str(outcome.event_id)] += 1
            if outcome.event_id == 1:
                created.add(outcome.process_guid)
            elif outcome.process_guid in created:
                joined += 1
        else:
            assert isinstance(outcome, Filtered), outcome
            kinds["sysmon_other" if outcome.event_id else "not_sysmon"] += 1
    expected = workload.expected
    assert expected.events == len(events)
    assert kinds["1"] == expected.process_creates
    assert kinds["3"] == expected.network_connects
    assert joined == expected.joined_in_order  # early connects need the grace buffer
    assert 0.005 < kinds["1"] / len(events) < 0.02
    assert 0.03 < kinds["3"] / len(events) < 0.08
    assert kinds["not_sysmon"] > 0 and kinds["sysmon_other"] > 0
    sizes = sorted(len(event.value) for event in events)
    assert 700 < sizes[len(sizes) // 2] < 2048


def test_demo_sample_holds_wmi_lateral_movements() -> None:
    lines = sample_lines()
    assert sum(b"WmiPrvSE.exe -secured" in line and b'"event_id":1,' in line for line in lines) >= 3


def test_early_connects_precede_their_creation_by_at_most_the_configured_time() -> None:
    config = WorkloadConfig(events=20_000, early_connect_share=0.7, early_max_seconds=120)
    workload = Workload(config)
    first_connect_ms: dict[str, int] = {}
    early_gaps: list[int] = []
    created: set[str] = set()
    for event in workload:
        outcome = normalize(event.value)
        if not isinstance(outcome, NormalizedEvent) or outcome.process_guid is None:
            continue
        guid = outcome.process_guid
        if outcome.event_id == 3 and guid not in created:
            first_connect_ms.setdefault(guid, outcome.timestamp_ms)
        elif outcome.event_id == 1:
            created.add(guid)
            if guid in first_connect_ms:
                early_gaps.append(outcome.timestamp_ms - first_connect_ms[guid])
    expected = workload.expected
    assert len(early_gaps) == expected.joined_early > 0
    assert all(0 <= gap <= 120_000 for gap in early_gaps)
    assert max(early_gaps) > 60_000  # spread over the window, not bunched at its start
    assert expected.joined_early / (expected.joined_early + expected.joined_in_order) >= 0.2
