from __future__ import annotations

import random

import pytest

from sysmon_faust.core.join.grace import (
    GraceLimits,
    admit,
    creation_may_still_come,
    parse_pending_key,
    pending_key,
    process_prefix,
)

LIMITS = GraceLimits(grace_ms=300_000, max_per_process=3, max_total=10)
GUID = "{905cc552-43ac-5c91-0000-0010b44bb703}"


@pytest.mark.parametrize(
    ("for_process", "in_total", "admitted"),
    [(0, 0, True), (2, 2, True), (3, 3, False), (0, 9, True), (0, 10, False), (1, 50, False)],
)
def test_admit_caps_per_process_and_in_total(
    for_process: int, in_total: int, admitted: bool
) -> None:
    assert admit(for_process, in_total, LIMITS) is admitted


def test_a_process_s_connects_are_one_range_in_event_time_order() -> None:
    rng = random.Random(6)
    guids = [f"{{{rng.getrandbits(128):032x}}}" for _ in range(20)]
    entries = [
        (guid, rng.randrange(0, 2**45), rng.randrange(0, 2**40), rng.randrange(0, 500))
        for guid in guids
        for _ in range(rng.randrange(1, 12))
    ]
    keys = sorted(pending_key(*entry) for entry in entries)
    # Byte order is (process, event time, position) order...
    assert [parse_pending_key(key) for key in keys] == sorted(entries)
    # ...and one process's keys are exactly those under its prefix, contiguous.
    for guid in guids:
        under = [n for n, key in enumerate(keys) if key.startswith(process_prefix(guid))]
        assert under == list(range(under[0], under[-1] + 1))
        assert len(under) == sum(1 for entry in entries if entry[0] == guid)


def test_the_same_connect_read_twice_has_the_same_key() -> None:
    assert pending_key(GUID, 1_553_009_293_000, 17, 3) == pending_key(
        GUID, 1_553_009_293_000, 17, 3
    )
    assert pending_key(GUID, 1_553_009_293_000, 17, 3) != pending_key(
        GUID, 1_553_009_293_000, 17, 4
    )


def test_pending_key_round_trip_and_rejects_garbage() -> None:
    key = pending_key(GUID, 1_553_009_293_000, 42, 7)
    assert parse_pending_key(key) == (GUID, 1_553_009_293_000, 42, 7)
    with pytest.raises(ValueError, match="pending connect"):
        parse_pending_key(GUID.encode())
    with pytest.raises(ValueError, match="pending connect"):
        parse_pending_key(process_prefix(GUID) + b"short")


STARTED = 1_558_212_217_000  # {03ba39f5-6e79-5ce0-...} started then


@pytest.mark.parametrize(
    ("connect_time", "may_come"),
    [
        (STARTED - 60_000, True),  # the connect's time is before the process's start
        (STARTED + 1_000, True),
        (STARTED + 300_000, True),  # within the grace (and the second the GUID drops)
        (STARTED + 301_000, False),  # started more than the grace before the connect
        (STARTED + 86_400_000, False),
    ],
)
def test_a_connect_waits_only_if_its_creation_may_still_come(
    connect_time: int, may_come: bool
) -> None:
    assert creation_may_still_come(STARTED, connect_time, grace_ms=300_000) is may_come
    # An unknown start time (none in the GUID, or not believed) waits.
    assert creation_may_still_come(None, connect_time, grace_ms=300_000)
