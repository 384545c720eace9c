"""A create followed at once by its connects joins every time, whatever the speed.

The normalizer and the join are separate agents; the join still sees each
process's creation first because both travel, keyed by process_guid, through
one partition of one topic. This drives that path hard: thousands of
processes, each created and immediately connecting, buried in filler events,
produced as fast as the client can, over several input partitions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from tests.support import WorkerProcess, create_topic, produce, read_topic

HOSTS = [f"HOST{n}.contoso.local" for n in range(6)]
CHANNEL = "Microsoft-Windows-Sysmon/Operational"


def _event(host: str, event_id: int, data: dict[str, str], channel: str = CHANNEL) -> bytes:
    return json.dumps(
        {"winlog": {"event_id": event_id, "channel": channel, "computer_name": host,
                    "event_data": data}}
    ).encode()  # fmt: skip


def stream(processes: int, connects_each: int, filler_each: int) -> tuple[list[bytes], list[bytes]]:
    """(values, keys): keys by host, so a host's events stay in one input partition, in order."""
    values: list[bytes] = []
    keys: list[bytes] = []
    for n in range(processes):
        host = HOSTS[n % len(HOSTS)]
        guid = "{" + str(uuid.UUID(int=n + 1)) + "}"
        stamp = f"2026-01-05 10:{(n // 60) % 60:02d}:{n % 60:02d}.{n % 1000:03d}"
        create = {"UtcTime": stamp, "ProcessGuid": guid, "ProcessId": "1",
                  "Image": "C:\\x\\a.exe", "CommandLine": f"a.exe {n}"}  # fmt: skip
        values.append(_event(host, 1, create))
        keys.append(host.encode())
        for c in range(connects_each):
            connect = {"UtcTime": stamp, "ProcessGuid": guid, "DestinationIp": "10.0.0.1",
                       "DestinationPort": str(c + 1)}  # fmt: skip
            values.append(_event(host, 3, connect))
            keys.append(host.encode())
        for _ in range(filler_each):
            values.append(_event(host, 4624, {"TargetUserName": "x" * 800}, channel="Security"))
            keys.append(host.encode())
    return values, keys


def test_create_then_connects_always_join_under_load(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    processes, connects_each = 2000, 3
    values, keys = stream(processes, connects_each, filler_each=10)
    env = pipeline_env(partitions=4)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=3)
    worker = worker_factory(env)

    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values, keys=keys)
    stats = worker.wait_for(
        lambda s: s["consumed"] >= len(values) and s["join_handled"] >= s["normalized"],
        timeout=300,
    )

    assert stats["process_creates"] == processes
    assert stats["unmatched"] == 0, stats["unmatched_by_reason"]
    assert stats["joined"] == processes * connects_each
    joined = read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"])
    assert len(joined) == processes * connects_each
    command_lines = {r.json()["process_guid"]: r.json()["process_command_line"] for r in joined}
    assert len(command_lines) == processes
    assert all(line.startswith("a.exe ") for line in command_lines.values())
