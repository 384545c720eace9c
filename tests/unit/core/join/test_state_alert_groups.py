"""Open alert groups: found by key from memory, read back after a rebalance, gone once closed."""

from __future__ import annotations

from sysmon_faust.core import alert_groups
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.sigma.ruleset import RuleSet

GUID = "{11111111-2222-3333-4444-555555555555}"


def test_an_open_group_is_found_again_after_a_rebalance_and_not_once_closed() -> None:
    state = LocalJoin.with_defaults(RuleSet(()), 0, 4, window_ms=60_000).state
    alert = {"rule_id": "r1", "event": {"process_guid": GUID}}
    group = alert_groups.open_group(alert, 1_000, 1_000, 60_000)
    state.keep_alert_group(0, group)

    found = state.open_alert_group(0, "r1", GUID, 2_000)
    assert found is not None and found[1] == group
    key, stored = found
    alert_groups.add_match(stored, {"process_guid": GUID}, 3_000)
    state.keep_alert_group(0, stored, key)
    assert state.open_alert_group(0, "r2", GUID, 2_000) is None
    assert state.open_alert_group(1, "r1", GUID, 2_000) is None  # another partition's

    state.forget()  # a rebalance: what is open is read back from the table
    again = state.open_alert_group(0, "r1", GUID, 4_000)
    assert again is not None and again[0] == key and again[1].count == 2

    expired = state.expire_due(0, 61_001, 100)
    assert [closed.count for closed in expired.alert_groups] == [2]
    assert state.open_alert_group(0, "r1", GUID, 61_001) is None
    state.settle()
    state.forget()
    assert state.open_alert_group(0, "r1", GUID, 61_001) is None  # deleted from the table too
