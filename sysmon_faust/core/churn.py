"""A churning population of processes: the workload that shows the table stays bounded.

Processes start at a steady rate (of event time), each asks DNS for a name
and connects out once and ends after a random lifetime (Sysmon 1, 22, 3,
5); a share never ends. A
table without retention would grow with every creation; with
``SYSMON_TABLE_RETENTION`` and ``SYSMON_TABLE_TTL`` it holds what started
recently, and :meth:`ChurnExpected.live_rows` says how many rows that is at
a given stream time. Used by ``make bench`` (bench/churn.py) and
tests/integration/test_retention.py.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from sysmon_faust.core.synthetic import SYSMON_CHANNEL, GeneratedEvent

_CREATE, _CONNECT, _TERMINATE, _DNS_QUERY = 1, 3, 5, 22
#: Where every process connects, and what its DNS query answered.
_DESTINATION = "198.51.100.20"


@dataclass(frozen=True)
class ChurnConfig:
    processes: int = 10_000
    hosts: int = 50
    seed: int = 3
    #: Creations per second of event time.
    per_second: float = 50.0
    min_lifetime_seconds: float = 5.0
    max_lifetime_seconds: float = 300.0
    #: Processes that never end (no Sysmon 5): only the TTL removes their rows.
    never_ending_share: float = 0.05
    #: Each process asks DNS for a name of its own (Sysmon 22, before its
    #: connect, answered with the connect's address): the answers the join keeps
    #: per process churn with the processes (SYSMON_DNS_ANSWER_TTL).
    dns_query: bool = True
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@dataclass
class ChurnExpected:
    """What was generated: per process its creation and (if it ended) termination, in ms."""

    created_ms: list[int] = field(default_factory=list)
    ended_ms: list[int | None] = field(default_factory=list)
    events: int = 0

    def live_rows(self, stream_time_ms: int, retention_ms: int, ttl_ms: int) -> int:
        """Rows a table with this retention and TTL holds at ``stream_time_ms``.

        Deadlines count from the event's time here; the pipeline counts from
        its stream time when it handled the event, which is the same when the
        events come in event-time order, as these do.
        """
        live = 0
        for created, ended in zip(self.created_ms, self.ended_ms, strict=True):
            if created > stream_time_ms:
                continue
            if ended is not None and ended <= stream_time_ms:
                live += ended + retention_ms > stream_time_ms
            else:
                live += created + ttl_ms > stream_time_ms
        return live


class Churn:
    def __init__(self, config: ChurnConfig | None = None) -> None:
        self.config = config or ChurnConfig()
        self.random = random.Random(self.config.seed)
        self.hosts = [f"SRV{n:04d}.contoso.local" for n in range(self.config.hosts)]
        self.expected = ChurnExpected()

    def __iter__(self) -> Iterator[GeneratedEvent]:
        c = self.config
        step_ms = 1000.0 / c.per_second
        start_ms = int(c.start.timestamp() * 1000)
        # (event time, sequence, event id, process number): merged in event-time order.
        due: list[tuple[int, int, int, int]] = []
        guids: list[str] = []
        hosts: list[str] = []
        sequence = 0
        for number in range(c.processes):
            created = start_ms + int(number * step_ms)
            while due and due[0][0] <= created:
                yield self._event(*heapq.heappop(due), guids, hosts)
            hosts.append(self.random.choice(self.hosts))
            seconds = created // 1000  # Sysmon's GUID carries the start time (grace.py)
            guids.append(
                f"{{{self.hosts.index(hosts[-1]):08x}-{seconds & 0xFFFF:04x}-{seconds >> 16:04x}"
                f"-0000-{self.random.getrandbits(48):012x}}}"
            )
            ended: int | None = None
            if self.random.random() >= c.never_ending_share:
                lifetime = self.random.uniform(c.min_lifetime_seconds, c.max_lifetime_seconds)
                ended = created + int(lifetime * 1000)
            self.expected.created_ms.append(created)
            self.expected.ended_ms.append(ended)
            yield self._event(created, sequence, _CREATE, number, guids, hosts)
            queried = created + 250 if c.dns_query else None
            for when, event_id in (
                (queried, _DNS_QUERY),
                (created + 500, _CONNECT),
                (ended, _TERMINATE),
            ):
                if when is not None:
                    sequence += 1
                    heapq.heappush(due, (when, sequence, event_id, number))
        while due:
            yield self._event(*heapq.heappop(due), guids, hosts)

    def _event(
        self, when_ms: int, _sequence: int, event_id: int, number: int, guids: list[str],
        hosts: list[str],
    ) -> GeneratedEvent:  # fmt: skip
        when = datetime.fromtimestamp(when_ms / 1000, UTC)
        utc = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
        image = "C:\\Windows\\System32\\rundll32.exe"
        data = {
            "UtcTime": utc,
            "ProcessGuid": guids[number],
            "ProcessId": str(1000 + number % 60000),
            "Image": image,
        }
        if event_id == _CREATE:
            data |= {
                "CommandLine": f"rundll32.exe C:\\ProgramData\\task{number}.dll,Run",
                "ParentImage": "C:\\Windows\\System32\\svchost.exe",
                "ParentProcessGuid": "{" + str(uuid.UUID(int=number + 1)) + "}",
                "User": "NT AUTHORITY\\SYSTEM",
            }
        elif event_id == _CONNECT:
            data |= {"Protocol": "tcp", "DestinationIp": _DESTINATION, "DestinationPort": "443",
                     "SourceIp": "10.3.0.5", "SourcePort": str(49152 + number % 16000)}  # fmt: skip
        elif event_id == _DNS_QUERY:
            data |= {
                "QueryName": f"task{number}.example.com",
                "QueryStatus": "0",
                "QueryResults": f"type:  5 edge.example.net;::ffff:{_DESTINATION};",
            }
        doc = {
            "@timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "winlog": {
                "event_id": event_id,
                "channel": SYSMON_CHANNEL,
                "provider_name": "Microsoft-Windows-Sysmon",
                "computer_name": hosts[number],
                "event_data": data,
            },
        }
        self.expected.events += 1
        return GeneratedEvent(hosts[number].encode(), orjson.dumps(doc))
