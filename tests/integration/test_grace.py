"""The grace buffer: connects that arrive before their process's creation still join."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support import WorkerProcess, create_topic, produce, read_topic

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


def guid(n: int) -> str:
    return f"{{905cc552-43ac-5c91-0000-0010b44b{n:04x}}}"


def with_grace(
    pipeline_env: Callable[..., dict[str, str]], seconds: int
) -> tuple[dict[str, str], str, str]:
    """Settings with a grace, and the input topic: one partition, so the order is ours."""
    env = {**pipeline_env(partitions=2), "SYSMON_JOIN_GRACE": str(seconds)}
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    create_topic(bootstrap, input_topic, partitions=1)
    return env, bootstrap, input_topic


def test_early_connects_join_in_event_time_order_and_strays_expire(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env, bootstrap, input_topic = with_grace(pipeline_env, seconds=3)
    worker = worker_factory(env)
    values = [
        # Two connects logged before their process's creation reached us...
        connect("2019-03-19 15:28:13.500", guid(1), 444),
        connect("2019-03-19 15:28:13.000", guid(1), 443),
        create("2019-03-19 15:28:12.000", guid(1)),
        # ...and one whose process never shows up.
        connect("2019-03-19 15:28:14.000", guid(2), 80),
    ]
    produce(bootstrap, input_topic, values, partition=0)

    stats = worker.wait_for(
        lambda s: s["join_handled"] >= 4 and s["pending_connects"] == 0 and s["unmatched"] >= 1,
        timeout=60,
    )
    assert stats["joined"] == 2 and stats["released_after_wait"] == 2
    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], 2)]
    # Released in event-time order, not arrival order, with the process's fields.
    assert [record["dst_port"] for record in joined] == [443, 444]
    assert all(record["process_command_line"] == "cmd.exe /c whoami" for record in joined)
    [stray] = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_UNMATCHED"], 1)]
    assert stray["process_guid"] == guid(2)
    assert stray["unmatched_reason"] == "process_unknown_after_grace"
    assert stats["unmatched_by_reason"] == {"process_unknown_after_grace": 1}
    alerts = read_topic(bootstrap, env["SYSMON_TOPIC_ALERTS"], 2)
    assert len(alerts) == 2  # the WMI rule, on both released connects


def test_a_waiting_connect_survives_a_restart_and_joins_after_it(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env, bootstrap, input_topic = with_grace(pipeline_env, seconds=120)
    first = worker_factory(env)
    produce(bootstrap, input_topic, [connect("2019-03-19 15:28:13.000", guid(3), 443)], partition=0)
    first.wait_for(lambda s: s["pending_connects"] == 1, timeout=60)
    assert first.stop() == 0

    # The same worker (same state folder), restarted; then the creation arrives.
    second = worker_factory(env, web_port=first.web_port)
    produce(bootstrap, input_topic, [create("2019-03-19 15:28:12.000", guid(3))], partition=0)
    stats = second.wait_for(lambda s: s["joined"] >= 1, timeout=90)
    assert stats["unmatched"] == 0
    # It came out of the restored buffer, not from reading the connect again.
    assert stats["network_connects"] == 0 and stats["released_after_wait"] == 1
    [joined] = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], 1)]
    assert joined["process_guid"] == guid(3) and joined["dst_port"] == 443
