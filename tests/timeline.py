"""Hand-made raw Sysmon events on a timeline from T0: for the join engine's and rules test's tests.

The GUIDs of tests/events.py carry the start time 2019-03-19 19:31:56 UTC, so
connects from T0 (19:32:00) on are within a grace of a minute of their
process's start: their creation may still come, and they wait.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sysmon_faust.core.normalize import NormalizedEvent, normalize
from tests.events import guid, winlogbeat
from tests.reference import shipped_rule_id

T0 = datetime(2019, 3, 19, 19, 32, tzinfo=UTC)
A, B, C = guid(1), guid(2), guid(3)

SVCHOST = "C:\\Windows\\System32\\svchost.exe"
WMIPRVSE = "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
CMD = "C:\\Windows\\System32\\cmd.exe"
MSBUILD = "C:\\Windows\\Microsoft.NET\\Framework\\v4.0.30319\\MSBuild.exe"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"

WMI_RULE = shipped_rule_id("sysmon-wmi-child-network-connect")


def at(seconds: float) -> str:
    moment = T0 + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def create(
    seconds: float,
    process: str,
    image: str = CMD,
    parent: str = guid(0xFFF),
    parent_image: str = SVCHOST,
) -> bytes:
    return winlogbeat(
        1, at(seconds), process,
        Image=image, CommandLine=f"{image} /run",
        ParentProcessGuid=parent, ParentImage=parent_image,
        ParentCommandLine=f"{parent_image} -parent",
    )  # fmt: skip


def connect(seconds: float, process: str, port: int, image: str = CMD) -> bytes:
    return winlogbeat(
        3, at(seconds), process,
        Image=image, DestinationIp="10.0.10.106", DestinationPort=str(port),
    )  # fmt: skip


def event(raw: bytes) -> NormalizedEvent:
    outcome = normalize(raw)
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def hop(process: str, image: str) -> dict[str, Any]:
    """An ancestor as the join lists it: named by its child's creation."""
    return {
        "process_guid": process,
        "process_path": image,
        "process_command_line": f"{image} -parent",
    }
