"""Joins parked for their ancestry: keys, order per process, replays, when to look again."""

from __future__ import annotations

import pytest

from sysmon_faust.core.join import grace
from sysmon_faust.core.join.parking import (
    CHECK_EVERY_MS,
    PARKED_PREFIX,
    ParkedJoin,
    Parking,
    is_parked_key,
    parked_key,
)

A = "{03ba39f5-6e79-5ce0-0000-001032d21002}"
B = "{03ba39f5-6e79-5ce0-0000-001032d21003}"


def parked(guid: str, event_time_ms: int, offset: int, deadline_ms: int = 10_000) -> ParkedJoin:
    return ParkedJoin(
        key=parked_key(guid, event_time_ms, offset, 0),
        connect={"process_guid": guid, "dst_port": offset},
        process={"process_guid": guid},
        event_time_ms=event_time_ms,
        received=None,
        parked_at_ms=deadline_ms - 5_000,
        deadline_ms=deadline_ms,
    )


def test_parked_keys_stay_apart_from_the_grace_buffers_keys() -> None:
    key = parked_key(A, 1_000, 7, 2)
    assert is_parked_key(key)
    assert key == PARKED_PREFIX + grace.pending_key(A, 1_000, 7, 2)
    # Before every grace key in RocksDB's byte order, and never one of them.
    assert key < grace.pending_key(A, 0, 0, 0)
    assert not key.startswith(grace.process_prefix(A))
    assert not is_parked_key(grace.pending_key(A, 1_000, 7, 2))


def test_a_parked_join_round_trips_through_its_record() -> None:
    join = parked(A, 1_000, 7)
    assert ParkedJoin.decode(join.key, join.encode()) == join
    with pytest.raises(ValueError, match="not a parked join"):
        ParkedJoin.decode(join.key, b'{"connect": {}}')
    with pytest.raises(ValueError, match="not a parked join"):
        ParkedJoin.decode(join.key, b"not json")


def test_a_process_releases_its_joins_in_event_time_order_whatever_order_they_parked_in() -> None:
    parking = Parking()
    later, earlier = parked(A, 2_000, 1), parked(A, 1_000, 2)
    assert parking.park(0, later)
    assert parking.park(0, earlier)
    assert parking.park(0, parked(B, 1_500, 3))
    assert parking.holds(0, A) == 2
    assert parking.holds(1, A) == 0  # another partition
    assert parking.count() == 3
    assert parking.take(0, A) == [earlier, later]
    assert parking.holds(0, A) == 0
    assert parking.take(0, A) == []
    assert parking.partitions() == [0]


def test_a_join_parked_twice_is_one() -> None:
    parking = Parking()
    assert parking.park(0, parked(A, 1_000, 1))
    assert not parking.park(0, parked(A, 1_000, 1))  # a replay of the same record
    assert parking.holds(0, A) == 1


def test_load_brings_back_what_the_table_holds_grouped_by_process() -> None:
    joins = [parked(A, 1_000, 1), parked(A, 2_000, 2), parked(B, 1_500, 3)]
    parking = Parking()
    parking.park(0, parked(B, 9_000, 9))
    assert not parking.loaded(3)
    stored = sorted((join.key, join.encode()) for join in joins)
    broken = (parked_key(A, 5_000, 5, 0), b'{"connect": 1}')
    unreadable = parking.load(3, [*stored, broken])
    assert [key for key, _ in unreadable] == [broken[0]]
    assert "not a parked join" in unreadable[0][1]
    assert parking.loaded(3)
    assert parking.count() == 4  # the broken record is left out
    assert [guid for guid, _ in parking.processes(3)] == [A, B]
    assert parking.take(3, A) == joins[:2]
    assert parking.count() == 2
    parking.forget()
    assert not parking.loaded(3)
    assert parking.count() == 0


def test_a_partition_is_looked_at_when_the_tree_moved_at_most_every_interval() -> None:
    parking = Parking()
    assert not parking.due_for_a_look(0, tree_version=1, now_ms=0)  # nothing parked
    parking.park(0, parked(A, 1_000, 1, deadline_ms=10_000))
    assert parking.due_for_a_look(0, tree_version=1, now_ms=0)
    parking.looked(0, tree_version=1, now_ms=0)
    assert not parking.due_for_a_look(0, tree_version=1, now_ms=5_000)  # nothing new read
    assert not parking.due_for_a_look(0, tree_version=2, now_ms=CHECK_EVERY_MS - 1)
    assert parking.due_for_a_look(0, tree_version=2, now_ms=CHECK_EVERY_MS)


def test_a_partition_is_looked_at_once_a_wait_is_over_even_if_nothing_was_read() -> None:
    parking = Parking()
    parking.park(0, parked(A, 1_000, 1, deadline_ms=10_000))
    parking.park(0, parked(B, 1_000, 2, deadline_ms=8_000))
    parking.looked(0, tree_version=1, now_ms=0)
    assert not parking.due_for_a_look(0, tree_version=1, now_ms=7_999)
    assert parking.due_for_a_look(0, tree_version=1, now_ms=8_000)
    parking.take(0, B)
    assert not parking.due_for_a_look(0, tree_version=1, now_ms=9_999)
    assert parking.due_for_a_look(0, tree_version=1, now_ms=10_000)
