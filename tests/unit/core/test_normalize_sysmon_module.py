"""Winlogbeat 7/8 and Elastic Agent with the Sysmon module: Sysmon fields moved into ECS.

The right values come from ``../shared/cases/wlb7_sysmon_module_ecs.expected.md``.
"""

from __future__ import annotations

import orjson
import pytest

from sysmon_faust.core.normalize import NormalizedEvent, normalize
from tests.reference import shipped_rule_id
from tests.support import case_events, case_file, rules_test_case

NAME = "wlb7_sysmon_module_ecs"


@pytest.fixture
def events() -> list[NormalizedEvent]:
    return case_events(NAME)


def test_line_1_the_creation_read_from_ecs_and_event_data(events: list[NormalizedEvent]) -> None:
    want = {
        "process_guid": "{42f11c3b-ce03-5c8f-0000-0010e9462a00}",
        "process_id": 4508,
        "process_path": "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
        "process_name": "WmiPrvSE.exe",
        "process_command_line": "C:\\Windows\\system32\\wbem\\wmiprvse.exe -Embedding",
        "parent_process_guid": "{42f11c3b-6e1b-5c8c-0000-00102f610000}",
        "parent_process_id": 560,
        "parent_process_path": "C:\\Windows\\System32\\svchost.exe",
        "event_date_creation": "2019-03-18T16:57:39.012Z",
        "user_account": "NT AUTHORITY\\SYSTEM",
        "process_integrity_level": "System",
        "user_logon_id": "0x3e7",
        "user_session_id": 0,
        "host_name": "wkstn01",
    }
    assert events[0].event_id == 1
    assert {k: events[0].fields[k] for k in want} == want


def test_lines_2_3_5_the_connects(events: list[NormalizedEvent]) -> None:
    two, three, five = events[1].fields, events[2].fields, events[4].fields
    assert (two["process_guid"], two["process_id"]) == (
        "{42f11c3b-0bad-5c8c-0000-0010dfbc0000}",
        924,
    )
    assert (two["src_ip_addr"], two["src_port"], two["dst_ip_addr"], two["dst_port"]) == (
        "a00:20f:0:0:18a2:6e00:e0:ffff", 62141, "a00:203:3000:3000:3000:3000:3000:3300", 53
    )  # fmt: skip
    assert (two["network_protocol"], two["dst_port_name"]) == ("udp", "domain")
    assert (two["network_connection_initiated"], two["src_is_ipv6"], two["dst_is_ipv6"]) == (
        True, True, True
    )  # fmt: skip
    assert three["network_connection_initiated"] is False
    assert three["src_host_name"] == "wkstn01.example.org"
    assert (five["dst_ip_addr"], five["dst_port"], five["network_connection_initiated"]) == (
        "203.0.113.10", 80, True
    )  # fmt: skip
    assert [event.event_id for event in events] == [1, 3, 3, 1, 3]


def test_where_both_hold_a_field_the_ecs_value_wins() -> None:
    case = case_file(NAME)
    doc = orjson.loads(case.read_bytes().splitlines()[0])
    doc["winlog"]["event_data"]["Image"] = "C:\\stale\\value.exe"
    event = normalize(orjson.dumps(doc))
    assert isinstance(event, NormalizedEvent)
    assert event.fields["process_path"] == "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"


def test_rules_test_joins_line_5_and_fires_the_wmi_rule_once() -> None:
    report, detections = rules_test_case(NAME)
    assert (report.invalid, report.creates, report.connects, report.joined) == (0, 2, 3, 1)
    assert dict(report.unmatched) == {"process_started_before_grace": 2}
    assert [d.rule.rule_id for d in detections] == [
        shipped_rule_id("sysmon-wmi-child-network-connect")
    ]
    ancestry = detections[0].alert["event"]["process_ancestry"]
    assert [hop["process_guid"] for hop in ancestry] == [
        "{42f11c3b-ce03-5c8f-0000-0010e9462a00}",
        "{42f11c3b-6e1b-5c8c-0000-00102f610000}",
    ]
