"""An unpaired UTF-16 surrogate in an image path does not hide the process from the join.

The input and the right output are ``../shared/cases/lone_surrogate_escape.*``:
a Sysmon 1 and its Sysmon 3 whose Image holds ``\\udc81`` (legal JSON, written by
Python and .NET exporters for NTFS names). Before the fix both were dead
letters ("invalid high surrogate"), so the process never reached the table.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import WorkerProcess, case_file, read_topic, run_recording

NAME = "lone_surrogate_escape"

pytestmark = pytest.mark.integration


def test_a_lone_surrogate_is_replaced_and_the_connect_joins(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    case = case_file(NAME)
    env = pipeline_env()
    worker, stats = run_recording(case, env, worker_factory)
    stats = worker.wait_for(lambda s: s["joined"] + s["unmatched"] == 1)
    assert (stats["joined"], stats["unmatched"], stats["dead_lettered"]) == (1, 0, 0)
    assert stats["surrogates_replaced"] == 2 and stats["alerts"] == 0
    joined = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_JOIN"], expect=1)
    record = joined[0].json()
    assert record["process_path"] == "C:\\Users\\Public\\svc\ufffdhost.exe"
    assert record["process_guid"] == "{81056205-57b2-64dc-6104-000000000800}"
    assert (record["dst_ip_addr"], record["dst_port"]) == ("192.0.2.4", 135)
    assert [hop["process_path"] for hop in record["process_ancestry"]] == [
        "C:\\Windows\\System32\\cmd.exe"
    ]
    code, metrics = worker.http("/metrics")
    assert code == 200 and "sysmon_surrogates_replaced_total 2" in metrics
