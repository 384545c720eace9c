"""Unpaired UTF-16 surrogate escapes: the event is read, the unit becomes U+FFFD.

The right values come from ``../shared/cases/lone_surrogate_escape.expected.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sysmon_faust.core.normalize import Invalid, NormalizedEvent, normalize, parse_json_object
from tests.support import case_file, rules_test_case

NAME = "lone_surrogate_escape"


@pytest.fixture
def case() -> Path:
    return case_file(NAME)


def test_the_case_normalizes_with_the_unit_replaced(case: Path) -> None:
    create, connect = (normalize(line) for line in case.read_bytes().splitlines())
    assert isinstance(create, NormalizedEvent) and isinstance(connect, NormalizedEvent)
    assert create.surrogates_replaced and connect.surrogates_replaced
    process = {
        "process_guid": "{81056205-57b2-64dc-6104-000000000800}",
        "process_id": 6356,
        "process_path": "C:\\Users\\Public\\svc\ufffdhost.exe",
        "process_name": "svc\ufffdhost.exe",
    }
    assert {k: create.fields[k] for k in process} == process
    assert {k: create.fields[k] for k in ("parent_process_path", "parent_process_guid")} == {
        "parent_process_path": "C:\\Windows\\System32\\cmd.exe",
        "parent_process_guid": "{81056205-57b1-64dc-5c04-000000000800}",
    }
    assert create.fields["parent_process_id"] == 7108
    assert {k: connect.fields[k] for k in process} == process
    network = {
        "src_ip_addr": "192.0.2.41",
        "src_port": 51151,
        "dst_ip_addr": "192.0.2.4",
        "dst_port": 135,
        "network_protocol": "tcp",
        "event_date_creation": "2023-08-10T14:44:54.626Z",
    }
    assert {k: connect.fields[k] for k in network} == network


def test_rules_test_joins_the_case_and_fires_nothing(case: Path) -> None:
    report, detections = rules_test_case(NAME)
    assert (report.invalid, report.creates, report.connects, report.joined) == (0, 1, 1, 1)
    assert detections == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b'{"a": "x\\udc81y"}', "x\ufffdy"),  # a lone low unit
        (b'{"a": "x\\ud83dy"}', "x\ufffdy"),  # a lone high unit
        (b'{"a": "\\ude00\\ud83d"}', "\ufffd\ufffd"),  # a pair in the wrong order
        (b'{"\\udc81": ["\\ud83d\\ude00", "\\udc81"]}', None),  # keys, lists, a valid pair kept
    ],
)
def test_unpaired_units_become_the_replacement_character(text: bytes, value: str | None) -> None:
    doc = parse_json_object(text)
    assert not isinstance(doc, Invalid)
    if value is None:
        assert doc == {"\ufffd": ["\U0001f600", "\ufffd"]}
    else:
        assert doc == {"a": value}


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "\\udc81", "b": NaN}',  # the fallback decoder takes NaN: refused all the same
        b'{"a": "\\udc81"',  # truncated
        b'["\\udc81"]',  # not an object
    ],
)
def test_what_is_no_json_object_stays_invalid(text: bytes) -> None:
    assert isinstance(parse_json_object(text), Invalid)
