from __future__ import annotations

import random

import pytest

from sysmon_faust.core.join.expiry import (
    CONNECT_GRACE,
    KINDS,
    MAX_CLOCK_AHEAD_MS,
    ROW_RETENTION,
    ROW_TTL,
    STREAM_TIME_KEY,
    StreamClock,
    decode_stream_time,
    encode_stream_time,
    index_key,
    parse_index_key,
)

GUID = b"{905cc552-43ac-5c91-0000-0010b44bb703}"
WALL = 1_764_000_000_000  # a wall-clock time (ms)
OLD = 1_553_009_293_000  # an event time from a 2019 recording


def test_index_keys_sort_by_kind_then_deadline() -> None:
    rng = random.Random(4)
    entries = [
        (kind, rng.randrange(0, 2**45), f"{{{rng.getrandbits(128):032x}}}".encode())
        for kind in KINDS
        for _ in range(200)
    ]
    keys = sorted(index_key(*entry) for entry in entries)
    assert [parse_index_key(key) for key in keys] == sorted(entries)
    # The stream time's key is not an entry of any kind.
    assert not any(STREAM_TIME_KEY.startswith(kind) for kind in KINDS)


@pytest.mark.parametrize("kind", [CONNECT_GRACE, ROW_RETENTION, ROW_TTL])
def test_index_key_round_trip(kind: bytes) -> None:
    assert parse_index_key(index_key(kind, OLD, GUID)) == (kind, OLD, GUID)


@pytest.mark.parametrize("garbage", [b"G123", b"", STREAM_TIME_KEY, b"X" + bytes(8) + GUID])
def test_parse_index_key_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(ValueError, match="expiry index"):
        parse_index_key(garbage)


def test_stream_time_round_trip() -> None:
    assert decode_stream_time(encode_stream_time(OLD)) == OLD


def test_stream_time_is_the_greatest_event_time_while_events_outrun_the_clock() -> None:
    clock = StreamClock()
    # A replay of 2019 data: event time moves faster than the wall clock.
    assert clock.observe(0, OLD, WALL) == OLD
    assert clock.observe(0, OLD + 60_000, WALL + 10) == OLD + 60_000
    # An older event (late, or a host with its clock behind) does not move it back.
    assert clock.observe(0, OLD - 3_600_000, WALL + 20) == OLD + 60_000 + 10


def test_stream_time_moves_with_the_wall_clock_when_no_event_does() -> None:
    clock = StreamClock()
    clock.observe(0, OLD, WALL)
    assert clock.now(0, WALL + 5_000) == OLD + 5_000
    assert clock.now(0, WALL + 5_000) == OLD + 5_000  # no time passed, no change
    # The clock going back (NTP) never moves stream time back.
    assert clock.now(0, WALL + 1_000) == OLD + 5_000


def test_partitions_have_their_own_stream_time() -> None:
    clock = StreamClock()
    clock.observe(0, OLD, WALL)
    clock.observe(1, OLD + 86_400_000, WALL)
    assert clock.now(0, WALL) == OLD
    assert not clock.knows(2)
    with pytest.raises(KeyError):
        clock.now(2, WALL)


def test_an_event_from_the_future_counts_as_a_little_ahead_of_the_wall_clock() -> None:
    clock = StreamClock()
    clock.observe(0, OLD, WALL)
    year_2099 = 4_070_908_800_000
    assert clock.observe(0, year_2099, WALL) == WALL + MAX_CLOCK_AHEAD_MS


def test_a_restart_goes_on_from_the_kept_stream_time() -> None:
    clock = StreamClock()
    clock.start(3, OLD, WALL)
    assert clock.knows(3)
    assert clock.now(3, WALL + 2_000) == OLD + 2_000
    clock.forget(3)
    assert not clock.knows(3)
