"""Seeded synthetic Winlogbeat 7 (ECS) events: the benchmark's workload and the demo's sample.

Shaped like the real recordings (../shared/datasets): many hosts, process
trees (services → svchost, explorer → shells → children), network
connections, the other Sysmon events (7, 10, 11, 12, 13, 22) and non-Sysmon
channels, in the mix the recordings show — about 1 % process creations, 5 %
network connections. Events are 1-2 KiB like Winlogbeat's (long command
lines, hashes, the rendered ``message``). Every so often a host plays a WMI
lateral movement: ``WmiPrvSE.exe`` starts ``powershell.exe``, which connects
out — the case the recipe's detection is for.

The same config and seed give the same bytes. The generator also counts what
a correct pipeline must make of its output (``Expected``), so a benchmark or a
test knows when the last enriched record is out.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
_SYSTEM32 = "C:\\Windows\\System32\\"
_WMIPRVSE = _SYSTEM32 + "wbem\\WmiPrvSE.exe"
_POWERSHELL = _SYSTEM32 + "WindowsPowerShell\\v1.0\\powershell.exe"
_CHILDREN = (
    (_SYSTEM32 + "cmd.exe", 'cmd.exe /c "whoami /all & ipconfig /all & net use"'),
    (_SYSTEM32 + "notepad.exe", "notepad.exe C:\\Users\\Public\\Documents\\quarterly-notes.txt"),
    (_POWERSHELL, "powershell.exe -NoProfile -ExecutionPolicy Bypass -Command Get-Process"),
    ("C:\\Program Files\\Mozilla Firefox\\firefox.exe",
     '"C:\\Program Files\\Mozilla Firefox\\firefox.exe" -contentproc --channel=1234 '
     "-childID 7 -isForBrowser -prefsLen 9000 -prefMapSize 250000 tab"),
    (_SYSTEM32 + "svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule"),
)  # fmt: skip
_OTHER_SYSMON = (7, 10, 11, 12, 13, 22)
_NON_SYSMON = (
    ("Security", 4624),
    ("Security", 4688),
    ("Windows PowerShell", 800),
    ("System", 7036),
)


@dataclass(frozen=True)
class WorkloadConfig:
    """Knobs of the generated stream. Shares are of all events."""

    events: int = 10_000
    hosts: int = 20
    seed: int = 7
    process_create_share: float = 0.01
    network_connect_share: float = 0.05
    other_sysmon_share: float = 0.60  # the rest is non-Sysmon channels
    #: Of the connects, the share made by processes created in the stream
    #: (the others started before it, as most do in real recordings).
    joinable_share: float = 0.5
    #: Of the processes created, the share whose first connect is emitted
    #: *before* their creation: the creation follows up to
    #: ``early_max_seconds`` later in the stream (and in event time).
    early_connect_share: float = 0.0
    early_max_seconds: float = 120.0
    #: One WMI lateral movement (create + connect, one alert) per this many events.
    wmi_every: int = 5_000
    #: False: the GUIDs' 2nd/3rd groups are random, not the start time Sysmon
    #: writes there (other tools, a broken host clock, crafted input:
    #: ../shared/cases/guid_without_start_time) — the same stream otherwise.
    guid_start_times: bool = True
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@dataclass
class Expected:
    """What a correct pipeline makes of the generated stream (one partition per host)."""

    events: int = 0
    process_creates: int = 0
    network_connects: int = 0
    joined_in_order: int = 0  # connects emitted after their creation
    joined_early: int = 0  # connects emitted before their creation
    wmi_alerts: int = 0


@dataclass
class _Process:
    guid: str
    pid: int
    image: str
    command_line: str
    parent: _Process | None


@dataclass(frozen=True)
class GeneratedEvent:
    host: bytes  # a partitioning key that keeps a host's events in order
    value: bytes


class Workload:
    def __init__(self, config: WorkloadConfig | None = None) -> None:
        self.config = config or WorkloadConfig()
        self.random = random.Random(self.config.seed)
        self.hosts = [f"WKS{n:04d}.contoso.local" for n in range(self.config.hosts)]
        self.clock = self.config.start
        self.record_id = 1_000_000
        self.expected = Expected()
        self._running: dict[str, list[_Process]] = {host: [] for host in self.hosts}
        self._before: dict[str, list[_Process]] = {}
        #: Creations of processes whose first connect was emitted already: (when, host, process).
        self._late_creations: list[tuple[datetime, str, _Process]] = []
        self._machine = {host: f"{self.random.getrandbits(32):08x}" for host in self.hosts}
        for host in self.hosts:
            booted = self.config.start - timedelta(seconds=self.random.uniform(3600, 20 * 86400))
            services = _Process(
                self._process_guid(host, booted), 640, _SYSTEM32 + "services.exe",
                "services.exe", None,
            )  # fmt: skip
            explorer = _Process(
                self._process_guid(host, booted + timedelta(seconds=40)), 4100,
                "C:\\Windows\\explorer.exe", "explorer.exe", None,
            )  # fmt: skip
            wmi = _Process(
                self._process_guid(host, booted + timedelta(seconds=9)), 3112, _WMIPRVSE,
                _WMIPRVSE + " -secured -Embedding", services,
            )  # fmt: skip
            # Started before the stream: their connects can never join.
            self._before[host] = [services, explorer, wmi]

    # --- values -----------------------------------------------------------

    def _guid(self) -> str:
        return "{" + str(uuid.UUID(int=self.random.getrandbits(128))) + "}"

    def _process_guid(self, host: str, started: datetime) -> str:
        # As Sysmon builds them: machine, start time (low then high 16 bits of
        # the Unix seconds), a counter (sysmon_faust.core.guid_time.process_start_ms).
        seconds = int(started.timestamp())
        if not self.config.guid_start_times:
            seconds = self.random.getrandbits(32)
        return (
            f"{{{self._machine[host]}-{seconds & 0xFFFF:04x}-{seconds >> 16:04x}-0000-"
            f"{self.random.getrandbits(48):012x}}}"
        )

    def _tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self.random.randint(0, 40))
        return self.clock

    @staticmethod
    def _utc(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"

    def _event(self, host: str, event_id: int, data: dict[str, str], channel: str) -> bytes:
        self.record_id += 1
        sysmon = channel == SYSMON_CHANNEL
        doc = {
            "@timestamp": self.clock.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "@metadata": {"beat": "winlogbeat", "type": "_doc", "version": "7.4.0"},
            "host": {"name": "WECServer"},
            "agent": {"hostname": "WECServer", "type": "winlogbeat", "version": "7.4.0"},
            "winlog": {
                "event_id": event_id,
                "channel": channel,
                "provider_name": "Microsoft-Windows-Sysmon" if sysmon else channel,
                "computer_name": host,
                "record_id": self.record_id,
                "process": {"pid": 2044, "thread": {"id": 3636}},
                "event_data": data,
            },
            "event": {"code": event_id, "kind": "event"},
            "log": {"level": "information"},
            # Winlogbeat carries the rendered event as text too: most of its size.
            "message": "\n".join(f"{k}: {v}" for k, v in data.items()),
        }
        return orjson.dumps(doc)

    def _create(self, host: str, process: _Process, when: datetime) -> bytes:
        parent = process.parent
        data = {
            "UtcTime": self._utc(when),
            "ProcessGuid": process.guid,
            "ProcessId": str(process.pid),
            "Image": process.image,
            "FileVersion": "10.0.19041.1 (WinBuild.160101.0800)",
            "Description": process.image.rsplit("\\", 1)[-1],
            "Company": "Microsoft Corporation",
            "CommandLine": process.command_line,
            "CurrentDirectory": "C:\\Windows\\system32\\",
            "User": "CONTOSO\\analyst",
            "LogonGuid": self._guid(),
            "LogonId": hex(self.random.randint(0x10000, 0xFFFFFF)),
            "TerminalSessionId": "1",
            "IntegrityLevel": "High",
            "Hashes": f"SHA1={self.random.getrandbits(160):040X},"
            f"MD5={self.random.getrandbits(128):032X},"
            f"SHA256={self.random.getrandbits(256):064X}",
        }
        if parent is not None:
            data |= {
                "ParentProcessGuid": parent.guid,
                "ParentProcessId": str(parent.pid),
                "ParentImage": parent.image,
                "ParentCommandLine": parent.command_line,
            }
        self.expected.process_creates += 1
        return self._event(host, 1, data, SYSMON_CHANNEL)

    def _connect(self, host: str, process: _Process, when: datetime, dst: str, port: int) -> bytes:
        data = {
            "UtcTime": self._utc(when),
            "ProcessGuid": process.guid,
            "ProcessId": str(process.pid),
            "Image": process.image,
            "User": "CONTOSO\\analyst",
            "Protocol": "tcp",
            "Initiated": "true",
            "SourceIsIpv6": "false",
            "SourceIp": f"10.1.{self.hosts.index(host) // 250}.{self.hosts.index(host) % 250 + 1}",
            "SourceHostname": host,
            "SourcePort": str(self.random.randint(49152, 65535)),
            "DestinationIsIpv6": "false",
            "DestinationIp": dst,
            "DestinationPort": str(port),
        }
        if port == 443:
            data["DestinationPortName"] = "https"
        self.expected.network_connects += 1
        return self._event(host, 3, data, SYSMON_CHANNEL)

    def _other(self, host: str) -> bytes:
        event_id = self.random.choice(_OTHER_SYSMON)
        if event_id == 10:
            return self._process_access(host)
        process = self.random.choice(self._before[host])
        data = {
            "UtcTime": self._utc(self._tick()),
            "ProcessGuid": process.guid,
            "ProcessId": str(process.pid),
            "Image": process.image,
            "TargetObject": "HKLM\\System\\CurrentControlSet\\Services\\bam\\State\\UserSettings\\"
            f"S-1-5-21-{self.random.getrandbits(32)}\\Device\\HarddiskVolume2\\Windows\\"
            "System32\\wbem\\WmiPrvSE.exe",
        }
        return self._event(host, event_id, data, SYSMON_CHANNEL)

    def _process_access(self, host: str) -> bytes:
        """Sysmon 10 as schema 4.90 writes it: a source opens a handle on a target process,
        each as likely to be one created in the stream as a connect's process is."""
        running = self._running[host]
        before = self._before[host]
        joinable = self.config.joinable_share
        source = self.random.choice(
            running if running and self.random.random() < joinable else before
        )
        target = self.random.choice(
            running if running and self.random.random() < joinable else before
        )
        data = {
            "RuleName": "-",
            "UtcTime": self._utc(self._tick()),
            "SourceProcessGUID": source.guid,
            "SourceProcessId": str(source.pid),
            "SourceThreadId": str(self.random.randint(100, 9000)),
            "SourceImage": source.image,
            "TargetProcessGUID": target.guid,
            "TargetProcessId": str(target.pid),
            "TargetImage": target.image,
            # PROCESS_QUERY_LIMITED_INFORMATION: what most handles opened on
            # another process ask for (a task list, an updater, a browser).
            "GrantedAccess": "0x1000",
            "CallTrace": "C:\\Windows\\SYSTEM32\\ntdll.dll+9d4c4|"
            "C:\\Windows\\System32\\KERNELBASE.dll+2b90e|UNKNOWN(00007FF6A1B2C3D4)",
        }
        return self._event(host, 10, data, SYSMON_CHANNEL)

    def _non_sysmon(self, host: str) -> bytes:
        channel, event_id = self.random.choice(_NON_SYSMON)
        data = {
            "SubjectUserName": "analyst",
            "TargetUserName": "svc-backup",
            "LogonType": "3",
            "IpAddress": f"10.2.{self.random.randint(0, 255)}.{self.random.randint(1, 254)}",
            "ProcessName": _SYSTEM32 + "lsass.exe",
            "AuthenticationPackageName": "Kerberos",
            "WorkstationName": host.split(".")[0],
        }
        self._tick()
        return self._event(host, event_id, data, channel)

    # --- the stream ---------------------------------------------------------

    def __iter__(self) -> Iterator[GeneratedEvent]:
        c = self.config
        create_at = c.process_create_share
        connect_at = create_at + c.network_connect_share
        other_at = connect_at + c.other_sysmon_share
        emitted = 0
        while emitted < c.events:
            while self._late_creations and self._late_creations[0][0] <= self.clock:
                yield self._late_creation(*self._late_creations.pop(0))
                emitted += 1
            host = self.random.choice(self.hosts)
            key = host.encode()
            if c.wmi_every and emitted % c.wmi_every == c.wmi_every - 1:
                for value in self._wmi_lateral_movement(host):
                    yield GeneratedEvent(key, value)
                    emitted += 1
                continue
            roll = self.random.random()
            if roll < create_at:
                for value in self._new_process(host):
                    yield GeneratedEvent(key, value)
                    emitted += 1
            elif roll < connect_at:
                yield GeneratedEvent(key, self._connect_from_running(host))
                emitted += 1
            elif roll < other_at:
                yield GeneratedEvent(key, self._other(host))
                emitted += 1
            else:
                yield GeneratedEvent(key, self._non_sysmon(host))
                emitted += 1
        for late in self._late_creations:  # the stream ends after them
            yield self._late_creation(*late)
            emitted += 1
        self._late_creations.clear()
        self.expected.events = emitted

    def _new_process(self, host: str) -> Iterator[bytes]:
        image, command_line = self.random.choice(_CHILDREN)
        parents = self._running[host][-5:] or self._before[host][:2]
        when = self._tick()
        early = self.random.random() < self.config.early_connect_share
        later = when + timedelta(seconds=self.random.uniform(0, self.config.early_max_seconds))
        process = _Process(
            self._process_guid(host, later if early else when), self.random.randint(1000, 60000),
            image, command_line, self.random.choice(parents),
        )  # fmt: skip
        if early:
            # Its first connection is logged, and reaches Kafka, before its
            # creation does (Sysmon and Winlogbeat do not promise the order).
            yield self._connect(host, process, when, "203.0.113.7", 443)
            self.expected.joined_early += 1
            self._late_creations.append((later, host, process))
            self._late_creations.sort(key=lambda late: late[0])
            return
        yield self._create(host, process, when)
        self._started(host, process)

    def _late_creation(self, when: datetime, host: str, process: _Process) -> GeneratedEvent:
        value = self._create(host, process, when)
        self._started(host, process)
        return GeneratedEvent(host.encode(), value)

    def _started(self, host: str, process: _Process) -> None:
        running = self._running[host]
        running.append(process)
        if len(running) > 50:  # processes end; a host keeps a bounded set running
            running.pop(0)

    def _connect_from_running(self, host: str) -> bytes:
        running = self._running[host]
        if running and self.random.random() < self.config.joinable_share:
            process = self.random.choice(running)
            self.expected.joined_in_order += 1
        else:
            process = self.random.choice(self._before[host])
        dst = f"93.184.{self.random.randint(0, 255)}.{self.random.randint(1, 254)}"
        return self._connect(host, process, self._tick(), dst, self.random.choice((443, 80, 8080)))

    def _wmi_lateral_movement(self, host: str) -> Iterator[bytes]:
        wmi = self._before[host][2]
        command_line = "powershell.exe -NoP -sta -NonI -W Hidden -Enc SQBFAFgAIAAoAE4AZQB3AC0A"
        when = self._tick()
        payload = _Process(self._process_guid(host, when), 4242, _POWERSHELL, command_line, wmi)
        yield self._create(host, payload, when)
        yield self._connect(host, payload, self._tick(), "10.0.10.106", 443)
        self.expected.joined_in_order += 1
        self.expected.wmi_alerts += 1


def sample_lines(seed: int = 7) -> list[bytes]:
    """A small recording for the demo when ../shared/datasets is absent (3 WMI alerts)."""
    config = WorkloadConfig(events=3000, hosts=3, seed=seed, wmi_every=1000)
    return [event.value for event in Workload(config)]
