"""Seeded synthetic Winlogbeat 7 (ECS) events: a sample for the demo and for tests.

Shaped like the real recordings: a few hosts, process trees (services,
explorer, shells and their children), network connections, other Sysmon
events and non-Sysmon channels. Every host also plays one WMI lateral
movement: ``WmiPrvSE.exe`` starts ``powershell.exe``, which connects out —
the case the recipe's detection is for.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
_SYSTEM32 = "C:\\Windows\\System32\\"
_WMIPRVSE = _SYSTEM32 + "wbem\\WmiPrvSE.exe"
_POWERSHELL = _SYSTEM32 + "WindowsPowerShell\\v1.0\\powershell.exe"
_CHILDREN = (
    (_SYSTEM32 + "cmd.exe", "cmd.exe /c whoami /all"),
    (_SYSTEM32 + "notepad.exe", "notepad.exe C:\\Users\\Public\\notes.txt"),
    (_POWERSHELL, "powershell.exe -NoProfile -Command Get-Process"),
    ("C:\\Program Files\\Mozilla Firefox\\firefox.exe", '"firefox.exe" -contentproc'),
)


@dataclass
class _Process:
    guid: str
    pid: int
    image: str
    command_line: str
    parent: _Process | None


class SyntheticRecording:
    """Generates one recording's lines; the same seed gives the same lines."""

    def __init__(self, seed: int = 7, hosts: int = 3, start: datetime | None = None) -> None:
        self.random = random.Random(seed)
        self.hosts = [f"WORKSTATION{n}.contoso.local" for n in range(1, hosts + 1)]
        self.clock = start or datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
        self.record_id = 1000

    def _guid(self) -> str:
        return "{" + str(uuid.UUID(int=self.random.getrandbits(128))) + "}"

    def _tick(self) -> str:
        self.clock += timedelta(milliseconds=self.random.randint(1, 400))
        return self.clock.strftime("%Y-%m-%d %H:%M:%S.") + f"{self.clock.microsecond // 1000:03d}"

    def _event(self, host: str, event_id: int, data: dict[str, str], channel: str) -> bytes:
        self.record_id += 1
        doc = {
            "@timestamp": self.clock.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "@metadata": {"beat": "winlogbeat", "type": "_doc", "version": "7.4.0"},
            "host": {"name": "WECServer"},
            "agent": {"hostname": "WECServer", "type": "winlogbeat", "version": "7.4.0"},
            "winlog": {
                "event_id": event_id,
                "channel": channel,
                "provider_name": "Microsoft-Windows-Sysmon"
                if channel == SYSMON_CHANNEL
                else "Microsoft-Windows-Security-Auditing",
                "computer_name": host,
                "record_id": self.record_id,
                "process": {"pid": 2044, "thread": {"id": 3636}},
                "event_data": data,
            },
            "event": {"code": event_id, "kind": "event"},
        }
        return orjson.dumps(doc)

    def process_create(self, host: str, process: _Process) -> bytes:
        parent = process.parent
        data = {
            "UtcTime": self._tick(),
            "ProcessGuid": process.guid,
            "ProcessId": str(process.pid),
            "Image": process.image,
            "CommandLine": process.command_line,
            "CurrentDirectory": "C:\\Windows\\system32\\",
            "User": "CONTOSO\\analyst",
            "LogonGuid": self._guid(),
            "LogonId": hex(self.random.randint(0x10000, 0xFFFFFF)),
            "TerminalSessionId": "1",
            "IntegrityLevel": "High",
            "Hashes": "SHA1=" + f"{self.random.getrandbits(160):040x}",
        }
        if parent is not None:
            data |= {
                "ParentProcessGuid": parent.guid,
                "ParentProcessId": str(parent.pid),
                "ParentImage": parent.image,
                "ParentCommandLine": parent.command_line,
            }
        return self._event(host, 1, data, SYSMON_CHANNEL)

    def network_connect(self, host: str, process: _Process, destination: str, port: int) -> bytes:
        data = {
            "UtcTime": self._tick(),
            "ProcessGuid": process.guid,
            "ProcessId": str(process.pid),
            "Image": process.image,
            "User": "CONTOSO\\analyst",
            "Protocol": "tcp",
            "Initiated": "true",
            "SourceIsIpv6": "false",
            "SourceIp": f"10.0.1.{self.hosts.index(host) + 10}",
            "SourceHostname": host,
            "SourcePort": str(self.random.randint(49152, 65535)),
            "DestinationIsIpv6": "false",
            "DestinationIp": destination,
            "DestinationPort": str(port),
            "DestinationPortName": "https" if port == 443 else "",
        }
        return self._event(host, 3, {k: v for k, v in data.items() if v}, SYSMON_CHANNEL)

    def noise(self, host: str) -> bytes:
        if self.random.random() < 0.5:
            return self._event(
                host, 4624, {"TargetUserName": "analyst", "LogonType": "3"}, "Security"
            )
        return self._event(
            host,
            self.random.choice((7, 10, 11, 12, 13)),
            {
                "UtcTime": self._tick(),
                "ProcessGuid": self._guid(),
                "Image": _SYSTEM32 + "svchost.exe",
            },
            SYSMON_CHANNEL,
        )

    def lines(self, processes_per_host: int = 6, noise_per_process: int = 5) -> Iterator[bytes]:
        for host in self.hosts:
            services = _Process(self._guid(), 640, _SYSTEM32 + "services.exe", "services.exe", None)
            wmi = _Process(
                self._guid(), 3112, _WMIPRVSE, _WMIPRVSE + " -secured -Embedding", services
            )
            # The WMI provider host started before the recording: its creation
            # is not in it, as in the real recordings.
            for _ in range(processes_per_host):
                image, command_line = self.random.choice(_CHILDREN)
                child = _Process(
                    self._guid(), self.random.randint(1000, 9000), image, command_line, services
                )
                yield self.process_create(host, child)
                for _ in range(noise_per_process):
                    yield self.noise(host)
                yield self.network_connect(
                    host, child, f"93.184.216.{self.random.randint(1, 254)}", 443
                )
            # WMI lateral movement: Win32_Process.Create → powershell → C2.
            payload = _Process(
                self._guid(),
                4242,
                _POWERSHELL,
                "powershell.exe -NoP -sta -NonI -W Hidden -Enc SQBFAFgA",
                wmi,
            )
            yield self.process_create(host, payload)
            yield self.network_connect(host, payload, "10.0.10.106", 443)
            # A connect of a process the recording never saw start: unmatched.
            yield self.network_connect(host, wmi, "10.0.1.1", 135)


def sample_lines(seed: int = 7) -> list[bytes]:
    return list(SyntheticRecording(seed).lines())
