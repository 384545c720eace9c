from __future__ import annotations

from sysmon_faust.core.join.semantics import PROCESS_UNKNOWN, Row, enrich, unmatched
from sysmon_faust.core.records import (
    EnrichedNetworkConnect,
    NetworkConnect,
    ProcessCreate,
    UnmatchedNetworkConnect,
    record_fields,
)

GUID = "{905cc552-43ac-5c91-0000-0010b44bb703}"

CONTRACT_JOIN_FIELDS = """event_date_creation, host_name, process_guid, process_id,
process_path, process_name, user_account, network_protocol,
network_connection_initiated, src_is_ipv6, src_ip_addr, src_host_name,
src_port, src_port_name, dst_is_ipv6, dst_ip_addr, dst_host_name, dst_port,
dst_port_name, process_command_line,
process_current_directory, process_integrity_level, hashes, user_logon_guid,
user_logon_id, user_session_id, parent_process_guid, parent_process_id,
parent_process_path, parent_process_command_line"""
#: Added to the contract's list by this project (README, "Ancestry").
ADDED_JOIN_FIELDS = ["process_ancestry"]


def _process() -> Row:
    # Built through the model: rows carry exactly its fields (as the intake writes them).
    return ProcessCreate(
        process_guid=GUID,
        event_date_creation="2019-03-19T15:28:10.000Z",
        process_path="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        process_command_line="powershell -nop",
        user_account="SHIRE\\creator",
        parent_process_path="C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
        parent_process_guid="{905cc552-43ac-5c91-0000-0010b44bb700}",
        user_session_id=0,
    ).as_dict()


def _connect() -> Row:
    return NetworkConnect(
        event_date_creation="2019-03-19T15:28:13.000Z",
        process_guid=GUID,
        process_path="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        user_account="SHIRE\\connector",
        dst_ip_addr="10.0.10.106",
        dst_port=443,
    ).as_dict()


def test_join_record_carries_exactly_the_contract_fields() -> None:
    expected = [name.strip() for name in CONTRACT_JOIN_FIELDS.split(",")]
    assert record_fields(EnrichedNetworkConnect) == expected + ADDED_JOIN_FIELDS


def test_enrich_takes_network_side_from_connect_and_process_side_from_create() -> None:
    ancestry = [{"process_guid": GUID, "process_path": "x.exe", "process_command_line": "x"}]
    joined = enrich(_connect(), _process(), ancestry)
    assert list(joined) == record_fields(EnrichedNetworkConnect)
    assert joined["event_date_creation"] == "2019-03-19T15:28:13.000Z"
    assert joined["user_account"] == "SHIRE\\connector"
    assert joined["dst_port"] == 443
    assert joined["process_command_line"] == "powershell -nop"
    assert joined["parent_process_path"].endswith("WmiPrvSE.exe")
    assert joined["user_session_id"] == 0
    assert joined["process_ancestry"] == ancestry


def test_unmatched_keeps_the_connect_and_says_why() -> None:
    record = unmatched(_connect(), PROCESS_UNKNOWN)
    assert list(record) == record_fields(UnmatchedNetworkConnect)
    assert record["unmatched_reason"] == PROCESS_UNKNOWN
    assert record["dst_ip_addr"] == "10.0.10.106"


def test_rows_missing_fields_become_nulls_not_errors() -> None:
    joined = enrich({"event_date_creation": "2019-03-19T15:28:13.000Z"}, {}, [])
    assert joined["process_command_line"] is None
    assert joined["dst_port"] is None
