"""When a part of the worker counts as stalled: lag, and committed offsets that do not move."""

from __future__ import annotations

from sysmon_faust.stream.stall import Stalled, StallWatch


def test_a_part_with_lag_whose_offsets_do_not_move_is_stalled_after_the_timeout() -> None:
    watch = StallWatch(timeout_seconds=60)
    watch.observe([("intake", "in[0]", 100, 50)], now=0)
    watch.observe([("intake", "in[0]", 100, 80)], now=59)
    assert watch.stalled(59) == []
    watch.observe([("intake", "in[0]", 100, 90)], now=60)
    assert watch.stalled(60) == [Stalled("in[0]", 90, 60)]
    assert watch.unmoved_seconds(60) == {"intake": 60}
    # It moves again: not stalled at once.
    watch.observe([("intake", "in[0]", 101, 89)], now=61)
    assert watch.stalled(61) == []


def test_a_part_without_lag_is_not_waiting_for_anything() -> None:
    watch = StallWatch(timeout_seconds=60)
    watch.observe([("join", "j[0]", 100, 0)], now=0)
    watch.observe([("join", "j[0]", 100, 0)], now=600)
    assert watch.stalled(600) == []
    # Records arrive: its clock starts when it was last caught up.
    watch.observe([("join", "j[0]", 100, 5)], now=601)
    assert watch.stalled(659) == []
    watch.observe([("join", "j[0]", 100, 5)], now=661)
    assert [s.partition for s in watch.stalled(661)] == ["j[0]"]


def test_a_partition_held_back_while_its_part_moves_is_not_stalled() -> None:
    # The intake holds back an input partition far ahead in event time
    # (alignment) while it reads the others: that one does not move, the
    # intake does.
    watch = StallWatch(timeout_seconds=10)
    for second in range(0, 100, 5):
        watch.observe(
            [("intake", "in[0]", 7, 5_000), ("intake", "in[1]", 1_000 + second, 90_000)],
            now=second,
        )
        assert watch.stalled(second) == []
    # The join is a part of its own: stuck while the intake moves, it is stalled.
    watch.observe([("intake", "in[1]", 2_000, 1), ("join", "j[0]", 3, 40)], now=100)
    watch.observe([("intake", "in[1]", 2_100, 1), ("join", "j[0]", 3, 40)], now=110)
    assert watch.stalled(110) == [Stalled("j[0]", 40, 10)]
    assert watch.unmoved_seconds(110) == {"intake": 0, "join": 10}


def test_nothing_committed_yet_is_a_position_and_revoked_partitions_are_forgotten() -> None:
    watch = StallWatch(timeout_seconds=10)
    watch.observe([("join", "a[0]", None, 5), ("join", "a[1]", 7, 3)], now=0)
    watch.observe([("join", "a[0]", None, 5), ("join", "a[1]", 7, 3)], now=10)
    assert [s.partition for s in watch.stalled(10)] == ["a[0]", "a[1]"]
    watch.observe([("join", "a[0]", 0, 5)], now=11)  # a[1] revoked; a[0] committed its first
    assert watch.stalled(20) == []
    assert watch.unmoved_seconds(20) == {"join": 9}
