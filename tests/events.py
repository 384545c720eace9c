"""Single hand-made Winlogbeat 7 Sysmon events, for tests that need a precise order."""

from __future__ import annotations

import json
from itertools import count

from sysmon_faust.core.rekey import key_partition

HOST = "WKS0001.contoso.local"


def winlogbeat(event_id: int, utc_time: str, guid: str, **data: str) -> bytes:
    doc = {
        "@timestamp": utc_time.replace(" ", "T") + "Z",
        "winlog": {
            "event_id": event_id,
            "channel": "Microsoft-Windows-Sysmon/Operational",
            "provider_name": "Microsoft-Windows-Sysmon",
            "computer_name": HOST,
            "event_data": {"UtcTime": utc_time, "ProcessGuid": guid, "ProcessId": "4242", **data},
        },
    }
    return json.dumps(doc).encode()


def create(utc_time: str, guid: str) -> bytes:
    return winlogbeat(
        1,
        utc_time,
        guid,
        Image="C:\\Windows\\System32\\cmd.exe",
        CommandLine="cmd.exe /c whoami",
        ParentImage="C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
    )


def connect(utc_time: str, guid: str, port: int) -> bytes:
    return winlogbeat(
        3,
        utc_time,
        guid,
        Image="C:\\Windows\\System32\\cmd.exe",
        DestinationIp="10.0.10.106",
        DestinationPort=str(port),
    )


def terminate(utc_time: str, guid: str) -> bytes:
    return winlogbeat(5, utc_time, guid, Image="C:\\Windows\\System32\\cmd.exe")


def guid(n: int) -> str:
    return f"{{905cc552-43ac-5c91-0000-0010b44b{n:04x}}}"


def guids_in_partition(partition: int, partitions: int, how_many: int) -> list[str]:
    """GUIDs whose events the pipeline re-keys to ``partition`` (so they share stream time)."""
    found = (guid(n) for n in count() if key_partition(guid(n).encode(), partitions) == partition)
    return [next(found) for _ in range(how_many)]
