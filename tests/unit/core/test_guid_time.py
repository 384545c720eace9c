"""The start time a ProcessGuid carries, and when it is not believed (core/guid_time.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sysmon_faust.core.guid_time import (
    FUTURE,
    FUTURE_TOLERANCE_MS,
    MAX_PROCESS_AGE_MS,
    TOO_OLD,
    StartTime,
    plausible_start_ms,
    process_start_ms,
)


def utc_ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("guid", "start"),
    [
        # From the recordings: the GUID's time is the creation's UtcTime, to the second.
        ("{03ba39f5-6e79-5ce0-0000-001032d21002}", "2019-05-18 20:43:37"),
        ("03ba39f5-6e79-5ce0-0000-001032d21002", "2019-05-18 20:43:37"),  # no braces
        ("{00000000-0000-0000-0000-000000000000}", "1970-01-01 00:00:00"),
    ],
)
def test_process_start_comes_from_the_guid(guid: str, start: str) -> None:
    assert process_start_ms(guid) == utc_ms(start)


@pytest.mark.parametrize("guid", ["{not-a-guid}", "{03ba39f5-6e79x-5ce0-0000-001032d21002}", ""])
def test_no_start_time_from_what_is_no_sysmon_guid(guid: str) -> None:
    assert process_start_ms(guid) is None


SYSMON_GUID = "{03ba39f5-6e79-5ce0-0000-001032d21002}"
STARTED = utc_ms("2019-05-18 20:43:37")


@pytest.mark.parametrize(
    ("event_time", "expected"),
    [
        (STARTED, StartTime(STARTED)),
        (STARTED + 1_000, StartTime(STARTED)),  # the creation, 0-1 s later
        (STARTED + 86_400_000 * 300, StartTime(STARTED)),  # a service up for 300 days
        (STARTED - FUTURE_TOLERANCE_MS, StartTime(STARTED)),  # a clock stepped back
        (STARTED - FUTURE_TOLERANCE_MS - 1, StartTime(None, FUTURE)),
        (STARTED - 86_400_000, StartTime(None, FUTURE)),
        (STARTED + MAX_PROCESS_AGE_MS, StartTime(STARTED)),
        (STARTED + MAX_PROCESS_AGE_MS + 1, StartTime(None, TOO_OLD)),
    ],
)
def test_a_start_time_is_believed_only_when_plausible_for_the_event(
    event_time: int, expected: StartTime
) -> None:
    assert plausible_start_ms(SYSMON_GUID, event_time) == expected


@pytest.mark.parametrize(
    ("guid", "why"),
    [
        # From ../shared/cases/guid_without_start_time: 0x32631bbc is 1996,
        # 0x2447a92d 1989 — before Sysmon existed.
        ("{a3b1799d-1bbc-3263-0000-00100f844fef}", TOO_OLD),
        ("{a3b1799d-a92d-2447-0000-0010839fbc58}", TOO_OLD),
        ("{a3b1799d-ffff-ffff-0000-0010839fbc58}", FUTURE),  # 2106
        ("{00000000-0000-0000-0000-000000000000}", TOO_OLD),
    ],
)
def test_guids_whose_time_groups_are_no_start_time_are_unknown(guid: str, why: str) -> None:
    assert plausible_start_ms(guid, utc_ms("2026-11-20 09:00:00")) == StartTime(None, why)


def test_a_guid_without_time_groups_is_unknown_and_not_counted_as_implausible() -> None:
    assert plausible_start_ms("{not-a-guid}", STARTED) == StartTime(None, None)
