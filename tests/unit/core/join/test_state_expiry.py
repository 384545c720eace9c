"""Expiry finds every due entry, also when it skips the index for kinds with nothing due."""

from __future__ import annotations

import random

from sysmon_faust.core import alert_groups
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.join.state import JoinState
from sysmon_faust.core.sigma.ruleset import RuleSet


def _state() -> JoinState:
    return LocalJoin.with_defaults(RuleSet(()), 0, 4, window_ms=60_000).state


def _group(guid: str, closes_at_ms: int) -> alert_groups.AlertGroup:
    alert = {"rule_id": "r1", "event": {"process_guid": guid}}
    group = alert_groups.open_group(alert, 0, 0, 0)
    group.closes_at_ms = closes_at_ms
    return group


class _CountingKeys:
    """Wraps a store's ``keys`` to count the scans (a RocksDB iterator each in the worker)."""

    def __init__(self, state: JoinState) -> None:
        self.scans = 0
        keys = state.index.keys

        def counted(partition: int, start: bytes = b""):  # type: ignore[no-untyped-def]
            self.scans += 1
            return keys(partition, start)

        state.index.keys = counted  # type: ignore[method-assign]


def test_an_entry_due_before_the_next_known_one_is_still_found() -> None:
    # Groups close at their own times (a window after the match's stream
    # time), so an entry written later may fall due before one written earlier.
    state = _state()
    state.keep_alert_group(0, _group("{late}", 100_000))
    assert not state.expire_due(0, 50_000, 100).alert_groups
    state.keep_alert_group(0, _group("{early}", 60_000))
    closed = state.expire_due(0, 61_000, 100).alert_groups
    assert [group.process_guid for group in closed] == ["{early}"]


def test_kinds_with_nothing_due_are_not_scanned_again() -> None:
    state = _state()
    state.put_row(0, b"{a}", {"process_guid": "{a}"}, 0)  # its TTL: a week
    counter = _CountingKeys(state)
    state.expire_due(0, 1_000, 100)
    first = counter.scans
    assert first > 0
    for stream_time in range(2_000, 50_000, 1_000):
        state.expire_due(0, stream_time, 100)
    assert counter.scans == first
    state.forget()  # a rebalance: nothing is known of the index any more
    state.expire_due(0, 60_000, 100)
    assert counter.scans == 2 * first


def test_random_deadlines_expire_exactly_when_due_whatever_the_batch_limit() -> None:
    rng = random.Random(7)
    state = _state()
    open_at: dict[str, int] = {}  # the reference: every group not closed yet
    stream_time = 0
    for step in range(2_000):
        if rng.random() < 0.6:
            guid = f"{{{step}}}"
            open_at[guid] = stream_time + rng.randrange(0, 20_000)
            state.keep_alert_group(0, _group(guid, open_at[guid]))
        else:
            stream_time += rng.randrange(0, 3_000)
            at_most = rng.choice((1, 2, 5, 100))
            closed: list[str] = []
            while True:  # what the worker does over its next records
                batch = state.expire_due(0, stream_time, at_most).alert_groups
                state.settle()
                if not batch:
                    break
                closed += [group.process_guid for group in batch]
            due = {guid for guid, closes in open_at.items() if closes <= stream_time}
            assert sorted(closed) == sorted(due)
            for guid in due:
                del open_at[guid]
    assert open_at  # the run left some open: the comparison covered both sides
