"""Ancestry across workers: a process tree whose links live on different workers.

WmiPrvSE.exe → cmd.exe → MSBuild.exe, and MSBuild connects out — the
multi-hop shape the one-hop HELK rule misses. Two real workers; the GUIDs
are picked so that cmd's row and MSBuild's row belong to partitions of
different workers, and MSBuild's to the worker whose intake does not read
the input: that join learns every ancestor through the process-tree topic
(sysmon_faust.stream.tree_replica), nothing of it locally. Then the other worker
stops, and a later connect still carries the whole ancestry (the copy does
not depend on who owns what).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import pytest

from sysmon_faust.core.rekey import key_partition
from tests.events import winlogbeat
from tests.integration.test_scale_out import start_group, wait_settled
from tests.reference import shipped_rule_id
from tests.support import WorkerProcess, create_topic, produce, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
WMI_RULE = shipped_rule_id("sysmon-wmi-child-network-connect")
MSBUILD_RULE = shipped_rule_id("sysmon-msbuild-network-connect")
SVCHOST = "C:\\Windows\\System32\\svchost.exe"
WMIPRVSE = "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
CMD = "C:\\Windows\\System32\\cmd.exe"
MSBUILD = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\MSBuild.exe"


def sysmon_guid(started: int, n: int) -> str:
    """A GUID as Sysmon makes it: the start time (Unix seconds) in the 2nd and 3rd groups."""
    return f"{{905cc552-{started & 0xFFFF:04x}-{started >> 16:04x}-0000-0010b44b{n:04x}}}"


def guids(started: int, partitions: set[int]) -> Iterator[str]:
    for n in count():
        guid = sysmon_guid(started, n)
        if key_partition(guid.encode(), PARTITIONS) in partitions:
            yield guid


def creation(utc: str, guid: str, image: str, parent: str, parent_image: str) -> bytes:
    return winlogbeat(
        1, utc, guid, Image=image, CommandLine=f'"{image}" /x',
        ParentProcessGuid=parent, ParentImage=parent_image, ParentCommandLine=f'"{parent_image}"',
    )  # fmt: skip


def hop(guid: str, image: str) -> dict[str, Any]:
    return {"process_guid": guid, "process_path": image, "process_command_line": f'"{image}"'}


def alerts_for(records: list[Any], guid: str) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in records if r["event"]["process_guid"] == guid}


@pytest.mark.timeout(600)
def test_ancestry_crosses_workers_and_survives_a_rebalance(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = {**pipeline_env(partitions=PARTITIONS), "SYSMON_TABLE_TTL": str(3650 * 86400)}
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=1)
    workers = start_group(2, env, worker_factory)
    # Worker 0: the one that reads the (single) input partition.
    workers.sort(key=lambda w: not w.stats()["input_partitions"])
    owned = [set(w.stats()["table_partitions_active"]) for w in workers]
    assert owned[0] and owned[1] and not owned[0] & owned[1], owned
    assert workers[0].stats()["input_partitions"] == [0], "one worker reads the input"

    # 2019-03-19 15:28:13 UTC and on: what Sysmon would log for this tree.
    t0 = 1553009293
    svchost = sysmon_guid(t0 - 86400, 1)  # started a day before; never seen
    wmiprvse = next(guids(t0, owned[1]))
    cmd = next(guids(t0 + 1, owned[0]))  # its row and link on worker 0
    msbuild = next(guids(t0 + 2, owned[1]))  # joined on worker 1
    events = [
        creation("2019-03-19 15:28:13.100", wmiprvse, WMIPRVSE, svchost, SVCHOST),
        creation("2019-03-19 15:28:14.200", cmd, CMD, wmiprvse, WMIPRVSE),
        creation("2019-03-19 15:28:15.300", msbuild, MSBUILD, cmd, CMD),
        winlogbeat(3, "2019-03-19 15:28:16.400", msbuild, Image=MSBUILD,
                   DestinationIp="10.0.10.106", DestinationPort="443"),
    ]  # fmt: skip
    # All at once: the join of MSBuild's connect (worker 1) races cmd's
    # creation (worker 0); the ancestry must not depend on who wins.
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], events)
    expected = [hop(cmd, CMD), hop(wmiprvse, WMIPRVSE), hop(svchost, SVCHOST)]

    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], 1, timeout=120)]
    assert joined[0]["process_guid"] == msbuild
    assert joined[0]["process_ancestry"] == expected
    alert_records = read_topic(bootstrap, env["SYSMON_TOPIC_ALERTS"], 2, timeout=60)
    alerts = alerts_for([r.json() for r in alert_records], msbuild)
    assert set(alerts) == {WMI_RULE, MSBUILD_RULE}
    assert alerts[WMI_RULE]["attack_technique"] == "T1047"
    assert alerts[WMI_RULE]["event"]["process_ancestry"] == expected
    # One truth: what the alert says is what GET /process/{guid}/ancestry
    # answers, on either worker; and it says which creations were seen.
    for worker in workers:
        status, body = worker.http(f"/process/{msbuild}/ancestry")
        assert status == 200, body
        hops = [{k: v for k, v in h.items() if k != "own_creation_seen"} for h in body["ancestry"]]
        assert hops == expected
        assert [h["own_creation_seen"] for h in body["ancestry"]] == [True, True, False]
        assert (body["stopped"], body["unknown_parent_guid"]) == ("unknown_parent", svchost)
        assert body["process"]["process_path"] == MSBUILD
    stats = [w.stats() for w in workers]
    assert stats[1]["joined"] == 1 and stats[0]["joined"] == 0
    print(f"ancestry waits on the joining worker: {stats[1]['ancestry_waits']}")

    # The worker that wrote cmd's link leaves; the other takes every partition.
    workers[0].stop()
    wait_settled(workers[1:])
    deadline = time.monotonic() + 60
    while len(workers[1].stats()["table_partitions_active"]) < PARTITIONS:
        assert time.monotonic() < deadline, workers[1].log_tail()
        time.sleep(0.5)
    produce(
        bootstrap, env["SYSMON_TOPIC_INPUT"],
        [winlogbeat(3, "2019-03-19 15:28:20.000", msbuild, Image=MSBUILD,
                    DestinationIp="10.0.10.106", DestinationPort="8443")],
    )  # fmt: skip
    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], 2, timeout=120)]
    assert [j["dst_port"] for j in joined] == [443, 8443]
    assert joined[1]["process_ancestry"] == expected
