"""When a partition counts as stalled: lag, and a committed offset that does not move."""

from __future__ import annotations

from sysmon_faust.stall import Stalled, StallWatch


def test_a_partition_with_lag_whose_offset_does_not_move_is_stalled_after_the_timeout() -> None:
    watch = StallWatch(timeout_seconds=60)
    watch.observe([("in[0]", 100, 50)], now=0)
    watch.observe([("in[0]", 100, 80)], now=59)
    assert watch.stalled(59) == []
    watch.observe([("in[0]", 100, 90)], now=60)
    assert watch.stalled(60) == [Stalled("in[0]", 90, 60)]
    assert watch.unmoved_seconds(60) == {"in[0]": 60}
    # It moves again: healthy at once.
    watch.observe([("in[0]", 101, 89)], now=61)
    assert watch.stalled(61) == []


def test_a_partition_without_lag_is_not_waiting_for_anything() -> None:
    watch = StallWatch(timeout_seconds=60)
    watch.observe([("in[0]", 100, 0)], now=0)
    watch.observe([("in[0]", 100, 0)], now=600)
    assert watch.stalled(600) == []
    # Records arrive: its clock starts when it was last caught up, not when it last moved.
    watch.observe([("in[0]", 100, 5)], now=601)
    assert watch.stalled(659) == []
    watch.observe([("in[0]", 100, 5)], now=661)
    assert [s.partition for s in watch.stalled(661)] == ["in[0]"]


def test_nothing_committed_yet_counts_as_a_position_and_revoked_partitions_are_forgotten() -> None:
    watch = StallWatch(timeout_seconds=10)
    watch.observe([("a[0]", None, 5), ("a[1]", 7, 3)], now=0)
    watch.observe([("a[0]", None, 5), ("a[1]", 7, 3)], now=10)
    assert [s.partition for s in watch.stalled(10)] == ["a[0]", "a[1]"]
    watch.observe([("a[0]", 0, 5)], now=11)  # a[1] revoked; a[0] committed its first offset
    assert watch.stalled(20) == []
    assert watch.unmoved_seconds(20) == {"a[0]": 9}
