"""Static membership (KIP-345, ``SYSMON_GROUP_INSTANCE_ID``): a restart is no rebalance.

Two workers, each with its own instance id and web port; one is killed with
SIGKILL in the middle of a stream and started again at once, as a container
runtime would. Neither group rebalances — the other worker's counters of
both groups' assignments stay where they were — the restarted worker owns
what it owned before, and every join is out (at-least-once: some twice;
exactly-once: each once).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.integration.test_join_ordering import stream
from tests.integration.test_scale_out import KEEP_ROWS, guid_of, wait_settled
from tests.support import WorkerProcess, create_topic, free_port, produce, read_topic

PROCESSES, CONNECTS_EACH = 2000, 2


def owned(worker: WorkerProcess) -> tuple[list[int], list[int], list[int]]:
    """Input partitions, active and standby table partitions of a worker."""
    stats = worker.stats()
    return (
        stats["input_partitions"],
        stats["table_partitions_active"],
        stats["table_partitions_standby"],
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_static_worker_killed_and_restarted_takes_its_partitions_back_without_a_rebalance(
    guarantee: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    values, keys = stream(PROCESSES, CONNECTS_EACH, filler_each=6)
    env = {**pipeline_env(partitions=4), **KEEP_ROWS, "SYSMON_PROCESSING_GUARANTEE": guarantee}
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=4)
    envs = [env | {"SYSMON_GROUP_INSTANCE_ID": name} for name in ("worker-a", "worker-b")]
    ports = [free_port(), free_port()]
    a, b = (worker_factory(e, wait=False, web_port=p) for e, p in zip(envs, ports, strict=True))
    wait_settled([a, b])
    # Both own a share of both groups before anything is sent.
    a.wait_for(lambda s: s["input_partitions"] and s["table_partitions_active"], timeout=60)
    b.wait_for(lambda s: s["input_partitions"] and s["table_partitions_active"], timeout=60)

    half = len(values) // 2
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values[:half], keys=keys[:half])
    a.wait_for(lambda s: s["table_rows"] > 0, timeout=120)
    b_before = b.stats()
    a_owned = owned(a)
    a.stop(signal.SIGKILL)
    a = worker_factory(envs[0], web_port=ports[0])
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values[half:], keys=keys[half:])

    expected = {
        (guid_of(n), port) for n in range(PROCESSES) for port in range(1, CONNECTS_EACH + 1)
    }
    joined = read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], len(expected), timeout=300, settle=3)
    seen = [(r.json()["process_guid"], r.json()["dst_port"]) for r in joined]
    assert not expected - set(seen), f"{len(expected - set(seen))} joins missing"
    if guarantee == "exactly_once":
        # The restarted worker's transactions fenced the killed one's.
        assert len(seen) == len(expected), f"{len(seen) - len(expected)} joins twice"

    b_after = b.stats()
    assert (b_after["rebalances"], b_after["input_rebalances"]) == (
        b_before["rebalances"],
        b_before["input_rebalances"],
    ), "the other worker went through a rebalance"
    assert owned(a) == a_owned
    print(
        f"\nrestarted: owns {a_owned} again; the other worker's rebalances "
        f"{b_after['rebalances']} (join) and {b_after['input_rebalances']} (intake), unchanged"
    )


def test_a_second_worker_with_the_same_instance_id_exits_saying_so(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env(partitions=4) | {
        "SYSMON_GROUP_INSTANCE_ID": "worker-a",
        "SYSMON_SESSION_TIMEOUT": "6",  # the refused one stays silent this long before it exits
    }
    create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"], partitions=4)
    first = worker_factory(env)
    before = first.wait_for(lambda s: len(s["table_partitions_active"]) == 4, timeout=60)

    second = worker_factory(env, wait=False)
    assert second.process.wait(timeout=90) == 1
    said = second.log_tail(5)
    assert "SYSMON_GROUP_INSTANCE_ID=worker-a" in said and "an id of its own" in said, said
    assert "Traceback" not in second.log_tail(200)
    # The first one was fenced by the second's join: it rejoins under its id
    # (one more assignment) and keeps everything.
    first.wait_for(
        lambda s: (
            s["rebalances"] > before["rebalances"]
            and len(s["table_partitions_active"]) == 4
            and len(s["input_partitions"]) == 4
        ),
        timeout=60,
    )
    assert first.http("/health")[0] == 200
