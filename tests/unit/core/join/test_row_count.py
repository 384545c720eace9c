"""The process table's row count: exact against a set of the keys, reading the table only when
the filter cannot tell."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sysmon_faust.core.join.row_count import HEADROOM, RowCount


class _Table:
    """The keys a partition's table holds, and how often the count read it."""

    def __init__(self, keys: set[bytes] | None = None) -> None:
        self.keys = set(keys or ())
        self.reads = 0
        self.scans = 0

    def holds(self, key: bytes) -> bool:
        self.reads += 1
        return key in self.keys

    def scan(self) -> list[bytes]:
        self.scans += 1
        return sorted(self.keys)

    def write(self, count: RowCount, key: bytes) -> None:
        # As JoinState.put_row: the table read only when the filter cannot tell.
        if not (count.may_hold(0, key) and self.holds(key)):
            count.added(0, key)
        self.keys.add(key)


def _guid(n: int) -> bytes:
    return b"{%08d-0000-0000-0000-000000000000}" % n


def test_the_scan_counts_what_the_table_holds() -> None:
    table = _Table({_guid(n) for n in range(7)})
    count = RowCount()
    assert not count.counted(0)
    assert count.count(0, table.scan) == 7
    assert count.counted(0) and count.rows(0) == 7
    assert not count.counted(1)


def test_new_rows_count_without_a_read() -> None:
    table = _Table({_guid(n) for n in range(100)})
    count = RowCount()
    count.count(0, table.scan)
    for n in range(100, 1_100):
        table.write(count, _guid(n))
    assert count.rows(0) == len(table.keys) == 1_100
    # Only a false positive reads (1 % by design): not one read per row.
    assert table.reads < 50


def test_a_row_written_again_counts_once() -> None:
    # A replay after a crash, or a creation its shipper sent twice.
    table = _Table({_guid(1)})
    count = RowCount()
    count.count(0, table.scan)
    table.write(count, _guid(1))  # held before the scan
    table.write(count, _guid(2))
    table.write(count, _guid(2))  # written since
    assert count.rows(0) == len(table.keys) == 2


def test_a_row_deleted_then_written_again_counts_again() -> None:
    # The filter still has its key: the read tells.
    table = _Table({_guid(1), _guid(2)})
    count = RowCount()
    count.count(0, table.scan)
    table.keys.discard(_guid(1))
    count.deleted(0)
    reads = table.reads
    table.write(count, _guid(1))
    assert table.reads == reads + 1
    assert count.rows(0) == len(table.keys) == 2


def test_a_full_filter_is_counted_again_by_the_next_scan_sized_from_its_count() -> None:
    table = _Table({_guid(n) for n in range(2)})
    count = RowCount(rows_at_least=8)
    count.count(0, table.scan)
    for n in range(2, 7):  # room for 8 keys: 2 scanned, 5 written
        table.write(count, _guid(n))
    assert count.counted(0) and count.rows(0) == 7
    table.write(count, _guid(7))  # the eighth
    assert not count.counted(0)
    scans = table.scans
    assert count.count(0, table.scan) == 8
    assert table.scans == scans + 1  # sized for 8 x HEADROOM at once
    for n in range(8, 8 * HEADROOM - 1):
        table.write(count, _guid(n))
    assert count.counted(0) and count.rows(0) == len(table.keys)


def test_a_table_larger_than_the_smallest_filter_is_scanned_into_one_that_fits() -> None:
    table = _Table({_guid(n) for n in range(10)})
    count = RowCount(rows_at_least=4)
    assert count.count(0, table.scan) == 10
    assert table.scans == 2
    for n in range(10, 10 * HEADROOM - 1):  # up to its room, less one
        table.write(count, _guid(n))
    assert count.counted(0) and count.rows(0) == len(table.keys)


def test_forget_drops_one_partition_or_all() -> None:
    count = RowCount()
    for partition in (0, 1):
        count.count(partition, [_guid(partition)].copy)
    count.forget(0)
    assert not count.counted(0) and count.counted(1)
    count.forget()
    assert not count.counted(1)


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=300),
    st.sets(st.integers(0, 40), max_size=10),
)
def test_the_count_is_the_tables_whatever_is_written_and_deleted(
    steps: list[tuple[bool, int]], before: set[int]
) -> None:
    table = _Table({_guid(n) for n in before})
    count = RowCount(rows_at_least=16)  # small: full filters and second scans happen
    for write, n in steps:
        if not count.counted(0):
            count.count(0, table.scan)
        key = _guid(n)
        if write:
            table.write(count, key)
        elif key in table.keys:
            table.keys.discard(key)
            count.deleted(0)
        if count.counted(0):
            assert count.rows(0) == len(table.keys)
