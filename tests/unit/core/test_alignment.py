from __future__ import annotations

from sysmon_faust.core.alignment import InStep

WALL = 1_764_000_000_000
T = 1_553_009_293_000  # event times of a 2019 recording


def never_more(_: int) -> bool:
    return False


def test_events_of_several_partitions_come_out_in_event_time_order() -> None:
    in_step: InStep[str] = InStep()
    # Each partition read a fetch's worth, one after the other.
    for n in range(5):
        in_step.add(0, T + n * 1000, f"p0-{n}", WALL)
    for n in range(5):
        in_step.add(1, T + n * 1000 + 500, f"p1-{n}", WALL)
    released = list(in_step.release(never_more, WALL))
    assert released == [f"p{p}-{n}" for n in range(5) for p in (0, 1)]


def test_a_partition_keeps_its_order_and_a_late_event_does_not_jump_the_queue() -> None:
    in_step: InStep[str] = InStep()
    in_step.add(0, T + 5_000, "a", WALL)
    in_step.add(0, T, "late", WALL)  # sorted as of T + 5 s: after "a", before later ones
    in_step.add(1, T + 1_000, "b", WALL)
    in_step.add(1, T + 6_000, "c", WALL)
    assert list(in_step.release(never_more, WALL)) == ["b", "a", "late", "c"]


def test_release_waits_for_a_partition_with_records_not_fetched_yet() -> None:
    in_step: InStep[str] = InStep(max_wait_ms=1_000)
    in_step.track([0, 1])
    in_step.add(0, T, "p0", WALL)

    def partition_1_has_more(partition: int) -> bool:
        return partition == 1

    assert list(in_step.release(partition_1_has_more, WALL)) == []
    assert in_step.first(0) == "p0" and in_step.buffered(0) == 1
    # Its records arrive: both go, in order.
    in_step.add(1, T - 1_000, "p1", WALL + 10)
    assert list(in_step.release(never_more, WALL + 10)) == ["p1", "p0"]


def test_a_slow_partition_holds_the_others_back_only_for_a_while() -> None:
    in_step: InStep[str] = InStep(max_wait_ms=1_000)
    in_step.track([0, 1])
    in_step.add(0, T, "p0", WALL)
    assert list(in_step.release(lambda p: p == 1, WALL)) == []
    assert list(in_step.release(lambda p: p == 1, WALL + 999)) == []
    assert list(in_step.release(lambda p: p == 1, WALL + 1_000)) == ["p0"]
    # The others were held back for partition 1 for the whole second.
    assert in_step.held_ms == {1: 1_000}


def test_the_time_held_back_is_counted_per_partition_it_was_held_for() -> None:
    in_step: InStep[str] = InStep(max_wait_ms=1_000)
    in_step.track([0, 1, 2])
    in_step.add(0, T, "p0", WALL)
    assert list(in_step.release(lambda p: p == 1, WALL)) == []
    in_step.add(1, T + 1, "p1", WALL + 300)  # came after 300 ms
    assert list(in_step.release(lambda p: p == 2, WALL + 300)) == []  # now waits for 2
    in_step.add(2, T + 2, "p2", WALL + 350)
    assert list(in_step.release(never_more, WALL + 350)) == ["p0", "p1", "p2"]
    assert in_step.held_ms == {1: 300, 2: 50}
    # Nothing buffered: nothing is held back, whoever has records to fetch.
    assert list(in_step.release(lambda p: True, WALL + 5_000)) == []
    assert in_step.held_ms == {1: 300, 2: 50}


def test_a_partition_with_nothing_left_to_read_holds_nobody_back() -> None:
    in_step: InStep[str] = InStep()
    in_step.track([0, 1, 2])
    in_step.add(2, T, "p2", WALL)
    assert list(in_step.release(never_more, WALL)) == ["p2"]


def test_a_host_years_ahead_counts_as_a_little_ahead_of_the_wall_clock() -> None:
    in_step: InStep[str] = InStep()
    in_step.add(0, WALL + 10 * 365 * 86_400_000, "future", WALL)
    in_step.add(1, WALL + 60_000, "soon", WALL)
    in_step.add(1, WALL + 400_000, "later", WALL)
    assert list(in_step.release(never_more, WALL)) == ["soon", "future", "later"]


def test_a_dropped_partition_is_forgotten() -> None:
    in_step: InStep[str] = InStep()
    in_step.add(0, T, "p0", WALL)
    in_step.drop(0)
    assert in_step.first(0) is None and in_step.buffered(0) == 0
    assert list(in_step.release(lambda p: True, WALL)) == []
