"""The grace buffer: connects that arrive before their process's creation still join."""

from __future__ import annotations

from collections.abc import Callable

from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from sysmon_faust.settings import Settings
from tests.events import connect, create, guid
from tests.support import WorkerProcess, create_topic, produce, read_topic


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


def test_a_generated_stream_with_a_fifth_of_connects_early_joins_them(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # The default grace (300 s); early connects come up to 120 s of stream
    # (and event) time before their creation.
    env = pipeline_env(partitions=4)
    del env["SYSMON_JOIN_GRACE"]
    assert Settings().join_grace == 300
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    workload = Workload(WorkloadConfig(events=40_000, seed=11, early_connect_share=0.7))
    events = list(workload)
    expected = workload.expected
    joinable = expected.joined_in_order + expected.joined_early
    assert expected.joined_early / joinable >= 0.2
    create_topic(bootstrap, input_topic, partitions=4)
    produce(bootstrap, input_topic, [e.value for e in events], keys=[e.host for e in events])

    worker = worker_factory(env)
    worker.wait_for(
        lambda s: s["consumed"] >= len(events) and s["join_handled"] >= s["normalized"],
        timeout=240,
    )
    stats = worker.wait_for(lambda s: s["joined"] >= joinable, timeout=30)
    joined = read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"])
    distinct = {
        (r.key, r.json()["src_port"], r.json()["dst_ip_addr"], r.json()["event_date_creation"])
        for r in joined
    }
    share = len(distinct) / joinable
    print(
        f"joined {len(distinct)} of {joinable} joinable connects ({share:.2%}); "
        f"{expected.joined_early} came before their creation, "
        f"{stats['released_after_wait']} were released after waiting"
    )
    assert share >= 0.999
    assert stats["released_after_wait"] >= expected.joined_early * 0.999
