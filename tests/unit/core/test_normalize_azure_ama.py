"""Azure Monitor Agent ``WindowsEvent`` rows: EventData is a JSON object in a string.

The right values come from ``../shared/cases/azure_ama_windowsevent.expected.md``.
"""

from __future__ import annotations

import pytest

from sysmon_faust.core.normalize import Invalid, NormalizedEvent, normalize
from tests.support import case_events, rules_test_case

NAME = "azure_ama_windowsevent"


@pytest.fixture
def events() -> list[NormalizedEvent]:
    return case_events(NAME)


def test_every_row_is_read_with_the_computer_it_came_from(events: list[NormalizedEvent]) -> None:
    assert [event.event_id for event in events] == [3, 1, 3, 3]
    assert {event.fields["host_name"] for event in events} == {"WKSTN01"}


def test_the_process_creation(events: list[NormalizedEvent]) -> None:
    fields = events[1].fields
    want = {
        "process_guid": "{f3329a35-1cb0-627e-f916-000000000600}",
        "process_id": 2084,
        "process_path": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "parent_process_path": (
            "C:\\ProgramData\\chocolatey\\lib\\Tomcat\\tools\\apache-tomcat-9.0.62\\bin\\tomcat9.exe"
        ),
        "parent_process_guid": "{f3329a35-1c6c-627e-e516-000000000600}",
        "event_date_creation": "2022-05-13T08:54:08.420Z",
        "user_account": "NT AUTHORITY\\LOCAL SERVICE",
    }
    assert {k: fields[k] for k in want} == want


def test_the_connect_of_that_process(events: list[NormalizedEvent]) -> None:
    fields = events[3].fields
    want = {
        "process_guid": "{f3329a35-1cb0-627e-f916-000000000600}",
        "src_ip_addr": "192.0.2.5",
        "src_port": 54226,
        "dst_ip_addr": "198.51.100.5",
        "dst_port": 443,
        "network_protocol": "tcp",
        "network_connection_initiated": True,
        "src_is_ipv6": False,
        "dst_is_ipv6": False,
        "event_date_creation": "2022-05-13T08:54:09.390Z",
    }
    assert {k: fields[k] for k in want} == want
    assert events[0].fields["src_host_name"] is None  # "-"


def test_rules_test_joins_one_and_unmatches_the_tomcat_connects() -> None:
    report, detections = rules_test_case(NAME)
    assert (report.invalid, report.creates, report.connects, report.joined) == (0, 1, 3, 1)
    assert dict(report.unmatched) == {"process_unknown_after_grace": 2}
    assert detections == []


@pytest.mark.parametrize(
    "event_data",
    ['"{not json"', '"[1, 2]"', '"{}"'],
)
def test_an_event_data_string_that_holds_no_sysmon_fields_is_a_dead_letter(
    event_data: str,
) -> None:
    raw = (
        '{"Provider": "Microsoft-Windows-Sysmon",'
        ' "Channel": "Microsoft-Windows-Sysmon/Operational",'
        f' "Computer": "WKSTN01", "EventID": 1, "EventData": {event_data}}}'
    ).encode()
    assert isinstance(normalize(raw), Invalid)
