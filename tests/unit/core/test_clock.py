"""Record timestamps: the event's time, held to what Kafka accepts."""

from __future__ import annotations

import pytest

from sysmon_faust.core.clock import record_timestamp_ms

NOW = 1_764_400_000_000  # 2025-11-29


@pytest.mark.parametrize(
    ("event_time_ms", "expected"),
    [
        (NOW - 86_400_000, NOW - 86_400_000),  # a day old: its own time
        (NOW, NOW),
        (NOW + 1, NOW),  # ahead of the clock: now (Kafka refuses > 1 h ahead)
        (NOW + 2 * 3_600_000, NOW),
        (0, 0),
        (-1, 0),  # before 1970: Kafka refuses negative timestamps
        (-86_400_000 * 365, 0),
    ],
)
def test_record_timestamp_is_the_event_time_within_what_kafka_takes(
    event_time_ms: int, expected: int
) -> None:
    assert record_timestamp_ms(event_time_ms, NOW) == expected
