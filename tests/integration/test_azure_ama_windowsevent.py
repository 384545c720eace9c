"""Sysmon from Azure Monitor Agent's ``WindowsEvent`` rows joins through a real worker.

The input and the right output are ``../shared/cases/azure_ama_windowsevent.*``:
EventData a JSON object serialised as a string, the computer in ``Computer``.
Before, all four rows were dead letters ("ProcessGuid is missing").
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import WorkerProcess, case_file, read_topic, run_recording

NAME = "azure_ama_windowsevent"

pytestmark = pytest.mark.integration


def test_azure_monitor_agent_rows_join_like_any_other(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    case = case_file(NAME)
    env = pipeline_env()  # SYSMON_JOIN_GRACE=0: the tomcat connects are unmatched at once
    worker, stats = run_recording(case, env, worker_factory)
    stats = worker.wait_for(lambda s: s["joined"] + s["unmatched"] == 3)
    assert (stats["process_creates"], stats["network_connects"]) == (1, 3)
    assert (stats["joined"], stats["unmatched"], stats["dead_lettered"]) == (1, 2, 0)
    assert stats["alerts"] == 0
    record = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_JOIN"], expect=1)[0]
    joined = record.json()
    assert joined["host_name"] == "WKSTN01"
    assert joined["process_guid"] == "{f3329a35-1cb0-627e-f916-000000000600}"
    assert (joined["dst_ip_addr"], joined["dst_port"]) == ("198.51.100.5", 443)
    assert [hop["process_path"].rsplit("\\", 1)[-1] for hop in joined["process_ancestry"]] == [
        "tomcat9.exe"
    ]
