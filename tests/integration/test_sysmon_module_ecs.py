"""Winlogbeat with its Sysmon module (fields moved into ECS): joined and detected by a real worker.

The input and the right output are ``../shared/cases/wlb7_sysmon_module_ecs.*``.
Before, every event was a dead letter and the WMI detection never fired.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import WorkerProcess, case_file, read_topic, run_recording

NAME = "wlb7_sysmon_module_ecs"

pytestmark = pytest.mark.integration


def test_module_processed_events_join_and_fire_the_wmi_rule(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    case = case_file(NAME)
    env = pipeline_env()
    worker, stats = run_recording(case, env, worker_factory)
    stats = worker.wait_for(lambda s: s["joined"] + s["unmatched"] == 3 and s["alerts"] == 1)
    assert (stats["process_creates"], stats["network_connects"], stats["dead_lettered"]) == (
        2, 3, 0
    )  # fmt: skip
    assert stats["joined"] == 1
    assert stats["alerts_by_rule"] == {"sysmon-wmi-child-network-connect": 1}
    record = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_JOIN"], expect=1)[0]
    joined = record.json()
    assert joined["process_guid"] == "{42f11c3b-ce10-5c8f-0000-0010aa552a00}"
    assert joined["parent_process_path"] == "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
    assert [hop["process_path"].rsplit("\\", 1)[-1] for hop in joined["process_ancestry"]] == [
        "WmiPrvSE.exe",
        "svchost.exe",
    ]
