"""Alert groups, pure: one alert per rule and process within a window, then one update."""

from __future__ import annotations

from typing import Any

import pytest

from sysmon_faust.core import alert_groups
from sysmon_faust.core.alert_groups import (
    CLOSED,
    MAX_DESTINATIONS,
    OPEN,
    AlertGroup,
    add_match,
    closing_record,
    destination,
    first_alert_record,
    group_key,
    group_prefix,
    is_closed,
    open_group,
)

GUID = "{905cc552-43ac-5c91-0000-0010b44bb703}"
T0 = 1_553_023_805_413  # 2019-03-19T19:30:05.413Z
MINUTE = 60_000


def event(ip: str = "10.0.10.106", port: int = 443) -> dict[str, Any]:
    return {"process_guid": GUID, "dst_ip_addr": ip, "dst_port": port, "process_name": "p.exe"}


def alert(ip: str = "10.0.10.106", port: int = 443) -> dict[str, Any]:
    return {"rule_id": "r", "rule_name": "R", "attack_technique": "T1047", "severity": "high",
            "detected_at": "now", "event": event(ip, port)}  # fmt: skip


def test_the_first_match_alerts_at_once_and_later_ones_only_count() -> None:
    group = open_group(alert(), T0, stream_time_ms=T0, window_ms=10 * MINUTE)
    first = first_alert_record(group)
    assert first["alert_group"] == {
        "state": OPEN, "count": 1, "first_seen": "2019-03-19T19:30:05.413Z",
        "last_seen": "2019-03-19T19:30:05.413Z", "destinations": ["10.0.10.106:443"],
        "destinations_not_listed": 0, "window_seconds": 600,
    }  # fmt: skip
    assert first["event"] == event() and first["rule_id"] == "r"
    for n in range(1, 33):
        add_match(group, event(), T0 + n * 6_000)
    update = closing_record(group, "later")
    assert update is not None
    assert update["alert_group"]["state"] == CLOSED
    assert update["alert_group"]["count"] == 33
    assert update["alert_group"]["last_seen"] == "2019-03-19T19:33:17.413Z"
    assert update["alert_group"]["destinations"] == ["10.0.10.106:443"]
    assert (update["detected_at"], update["event"]) == ("later", event())


def test_a_group_of_one_match_writes_no_update() -> None:
    group = open_group(alert(), T0, T0, 10 * MINUTE)
    assert closing_record(group, "later") is None


def test_without_a_window_every_match_is_a_closed_group_of_one() -> None:
    group = open_group(alert(), T0, T0, 0)
    assert first_alert_record(group)["alert_group"]["state"] == CLOSED
    assert is_closed(group, T0)


def test_the_window_closes_in_stream_time_from_the_first_match() -> None:
    group = open_group(alert(), T0 - MINUTE, stream_time_ms=T0, window_ms=10 * MINUTE)
    assert not is_closed(group, T0 + 10 * MINUTE - 1)
    assert is_closed(group, T0 + 10 * MINUTE)
    # An earlier event read later widens the group's times, not its window.
    add_match(group, event(), T0 - 2 * MINUTE)
    assert group.first_seen_ms == T0 - 2 * MINUTE and group.closes_at_ms == T0 + 10 * MINUTE


def test_distinct_destinations_are_listed_up_to_a_bound_then_counted() -> None:
    group = open_group(alert(port=1), T0, T0, MINUTE)
    for port in range(1, MAX_DESTINATIONS + 11):
        add_match(group, event(port=port), T0)
    add_match(group, event(ip="fe80::1", port=53), T0)
    assert len(group.destinations) == MAX_DESTINATIONS
    assert group.destinations[:2] == ["10.0.10.106:1", "10.0.10.106:2"]
    assert group.destinations_not_listed == 11  # ports 101..110 and the IPv6 one
    assert destination(event(ip="fe80::1", port=53)) == "[fe80::1]:53"
    assert destination({"dst_ip_addr": None, "dst_port": 1}) is None


def test_a_group_survives_its_encoding() -> None:
    group = open_group(alert(), T0, T0, MINUTE)
    add_match(group, event(port=80), T0 + 1)
    assert AlertGroup.decode(group.encode()) == group
    with pytest.raises(ValueError):
        AlertGroup.decode(b'{"rule_id": "r"}')


def test_keys_keep_a_rule_and_process_together_and_windows_apart() -> None:
    one = open_group(alert(), T0, T0, MINUTE)
    two = open_group(alert(), T0 + MINUTE, T0 + MINUTE, MINUTE)
    prefix = group_prefix("r", GUID)
    assert group_key(one).startswith(prefix) and group_key(two).startswith(prefix)
    assert group_key(one) < group_key(two)
    assert not group_key(one).startswith(group_prefix("r2", GUID))
    assert group_key(one).startswith(alert_groups.GROUP_PREFIX)


def test_a_group_key_reads_back_as_its_rule_process_and_closing_time() -> None:
    for closes_at in (0, 1, 2**40 + 256, 1_700_000_000_000):  # NUL bytes in the packed time too
        alert = {"rule_id": "d72c1863-0000-4000-8000-000000000000",
                 "event": {"process_guid": "{11111111-2222-3333-4444-555555555555}"}}  # fmt: skip
        group = alert_groups.open_group(alert, 0, closes_at, 0)
        key = alert_groups.group_key(group)
        assert alert_groups.parse_group_key(key) == (group.rule_id, group.process_guid, closes_at)
    for bad in (b"", alert_groups.GROUP_PREFIX + b"x", b"\x01parked\x00" + b"a" * 20):
        with pytest.raises(ValueError):
            alert_groups.parse_group_key(bad)
