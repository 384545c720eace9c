"""The shipper cases of ``../shared/cases`` through a real worker: the right values of each
``.expected.md``.

Each input used to be dead-lettered whole:

* ``lone_surrogate_escape``: an Image holding ``\\udc81`` (legal JSON, written by
  Python and .NET exporters for NTFS names);
* ``azure_ama_windowsevent``: Azure Monitor Agent ``WindowsEvent`` rows,
  EventData a JSON object serialised as a string;
* ``wlb7_sysmon_module_ecs``: Winlogbeat with its Sysmon module, the Sysmon
  fields moved into ECS.

``pipeline_env`` runs with ``SYSMON_JOIN_GRACE=0``: a connect whose process
is not in the table is unmatched at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.reference import shipped_rule_id
from tests.support import WorkerProcess, case_file, metric_value, read_topic, run_recording

pytestmark = pytest.mark.integration

Replayed = tuple[WorkerProcess, dict[str, Any], dict[str, Any]]


def replay_case(
    name: str,
    handled: Callable[[dict[str, Any]], bool],
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> Replayed:
    """Replay case ``name`` in a new worker: (worker, /stats once ``handled``, the one join)."""
    env = pipeline_env()
    worker, _ = run_recording(case_file(name), env, worker_factory)
    stats = worker.wait_for(handled)
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_JOIN"], expect=1)
    assert len(records) == 1, [r.json() for r in records]
    return worker, stats, records[0].json()


def ancestor_names(record: dict[str, Any]) -> list[str]:
    return [hop["process_path"].rsplit("\\", 1)[-1] for hop in record["process_ancestry"]]


def test_a_lone_surrogate_is_replaced_and_the_connect_joins(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    worker, stats, record = replay_case(
        "lone_surrogate_escape",
        lambda s: s["joined"] + s["unmatched"] == 1,
        pipeline_env,
        worker_factory,
    )
    assert (stats["joined"], stats["unmatched"], stats["dead_lettered"]) == (1, 0, 0)
    assert stats["surrogates_replaced"] == 2 and stats["alerts"] == 0
    assert record["process_path"] == "C:\\Users\\Public\\svc\ufffdhost.exe"
    assert record["process_guid"] == "{81056205-57b2-64dc-6104-000000000800}"
    assert (record["dst_ip_addr"], record["dst_port"]) == ("192.0.2.4", 135)
    assert [hop["process_path"] for hop in record["process_ancestry"]] == [
        "C:\\Windows\\System32\\cmd.exe"
    ]
    code, metrics = worker.http("/metrics")
    assert code == 200 and metric_value(metrics, "sysmon_surrogates_replaced_total") == 2


def test_azure_monitor_agent_rows_join_like_any_other(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    _, stats, record = replay_case(
        "azure_ama_windowsevent",
        lambda s: s["joined"] + s["unmatched"] == 3,
        pipeline_env,
        worker_factory,
    )
    assert (stats["process_creates"], stats["network_connects"]) == (1, 3)
    assert (stats["joined"], stats["unmatched"], stats["dead_lettered"]) == (1, 2, 0)
    assert stats["alerts"] == 0
    assert record["host_name"] == "WKSTN01"
    assert record["process_guid"] == "{f3329a35-1cb0-627e-f916-000000000600}"
    assert (record["dst_ip_addr"], record["dst_port"]) == ("198.51.100.5", 443)
    assert ancestor_names(record) == ["tomcat9.exe"]


def test_module_processed_events_join_and_fire_the_wmi_rule(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    _, stats, record = replay_case(
        "wlb7_sysmon_module_ecs",
        lambda s: s["joined"] + s["unmatched"] == 3 and s["alerts"] == 1,
        pipeline_env,
        worker_factory,
    )
    assert (stats["process_creates"], stats["network_connects"], stats["dead_lettered"]) == (
        2, 3, 0
    )  # fmt: skip
    assert stats["joined"] == 1
    assert stats["alerts_by_rule"] == {shipped_rule_id("sysmon-wmi-child-network-connect"): 1}
    assert record["process_guid"] == "{42f11c3b-ce10-5c8f-0000-0010aa552a00}"
    assert record["parent_process_path"] == "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
    assert ancestor_names(record) == ["WmiPrvSE.exe", "svchost.exe"]
