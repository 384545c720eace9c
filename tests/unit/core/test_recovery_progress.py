"""Recovery progress from samples of the records left: totals, share, rate, time left."""

from __future__ import annotations

import pytest

from sysmon_faust.core.recovery_progress import RATE_WINDOW_S, RecoveryProgress


def test_a_steady_recovery_reports_share_rate_and_time_left() -> None:
    progress = RecoveryProgress()
    progress.observe(100_000, 0.0)
    assert progress.records_per_second is None and progress.eta_seconds is None
    for second in range(1, 6):
        progress.observe(100_000 - 5_000 * second, float(second))
    assert progress.records_total == 100_000 and progress.records_done == 25_000
    assert progress.percent == pytest.approx(25.0)
    assert progress.records_per_second == pytest.approx(5_000)
    assert progress.eta_seconds == pytest.approx(75_000 / 5_000)
    assert "25,000/100,000" in progress.log_line() and "15 s left" in progress.log_line()


def test_the_rate_is_that_of_the_last_window_not_of_a_slow_start() -> None:
    progress = RecoveryProgress()
    progress.observe(1_000_000, 0.0)
    remaining = 1_000_000
    for second in range(1, 31):
        remaining -= 1_000 if second <= 15 else 50_000
        progress.observe(remaining, float(second))
    assert progress.records_per_second == pytest.approx(50_000)
    assert progress._samples[0][0] >= 30 - RATE_WINDOW_S - 1


def test_partitions_added_midway_grow_the_total_without_counting_as_restored() -> None:
    progress = RecoveryProgress()
    progress.observe(10_000, 0.0)
    progress.observe(6_000, 1.0)  # 4,000 read
    progress.observe(26_000, 2.0)  # a rebalance gave it 20,000 more to read
    progress.observe(21_000, 3.0)  # 5,000 read
    assert progress.records_total == 30_000 and progress.records_done == 9_000
    assert progress.records_per_second == pytest.approx(9_000 / 3)


def test_after_it_finishes_nothing_is_left_and_the_duration_is_kept() -> None:
    progress = RecoveryProgress()
    assert progress.answer()["eta_seconds"] is None  # never recovered
    progress.observe(500, 10.0)
    progress.observe(200, 11.0)
    progress.finish(12.5)
    answer = progress.answer()
    assert answer["recovering"] is False and answer["records_remaining"] == 0
    assert answer["percent"] == 100.0 and answer["eta_seconds"] == 0.0
    assert answer["last_recovery_seconds"] == 2.5 and answer["records_total"] == 500
    assert answer["records_per_second"] == 200  # 500 records in 2.5 s
    progress.observe(40, 100.0)  # the next recovery starts its own count
    assert progress.records_total == 40 and progress.answer()["last_recovery_seconds"] is None
