from __future__ import annotations

import pytest

from sysmon_faust.join import Row
from sysmon_faust.models import EnrichedNetworkConnect
from sysmon_faust.rules import WMI_CHILD_NETWORK_CONNECT, matching_rules


def event(parent: str | None) -> Row:
    return EnrichedNetworkConnect(
        event_date_creation="2019-03-19T15:28:13.000Z",
        process_guid="{905cc552-43ac-5c91-0000-0010b44bb703}",
        parent_process_path=parent,
    ).to_representation()


@pytest.mark.parametrize(
    ("parent", "fires"),
    [
        ("C:\\Windows\\System32\\wbem\\WmiPrvSE.exe", True),
        ("c:\\windows\\system32\\wbem\\wmiprvse.exe", True),
        ("C:\\WINDOWS\\SYSWOW64\\WBEM\\WMIPRVSE.EXE", True),
        ("WmiPrvSE.exe", True),
        ("C:\\Windows\\System32\\svchost.exe", False),
        ("C:\\tools\\WmiPrvSE.exe.bak", False),
        ("C:\\tools\\NotWmiPrvSE.exe", False),
        (None, False),
    ],
)
def test_wmi_child_rule(parent: str | None, fires: bool) -> None:
    assert (matching_rules(event(parent)) == [WMI_CHILD_NETWORK_CONNECT]) is fires


def test_wmi_rule_describes_attack() -> None:
    assert WMI_CHILD_NETWORK_CONNECT.attack_technique == "T1047"
    assert WMI_CHILD_NETWORK_CONNECT.severity == "high"
