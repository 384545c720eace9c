"""Normalization, table-driven: one real line per shape, and every rule on hand-written edges."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from sysmon_faust.core.normalize import (
    NOT_SYSMON,
    NOT_WINDOWS_EVENT,
    PROCESS_TERMINATE,
    Filtered,
    Invalid,
    NormalizedEvent,
    canonical_guid,
    clean_text,
    normalize,
    parse_utc_time,
    to_bool,
    to_int,
)
from sysmon_faust.core.records import NetworkConnect, ProcessCreate, ProcessTerminate, record_fields
from tests.reference import lines
from tests.support import DATASETS

GUID = "{905cc552-43ac-5c91-0000-0010b44bb703}"


def ecs(
    event_id: Any,
    data: dict[str, Any],
    channel: str = "Microsoft-Windows-Sysmon/Operational",
    **winlog: Any,
) -> bytes:
    doc = {
        "host": {"name": "WECServer"},
        "agent": {"hostname": "WECServer"},
        "winlog": {"event_id": event_id, "channel": channel, "computer_name": "HFDC01.shire.com",
                   "process": {"pid": 2044}, "event_data": data, **winlog},
    }  # fmt: skip
    return json.dumps(doc).encode()


def connect_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "UtcTime": "2019-10-28 02:31:01.498",
        "ProcessGuid": GUID,
        "ProcessId": "2136",
        "Image": "C:\\Windows\\System32\\svchost.exe",
        "User": "NT AUTHORITY\\NETWORK SERVICE",
        "Protocol": "tcp",
        "Initiated": "true",
        "SourceIsIpv6": "false",
        "SourceIp": "172.18.39.5",
        "SourcePort": "49266",
        "DestinationIsIpv6": "false",
        "DestinationIp": "172.18.39.102",
        "DestinationPort": "5985",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def create_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "UtcTime": "2019-03-19 15:28:13.123",
        "ProcessGuid": GUID,
        "ProcessId": "904",
        "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "CommandLine": "powershell -nop -w hidden",
        "ParentProcessGuid": "{905CC552-43AC-5C91-0000-0010B44BB700}",
        "ParentProcessId": "3112",
        "ParentImage": "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
        "TerminalSessionId": "0",
        "LogonId": "0x3e7",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def terminate_data(**overrides: Any) -> dict[str, Any]:
    # The event data of a real Sysmon 5 (covenant_installutil recording).
    data = {
        "UtcTime": "2019-10-28 02:31:41.470",
        "ProcessGuid": "{a158f72c-530d-5db6-0000-001062e9af00}",
        "ProcessId": "3728",
        "Image": "C:\\Windows\\System32\\certutil.exe",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- real lines, one per shape ----------------------------------------------

SHAPES = [
    ("empire_invoke_wmi_2019-03-19152813.jsonl.gz", "Winlogbeat 6.5"),
    ("empire_invoke_psremoting_2019-05-18211456.jsonl.gz", "Winlogbeat 6.7"),
    ("covenant_installutil_2019-10-27223020.jsonl.gz", "Winlogbeat 7.4 (ECS)"),
    ("empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod_2020-09-21001437.jsonl.gz", "NXLog flat"),
]


def _first_real(file: str, event_id: int) -> tuple[dict[str, Any], bytes]:
    path = DATASETS / file
    if not path.exists():
        pytest.skip(f"recording {path} not present")
    for line in lines(path):
        doc = json.loads(line)
        w = doc.get("winlog") or {}
        if (w.get("event_id"), doc.get("event_id"), doc.get("EventID")).count(event_id):
            return doc, line
    pytest.fail(f"no event {event_id} in {file}")


def _origin_and_data(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "winlog" in doc:
        return doc["winlog"]["computer_name"], doc["winlog"]["event_data"]
    if "EventID" in doc:
        return doc["Hostname"], doc
    return doc["computer_name"], doc["event_data"]


@pytest.mark.parametrize(("file", "shape"), SHAPES)
@pytest.mark.parametrize("event_id", [1, 3])
def test_real_line_of_each_shape(file: str, shape: str, event_id: int) -> None:
    doc, line = _first_real(file, event_id)
    origin, data = _origin_and_data(doc)
    result = normalize(line)
    assert isinstance(result, NormalizedEvent), (shape, result)
    fields = result.fields
    assert result.event_id == event_id
    assert fields["host_name"] == origin
    assert fields["process_guid"] == data["ProcessGuid"].lower()
    # NXLog's flat export loses Sysmon's ProcessId (its ProcessID is the Sysmon
    # service's own, renamed ExecutionProcessID): null, never the service pid.
    expected_pid = int(data["ProcessId"]) if "ProcessId" in data else None
    assert fields["process_id"] == expected_pid
    assert fields["process_path"] == data["Image"]
    assert fields["process_name"] == data["Image"].rsplit("\\", 1)[-1]
    assert fields["event_date_creation"].startswith(data["UtcTime"][:10] + "T")
    assert fields["event_date_creation"].endswith("Z")
    model = ProcessCreate if event_id == 1 else NetworkConnect
    assert set(fields) == set(record_fields(model))
    if event_id == 1:
        assert fields["process_command_line"] == data["CommandLine"]
        assert fields["parent_process_path"] == data["ParentImage"]
    else:
        assert fields["dst_ip_addr"] == data["DestinationIp"]
        assert fields["dst_port"] == int(data["DestinationPort"])
        assert isinstance(fields["network_connection_initiated"], bool)


# --- mapping rules ------------------------------------------------------------


def test_network_connect_is_fully_mapped_with_types() -> None:
    result = normalize(ecs(3, connect_data(SourcePortName="", DestinationPortName="https")))
    assert isinstance(result, NormalizedEvent)
    assert result.process_guid == GUID
    assert result.fields == {
        "event_date_creation": "2019-10-28T02:31:01.498Z",
        "host_name": "HFDC01.shire.com",
        "process_guid": GUID,
        "process_id": 2136,
        "process_path": "C:\\Windows\\System32\\svchost.exe",
        "process_name": "svchost.exe",
        "user_account": "NT AUTHORITY\\NETWORK SERVICE",
        "network_protocol": "tcp",
        "network_connection_initiated": True,
        "src_is_ipv6": False,
        "src_ip_addr": "172.18.39.5",
        "src_host_name": None,
        "src_port": 49266,
        "src_port_name": None,
        "dst_is_ipv6": False,
        "dst_ip_addr": "172.18.39.102",
        "dst_host_name": None,
        "dst_port": 5985,
        "dst_port_name": "https",
    }
    assert result.timestamp_ms == 1572229861498


def test_process_create_maps_parent_and_canonical_guids() -> None:
    result = normalize(ecs(1, create_data()))
    assert isinstance(result, NormalizedEvent)
    fields = result.fields
    assert fields["parent_process_guid"] == "{905cc552-43ac-5c91-0000-0010b44bb700}"
    assert fields["parent_process_id"] == 3112
    assert fields["parent_process_path"].endswith("WmiPrvSE.exe")
    assert fields["user_session_id"] == 0
    assert fields["user_logon_id"] == "0x3e7"
    assert fields["hashes"] is None and fields["file_company"] is None


@pytest.mark.parametrize(
    ("shape", "raw"),
    [
        (
            "winlogbeat 6",
            {
                "event_id": 3,
                "log_name": "microsoft-windows-sysmon/operational",
                "computer_name": "HR001",
                "beat": {"hostname": "WEC"},
                "host": {"name": "WEC"},
                "process_id": 2440,
                "event_data": connect_data(),
            },
        ),
        (
            "winlogbeat 6, provider only",
            {
                "event_id": "3",
                "log_name": "Sysmon",
                "source_name": "MICROSOFT-WINDOWS-SYSMON",
                "computer_name": "HR001",
                "event_data": connect_data(),
            },
        ),
        (
            "flat nxlog",
            {
                "EventID": 3,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Hostname": "HR001",
                "host": "wec.internal",
                "ExecutionProcessID": 3392,
                **connect_data(SourceHostname="-", SourcePortName="-"),
            },
        ),
    ],
)
def test_shapes_take_origin_computer_and_event_pid(shape: str, raw: dict[str, Any]) -> None:
    result = normalize(json.dumps(raw).encode())
    assert isinstance(result, NormalizedEvent), shape
    assert result.fields["host_name"] == "HR001"
    assert result.fields["process_id"] == 2136
    assert result.fields["src_host_name"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (ecs(4624, {"TargetUserName": "x"}, channel="Security"), Filtered(NOT_SYSMON)),
        (ecs(4624, {"TargetUserName": "x"}, channel="security"), Filtered(NOT_SYSMON)),
        (ecs("x", {}, channel="Security"), Filtered(NOT_SYSMON)),
        (b'{"message": "heartbeat"}', Filtered(NOT_WINDOWS_EVENT)),
        # A flat or Winlogbeat 6.x document without its event id is still that shape.
        (b'{"Channel": "Security", "Hostname": "HR001"}', Filtered(NOT_SYSMON)),
        (b'{"SourceName": "Microsoft-Windows-Kernel-General"}', Filtered(NOT_SYSMON)),
        (b'{"source_name": "Service Control Manager"}', Filtered(NOT_SYSMON)),
        (ecs(7, {"ProcessGuid": GUID}), Filtered("sysmon_event_7", 7)),
        (ecs(2, {"ProcessGuid": GUID}), Filtered("sysmon_event_2", 2)),
        (
            ecs(3, connect_data(), channel="MICROSOFT-WINDOWS-SYSMON/OPERATIONAL").replace(
                b"X", b"X"
            ),
            None,
        ),
    ],
)
def test_filtering(raw: bytes, expected: Filtered | None) -> None:
    result = normalize(raw)
    if expected is None:
        assert isinstance(result, NormalizedEvent)
    else:
        assert result == expected


@pytest.mark.parametrize(
    ("raw", "error_contains"),
    [
        (b"not json at all", "not valid JSON"),
        (b'{"winlog": {"event_id": 3', "not valid JSON"),
        (b"[1, 2, 3]", "not an object"),
        (b'"a string"', "not an object"),
        (b"null", "not an object"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"", "not valid JSON"),
        (ecs("x", connect_data()), "event id"),
        (ecs(3, connect_data(SourcePort="abc")), "SourcePort"),
        (ecs(3, connect_data(DestinationPort="70000")), "DestinationPort"),
        (ecs(3, connect_data(Initiated="maybe")), "Initiated"),
        (ecs(3, connect_data(ProcessGuid=None)), "ProcessGuid is missing"),
        (ecs(1, create_data(ProcessGuid=None)), "ProcessGuid is missing"),
        (ecs(1, create_data(ProcessGuid="{00000000-0000-0000-0000-000000000000}")), "zero GUID"),
        (ecs(5, terminate_data(ProcessGuid="{00000000-0000-0000-0000-000000000000}")), "zero GUID"),
        (ecs(5, terminate_data(ProcessGuid=None)), "ProcessGuid is missing"),
        (ecs(5, terminate_data(UtcTime=None)), "UtcTime is missing"),
        (ecs(5, terminate_data(ProcessId="x")), "ProcessId"),
        (ecs(3, connect_data(ProcessGuid="not-a-guid")), "not a GUID"),
        (ecs(3, connect_data(UtcTime=None)), "UtcTime is missing"),
        (ecs(3, connect_data(UtcTime="yesterday")), "UtcTime"),
        (ecs(3, connect_data(UtcTime="2019-02-30 00:00:00.000")), "UtcTime"),
        (ecs(3, connect_data(Image={"nested": 1})), "Image"),
        (ecs(3, "event data as text"), "no event data"),  # type: ignore[arg-type]
        (ecs(None, connect_data()), "without an event id"),
        # The same in the flat and Winlogbeat 6.x shapes: the event id key is absent.
        (
            json.dumps(
                {"Channel": "Microsoft-Windows-Sysmon/Operational", **connect_data()}
            ).encode(),
            "without an event id",
        ),
        (
            json.dumps({"SourceName": "Microsoft-Windows-Sysmon", **connect_data()}).encode(),
            "without an event id",
        ),
        (
            json.dumps(
                {"log_name": "Microsoft-Windows-Sysmon/Operational", "event_data": connect_data()}
            ).encode(),
            "without an event id",
        ),
        (
            json.dumps(
                {"source_name": "Microsoft-Windows-Sysmon", "event_data": connect_data()}
            ).encode(),
            "without an event id",
        ),
    ],
)
def test_invalid_input_gives_a_reason_and_never_raises(raw: bytes, error_contains: str) -> None:
    result = normalize(raw)
    assert isinstance(result, Invalid), result
    assert error_contains.lower() in result.error.lower()


def test_process_terminate_is_normalized_for_the_join() -> None:
    result = normalize(ecs(5, terminate_data()))
    assert isinstance(result, NormalizedEvent)
    assert result.event_id == PROCESS_TERMINATE
    assert result.fields == {
        "event_date_creation": "2019-10-28T02:31:41.470Z",
        "host_name": "HFDC01.shire.com",
        "process_guid": "{a158f72c-530d-5db6-0000-001062e9af00}",
        "process_id": 3728,
        "process_path": "C:\\Windows\\System32\\certutil.exe",
        "process_name": "certutil.exe",
        "user_account": None,
    }
    assert set(result.fields) == set(record_fields(ProcessTerminate))


def test_zero_guid_connect_is_normalized_without_a_process() -> None:
    result = normalize(ecs(3, connect_data(ProcessGuid="{00000000-0000-0000-0000-000000000000}")))
    assert isinstance(result, NormalizedEvent)
    assert result.process_guid is None and result.fields["process_guid"] is None


def test_one_mebibyte_value_is_invalid_not_a_crash() -> None:
    result = normalize(b"x" * (1024 * 1024))
    assert isinstance(result, Invalid)


# --- value helpers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), ("", None), ("-", None), ("x", "x"),
        ("&lt;unknown process&gt;", "<unknown process>"),
        ("a &amp;&amp; b &quot;c&quot; &apos;d&apos;", "a && b \"c\" 'd'"),
        ("&#65;&#x42;", "AB"), ("&bogus;", "&bogus;"), ("&#x110000;", "&#x110000;"),
        ("&#55296;", "&#55296;"), ("&#0;", "&#0;"),
        (5, "5"), (True, "true"),
    ],
)  # fmt: skip
def test_clean_text(value: Any, expected: str | None) -> None:
    assert clean_text(value, "f") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("904", 904), (904, 904), (" 7 ", 7), ("0x10", 16), ("-", None), ("", None), (None, None)],
)
def test_to_int(value: Any, expected: int | None) -> None:
    assert to_int(value, "f") == expected


@pytest.mark.parametrize("value", ["abc", "1.5", True, [1], "-1", "99999999999"])
def test_to_int_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="f"):
        to_int(value, "f")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("FALSE", False), (True, True), ("-", None), (None, None)],
)
def test_to_bool(value: Any, expected: bool | None) -> None:
    assert to_bool(value, "f") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{905CC552-43AC-5C91-0000-0010B44BB703}", GUID),
        ("905cc552-43ac-5c91-0000-0010b44bb703", GUID),
        (" {905cc552-43ac-5c91-0000-0010b44bb703} ", GUID),
        ("{00000000-0000-0000-0000-000000000000}", None),
        ("-", None),
        (None, None),
    ],
)
def test_canonical_guid(value: Any, expected: str | None) -> None:
    assert canonical_guid(value) == expected


@pytest.mark.parametrize(
    ("value", "iso", "epoch_ms"),
    [
        ("2019-10-28 02:31:01.498", "2019-10-28T02:31:01.498Z", 1_572_229_861_498),
        ("2019-10-28 02:31:01", "2019-10-28T02:31:01.000Z", 1_572_229_861_000),
        ("2019-10-28T02:31:01.4987654Z", "2019-10-28T02:31:01.498Z", 1_572_229_861_498),
        ("2019-10-28 02:31:01.5", "2019-10-28T02:31:01.500Z", 1_572_229_861_500),
        # A clock reset to an epoch: years before 1970 and before 1000.
        ("1970-01-01 00:00:00.000", "1970-01-01T00:00:00.000Z", 0),
        ("1969-12-31 23:59:59.999", "1969-12-31T23:59:59.999Z", -1),
        ("1601-01-01 00:00:00.500", "1601-01-01T00:00:00.500Z", -11_644_473_599_500),
        ("0001-01-01 00:00:00.001", "0001-01-01T00:00:00.001Z", -62_135_596_799_999),
        ("9999-12-31 23:59:59.999", "9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ],
)
def test_parse_utc_time(value: str, iso: str, epoch_ms: int) -> None:
    assert parse_utc_time(value) == (iso, epoch_ms)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2019-02-30 00:00:00.000", "day is out of range for month"),
        ("2019-02-29 00:00:00.000", "day is out of range for month"),  # not a leap year
        ("2019-13-01 00:00:00.000", "month must be in 1..12"),
        ("0000-01-01 00:00:00.000", "year 0 is out of range"),
        ("2019-01-01 24:00:00.000", "hour must be in 0..23"),
        ("2019-01-01 23:60:00.000", "minute must be in 0..59"),
        ("2019-01-01 23:59:60.000", "second must be in 0..59"),  # no leap seconds in UtcTime
    ],
)
def test_parse_utc_time_names_what_is_out_of_range(value: str, reason: str) -> None:
    # The day of the bad times below is valid and cached first: its cached
    # start does not let a bad time of that day pass.
    assert parse_utc_time("2019-01-01 00:00:00")[1] == 1_546_300_800_000
    with pytest.raises(ValueError, match=f"^{re.escape(f'UtcTime={value!r}: {reason}')}$"):
        parse_utc_time(value)
    assert parse_utc_time("2020-02-29 23:59:59.999")[1] == 1_583_020_799_999  # a leap day


def test_parse_utc_time_reads_sysmon_layout_as_a_calendar_does() -> None:
    # Sysmon's "YYYY-MM-DD hh:mm:ss.fff" takes a path of its own (datetime's
    # parser); the reference is datetime's arithmetic, and the same moment
    # written in the ISO layout (the general path) reads the same.
    rng = random.Random(20261203)
    for _ in range(2_000):
        moment = datetime(1, 1, 1, tzinfo=UTC) + timedelta(
            milliseconds=rng.randrange(315_537_897_600_000)  # up to 9999-12-31
        )
        sysmon = f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}".zfill(23)
        epoch_ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        iso = sysmon.replace(" ", "T") + "Z"
        assert parse_utc_time(sysmon) == (iso, epoch_ms), sysmon
        assert parse_utc_time(iso) == (iso, epoch_ms), iso


def test_datasets_folder_is_where_the_tests_expect_it() -> None:
    # Not a skip: a missing ../shared must be visible, since other tests skip on it.
    if not DATASETS.is_dir():
        pytest.skip(f"{DATASETS} absent")
    assert any(Path(DATASETS).glob("*.jsonl.gz"))


def test_normalizer_never_raises_on_mangled_real_lines() -> None:
    # Seeded mutations of real events of every shape: truncations, byte flips,
    # values swapped for other JSON types. Each must give an outcome, not raise.
    import random

    rng = random.Random(20261129)
    samples = [_first_real(file, event_id)[1] for file, _ in SHAPES for event_id in (1, 3)]
    others: list[Any] = [None, 0, -1, 2**70, 1.5, True, "", "-", [], {}, "x" * 5000, "&#xD800;"]
    for _ in range(3000):
        line = bytearray(rng.choice(samples))
        kind = rng.randrange(3)
        if kind == 0:
            line = line[: rng.randrange(len(line))]
        elif kind == 1:
            for _ in range(rng.randint(1, 5)):
                line[rng.randrange(len(line))] = rng.randrange(256)
        else:
            doc = json.loads(line)
            data = doc.get("winlog", {}).get("event_data") or doc.get("event_data") or doc
            key = rng.choice(sorted(data))
            data[key] = rng.choice(others)
            line = bytearray(json.dumps(doc).encode())
        result = normalize(bytes(line))
        assert isinstance(result, NormalizedEvent | Filtered | Invalid)
        assert not (isinstance(result, Invalid) and result.error.startswith("normalizer failed"))
        if isinstance(result, NormalizedEvent):
            orjson.dumps(result.fields)  # what the agent will write must serialize


def test_process_access_and_remote_thread_are_their_source_process_events() -> None:
    # Sysmon 8 names SourceProcessGuid, Sysmon 10 SourceProcessGUID (schema 4.90):
    # either way the event is its source's, the process that acted.
    from tests.reference import _sysmon_parts

    seen = {8: 0, 10: 0}
    for path in sorted(DATASETS.glob("*.jsonl.gz")):
        for line in lines(path):
            parts = _sysmon_parts(json.loads(line))
            if parts is None or parts[0] not in seen:
                continue
            event_id, data = parts
            source = data.get("SourceProcessGuid") or data["SourceProcessGUID"]
            event = normalize(line, {8, 10})
            assert isinstance(event, NormalizedEvent), event
            assert event.process_guid == source.lower()
            assert event.fields["process_path"] == data["SourceImage"]
            seen[event_id] += 1
    assert seen[10] > 0, seen
