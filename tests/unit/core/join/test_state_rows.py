"""A process's row as the join reads it: remembered (present or absent), never stale."""

from __future__ import annotations

import orjson

from sysmon_faust.core.join import state as state_module
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.join.row_count import RowCount
from sysmon_faust.core.join.state import JoinState
from sysmon_faust.core.sigma.ruleset import RuleSet

_WEEK_MS = 7 * 86_400_000


def _state(retention_ms: int = 3_600_000) -> JoinState:
    join = LocalJoin.with_defaults(RuleSet(()), 0, 4, 60_000, retention_ms=retention_ms)
    return join.state


class _CountingGets:
    """Wraps the process table's ``get`` to count the reads (a RocksDB get each in the worker)."""

    def __init__(self, state: JoinState) -> None:
        self.reads = 0
        get = state.rows.get

        def counted(partition: int, key: bytes) -> bytes | None:
            self.reads += 1
            return get(partition, key)

        state.rows.get = counted  # type: ignore[method-assign]


def test_an_absent_row_is_read_once() -> None:
    state = _state()
    counter = _CountingGets(state)
    for _ in range(5):
        assert state.row(0, b"{old}") is None
    assert counter.reads == 1


def test_a_row_written_after_its_absence_was_remembered_is_read() -> None:
    state = _state()
    assert state.row(0, b"{p}") is None
    state.put_row(0, b"{p}", {"process_guid": "{p}", "image": "a.exe"}, 0)
    assert orjson.loads(state.row(0, b"{p}") or b"null")["image"] == "a.exe"
    assert state.rows.get(0, b"{p}") == state.row(0, b"{p}")


def test_a_terminated_row_reads_as_terminated() -> None:
    state = _state()
    state.put_row(0, b"{p}", {"process_guid": "{p}"}, 0)
    assert state.row(0, b"{p}") is not None
    assert state.mark_terminated(0, b"{p}", "2026-12-01T00:00:00.000Z", 0)
    row = orjson.loads(state.row(0, b"{p}") or b"null")
    assert row["process_terminated_at"] == "2026-12-01T00:00:00.000Z"
    assert not state.mark_terminated(0, b"{unknown}", "2026-12-01T00:00:00.000Z", 0)


def test_a_row_deleted_by_expiry_reads_as_absent() -> None:
    state = _state(retention_ms=1_000)
    state.put_row(0, b"{p}", {"process_guid": "{p}"}, 0)
    state.mark_terminated(0, b"{p}", "2026-12-01T00:00:00.000Z", 0)
    assert state.row(0, b"{p}") is not None
    state.expire_due(0, 2_000, 100)
    assert state.rows.get(0, b"{p}") is None
    assert state.row(0, b"{p}") is None


def test_rows_are_per_partition() -> None:
    state = _state()
    state.put_row(1, b"{p}", {"process_guid": "{p}"}, 0)
    assert state.row(0, b"{p}") is None
    assert state.row(1, b"{p}") is not None


def test_after_a_rebalance_rows_are_read_again() -> None:
    # Recovery writes a partition's table without the join (Faust's, or the
    # bulk restore): what was remembered before the rebalance is forgotten.
    state = _state()
    assert state.row(0, b"{p}") is None
    state.forget()
    state.rows.put(0, b"{p}", b'{"process_guid":"{p}"}')
    assert state.row(0, b"{p}") == b'{"process_guid":"{p}"}'


def test_what_is_remembered_is_bounded() -> None:
    state = _state()
    counter = _CountingGets(state)
    for n in range(state_module.ROW_CACHE_ENTRIES + 10):
        state.row(0, b"{%d}" % n)
    assert len(state._row_cache) <= state_module.ROW_CACHE_ENTRIES
    reads = counter.reads
    state.row(0, b"{0}")  # fell out when it started over
    assert counter.reads == reads + 1


def test_the_ttl_deletes_a_row_that_never_ended() -> None:
    state = _state()
    state.put_row(0, b"{p}", {"process_guid": "{p}"}, 0)
    assert state.row(0, b"{p}") is not None
    state.expire_due(0, _WEEK_MS + 1, 100)
    assert state.row(0, b"{p}") is None


# --- the row count (/stats' table_rows; sysmon_faust.core.join.row_count) ----------------


def _stored(state: JoinState, partition: int) -> int:
    """The reference: the keys the partition's table holds, counted from the store itself."""
    return sum(1 for _ in state.rows.keys(partition))


def test_the_row_count_is_exact_through_replays_expiry_and_a_rebalance() -> None:
    state = _state(retention_ms=1_000)
    state.put_row(0, b"{before}", {"process_guid": "{before}"}, 0)
    assert state.row_count(0) == 1  # the scan
    for key in (b"{a}", b"{b}", b"{a}", b"{before}"):  # {a} and {before} written again
        state.put_row(0, key, {"process_guid": key.decode()}, 0)
    assert state.row_count(0) == _stored(state, 0) == 3
    state.mark_terminated(0, b"{a}", "2026-12-01T00:00:00.000Z", 0)
    state.expire_due(0, 2_000, 100)
    assert state.row_count(0) == _stored(state, 0) == 2
    state.put_row(0, b"{a}", {"process_guid": "{a}"}, 2_000)  # its key is in the filter still
    assert state.row_count(0) == _stored(state, 0) == 3
    state.forget()
    state.rows.put(0, b"{recovered}", b'{"process_guid":"{recovered}"}')  # by recovery
    assert state.row_count(0) == _stored(state, 0) == 4


def test_a_counted_partitions_new_rows_are_not_read() -> None:
    # The read of each new row was ~9 % of the event loop in a table fill.
    state = _state()
    state.row_count(0)
    counter = _CountingGets(state)
    for n in range(state_module.ROW_CACHE_ENTRIES * 2):  # more than the row memo holds
        key = b"{%d}" % n
        state.put_row(0, key, {"process_guid": key.decode()}, 0)
    assert state.row_count(0) == _stored(state, 0) == state_module.ROW_CACHE_ENTRIES * 2
    assert counter.reads < state_module.ROW_CACHE_ENTRIES * 2 // 20  # false positives only


def test_a_partition_whose_filter_filled_is_counted_again_exactly() -> None:
    join = LocalJoin.with_defaults(RuleSet(()), 0, 4, 60_000)
    state = JoinState(join.state.rows, join.state.pending, join.state.index,
                      join.state.lifetimes, RowCount(rows_at_least=8))  # fmt: skip
    state.row_count(0)
    for n in range(20):  # past its room for 8: counted again when next asked
        key = b"{%d}" % (n % 15)  # and five written again
        state.put_row(0, key, {"process_guid": key.decode()}, 0)
        assert state.row_count(0) == _stored(state, 0)
    assert _stored(state, 0) == 15


def test_an_unsettled_partition_is_counted_but_not_kept() -> None:
    # While it recovers, its table is written without the join: nothing kept
    # may count it, and the join's writes must not move a count never taken.
    state = _state()
    state.rows.put(0, b"{recovered}", b"{}")
    assert state.row_count(0, keep=False) == 1
    state.put_row(0, b"{new}", {"process_guid": "{new}"}, 0)
    state.rows.put(0, b"{recovered-later}", b"{}")
    assert state.row_count(0, keep=False) == _stored(state, 0) == 3
    assert state.row_count(0) == 3  # settled: counted and kept from now on
