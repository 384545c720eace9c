from __future__ import annotations

import random

import pytest

from sysmon_faust.grace import (
    BUFFERED_AT_MS,
    EVENT_TIME_MS,
    PENDING_BY_EVENT_TIME,
    PENDING_BY_WALL_TIME,
    GraceLimits,
    admit,
    index_key,
    is_expired,
    parse_index_key,
    release_order,
)

LIMITS = GraceLimits(grace_ms=300_000, max_per_process=3, max_total=10)
GUID = "{905cc552-43ac-5c91-0000-0010b44bb703}"


def waiting_connect(event_time_ms: int, buffered_at_ms: int = 0) -> dict[str, int]:
    return {EVENT_TIME_MS: event_time_ms, BUFFERED_AT_MS: buffered_at_ms}


@pytest.mark.parametrize(
    ("already_waiting", "total", "admitted"),
    [(0, 0, True), (2, 2, True), (3, 3, False), (0, 9, True), (0, 10, False), (1, 50, False)],
)
def test_admit_caps_per_process_and_in_total(
    already_waiting: int, total: int, admitted: bool
) -> None:
    waiting = [waiting_connect(n) for n in range(already_waiting)]
    assert admit(waiting, total, LIMITS) is admitted


def test_release_is_in_event_time_order_whatever_the_arrival_order() -> None:
    times = [5_000, 1_000, 3_000, 1_000, 4_000]
    released = release_order([waiting_connect(t) for t in times])
    assert [c[EVENT_TIME_MS] for c in released] == sorted(times)


@pytest.mark.parametrize(
    ("stream_time", "wall_time", "expired"),
    [
        (1_000 + 299_999, 10_000, False),  # a millisecond short of the grace
        (1_000 + 300_000, 10_000, True),  # the stream moved a grace past it
        (0, 10_000 + 300_000, True),  # quiet partition: the wall clock bounds it
        (0, 10_000 + 299_999, False),
    ],
)
def test_expiry_by_stream_time_or_wall_clock(
    stream_time: int, wall_time: int, expired: bool
) -> None:
    connect = waiting_connect(event_time_ms=1_000, buffered_at_ms=10_000)
    assert is_expired(connect, stream_time, wall_time, LIMITS) is expired


def test_index_keys_sort_by_kind_then_deadline() -> None:
    rng = random.Random(4)
    entries = [
        (kind, rng.randrange(0, 2**45), f"{{{rng.getrandbits(128):032x}}}")
        for kind in (PENDING_BY_EVENT_TIME, PENDING_BY_WALL_TIME)
        for _ in range(200)
    ]
    keys = sorted(index_key(*entry) for entry in entries)
    assert [parse_index_key(key) for key in keys] == sorted(entries)


def test_index_key_round_trip_and_rejects_garbage() -> None:
    key = index_key(PENDING_BY_EVENT_TIME, 1_553_009_293_000, GUID)
    assert parse_index_key(key) == (PENDING_BY_EVENT_TIME, 1_553_009_293_000, GUID)
    with pytest.raises(ValueError, match="expiry index"):
        parse_index_key(b"E123")
