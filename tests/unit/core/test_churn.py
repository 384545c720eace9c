from __future__ import annotations

from collections import Counter

from sysmon_faust.core.churn import Churn, ChurnConfig
from sysmon_faust.core.normalize import NormalizedEvent, normalize

CONFIG = ChurnConfig(processes=10_000, per_second=20, max_lifetime_seconds=60)


def test_events_come_in_event_time_order_with_every_process_s_lifecycle() -> None:
    churn = Churn(CONFIG)
    times: list[int] = []
    kinds: Counter[int] = Counter()
    seen: dict[str, list[int]] = {}
    for event in churn:
        outcome = normalize(event.value, (22,))
        assert isinstance(outcome, NormalizedEvent), outcome
        times.append(outcome.timestamp_ms)
        kinds[outcome.event_id] += 1
        assert outcome.process_guid is not None
        seen.setdefault(outcome.process_guid, []).append(outcome.event_id)
    assert times == sorted(times)
    expected = churn.expected
    assert kinds[1] == kinds[22] == kinds[3] == CONFIG.processes == len(seen)
    assert kinds[5] == sum(ended is not None for ended in expected.ended_ms)
    assert 0.02 < 1 - kinds[5] / kinds[1] < 0.09  # the never-ending share
    assert all(events[:3] == [1, 22, 3] and events[3:] in ([], [5]) for events in seen.values())
    assert expected.events == sum(kinds.values())


def test_live_rows_plateau_with_retention_and_ttl_and_grow_without() -> None:
    churn = Churn(CONFIG)
    list(churn)
    expected = churn.expected
    end = expected.created_ms[-1]
    start = expected.created_ms[0]

    def at(share: float, retention_ms: int, ttl_ms: int) -> int:
        return expected.live_rows(int(start + share * (end - start)), retention_ms, ttl_ms)

    bounded = [at(share, 30_000, 120_000) for share in (0.5, 0.75, 1.0)]
    assert max(bounded) - min(bounded) < 0.15 * max(bounded)
    assert max(bounded) < CONFIG.processes / 4
    forever = 10 * 365 * 86_400_000
    assert at(1.0, forever, forever) == CONFIG.processes
