"""The intake's first step over a slice of records: every record is an event, a dead letter's
reason, or a count — in order, and counted as the intake counted them one by one."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from sysmon_faust.core.intake_read import TOMBSTONE, read_records
from sysmon_faust.core.normalize import Filtered, Invalid, NormalizedEvent, normalize
from sysmon_faust.core.stats import stats
from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from tests import events


class Record:
    """A consumed record as librdkafka hands it out (value, partition, offset)."""

    def __init__(self, value: Any, partition: int, offset: int) -> None:
        self._value, self._partition, self._offset = value, partition, offset

    def value(self) -> Any:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class Unreadable(Record):
    def value(self) -> Any:
        raise RuntimeError("a bug in reading it")


@pytest.fixture
def counters() -> Any:
    """The worker's counters, restored after the test."""
    saved = (stats.consumed, stats.filtered, Counter(stats.filtered_by_reason),
             stats.surrogates_replaced)  # fmt: skip
    yield stats
    stats.consumed, stats.filtered, stats.filtered_by_reason, stats.surrogates_replaced = saved


def mix(events: int) -> list[Record]:
    values = [event.value for event in Workload(WorkloadConfig(events=events, hosts=10))]
    return [Record(value, index % 3, index // 3) for index, value in enumerate(values)]


def test_each_record_as_normalize_has_it(counters: Any) -> None:
    records = mix(3_000)
    other_ids = frozenset({7, 11})
    before_consumed, before_filtered = counters.consumed, counters.filtered
    before_reasons = Counter(counters.filtered_by_reason)
    found = read_records(records, 0, len(records), other_ids, None)

    # The reference: normalize, record by record.
    expected_events, expected_invalid, reasons = [], [], Counter()
    for record in records:
        outcome = normalize(record.value(), other_ids)
        if isinstance(outcome, NormalizedEvent):
            expected_events.append((record, outcome, record.partition()))
        elif isinstance(outcome, Invalid):
            expected_invalid.append((record, outcome.error))
        else:
            assert isinstance(outcome, Filtered)
            reasons[outcome.reason] += 1
    assert found.events == expected_events
    assert found.invalid == expected_invalid
    assert found.failed == []
    assert counters.consumed - before_consumed == len(records)
    assert counters.filtered - before_filtered == sum(reasons.values())
    assert counters.filtered_by_reason - before_reasons == reasons
    # The offset after each partition's last record.
    assert found.read_up_to == {0: 1000, 1: 1000, 2: 1000}


def test_a_slice_reads_only_its_records(counters: Any) -> None:
    records = mix(100)
    before = counters.consumed
    found = read_records(records, 10, 20, (), None)
    assert counters.consumed - before == 10
    assert {id(record) for record, _, _ in found.events} <= {id(r) for r in records[10:20]}
    assert found.read_up_to == {p: max(r.offset() for r in records[10:20] if r.partition() == p) + 1
                                for p in range(3)}  # fmt: skip


def test_tombstones_garbage_and_failures_go_to_the_dead_letters(counters: Any) -> None:
    unreadable = Unreadable(b"{}", 0, 2)
    records = [Record(None, 0, 0), Record(b"not json", 0, 1), unreadable]
    found = read_records(records, 0, len(records), (), None)
    assert found.invalid[0] == (records[0], TOMBSTONE)
    assert found.invalid[1][0] is records[1] and found.invalid[1][1].startswith("not valid JSON")
    assert len(found.failed) == 1 and found.failed[0][0] is unreadable
    assert str(found.failed[0][1]) == "a bug in reading it"
    assert found.events == [] and found.read_up_to == {0: 3}


def test_the_first_detail_of_a_filtered_record_is_kept(counters: Any) -> None:
    # A JSON object of no shape says what was looked for; the intake logs the first.
    records = [Record(orjson.dumps({"app": n}), 0, n) for n in range(3)]
    found = read_records(records, 0, 3, (), None)
    assert found.detail is not None and found.detail[0] is records[0]
    assert "winlog" in found.detail[1]
    assert found.events == [] and found.invalid == []


def test_surrogates_replaced_are_counted(counters: Any) -> None:
    sysmon_1 = events.create("2026-01-05 09:00:00.000", events.guid(1))
    with_surrogate = sysmon_1.replace(b'"cmd.exe /c', b'"\\udc80cmd.exe /c', 1)
    assert with_surrogate != sysmon_1
    before = counters.surrogates_replaced
    found = read_records([Record(with_surrogate, 0, 0)], 0, 1, (), None)
    assert len(found.events) == 1 and found.events[0][1].surrogates_replaced
    assert counters.surrogates_replaced - before == 1
