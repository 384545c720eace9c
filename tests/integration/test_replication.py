"""On a three-broker cluster every topic the worker creates is replicated three times.

The cluster (tests/cluster.py: three KRaft nodes on loopback, whose
``default.replication.factor`` is 3) stands for a user's production
cluster; before issue 17 every topic got one replica there, and losing one
broker lost state and output. What the topics hold is read back from the
brokers (describe_topics / describe_configs), not from the worker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from sysmon_faust.cli.ops import app_topics
from sysmon_faust.settings import Settings
from tests.cluster import KafkaCluster
from tests.support import WorkerProcess, run

pytestmark = pytest.mark.integration


async def _topics(bootstrap: str, prefix: str) -> dict[str, tuple[int, str | None]]:
    """(replicas, min.insync.replicas) of every topic whose name starts with ``prefix``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        described = await admin.describe_topics(names)
        replicas = {d["topic"]: {len(p["replicas"]) for p in d["partitions"]} for d in described}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        isr = {
            resource[3]: dict((e[0], e[1]) for e in resource[4]).get("min.insync.replicas")
            for response in configs
            for resource in response.resources
        }
    finally:
        await admin.close()
    assert all(len(counts) == 1 for counts in replicas.values()), replicas
    return {name: (counts.pop(), isr.get(name)) for name, counts in replicas.items()}


def describe(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "describe"],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def on_cluster(env: dict[str, str], cluster: KafkaCluster, **more: str) -> dict[str, str]:
    return env | {"KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap, **more}


def test_every_topic_the_worker_creates_has_three_replicas(
    kafka_cluster: KafkaCluster,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = on_cluster(pipeline_env(), kafka_cluster)
    worker = worker_factory(env)
    settings = Settings.from_env(env)
    wanted = {topic for topic, _ in app_topics(settings)}
    deadline = time.monotonic() + 60
    while True:  # Faust creates its leader topic as it starts up
        found = run(_topics(kafka_cluster.bootstrap, env["SYSMON_APP_ID"]))
        found |= run(_topics(kafka_cluster.bootstrap, env["SYSMON_TOPIC_INPUT"]))
        if wanted <= set(found) and any("__assignor" in t for t in found):
            break
        assert time.monotonic() < deadline, (sorted(wanted - set(found)), worker.log_tail())
        time.sleep(1)
    print("\n" + "\n".join(f"{t}: {r} replicas, min.insync {i}" for t, (r, i) in found.items()))
    assert {topic: replicas for topic, (replicas, _) in found.items()} == dict.fromkeys(found, 3)
    # Ours get min.insync.replicas=2 (Faust's leader topic: the cluster's, also 2 here).
    assert all(isr == "2" for topic, (_, isr) in found.items()), found
    assert "1 replica" not in worker.log_path.read_text(errors="replace")
    shown = describe(env)
    changelog = next(x for x in shown.splitlines() if x.startswith(f"{settings.app_id}-process"))
    assert " 3 " in changelog and "warning" not in shown


def test_one_replica_on_a_cluster_is_said_at_start_and_by_describe(
    kafka_cluster: KafkaCluster,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = on_cluster(pipeline_env(), kafka_cluster, SYSMON_REPLICATION_FACTOR="1")
    worker = worker_factory(env)
    log = worker.log_path.read_text(errors="replace")
    said = [line for line in log.splitlines() if "get 1 replica on a cluster of 3 brokers" in line]
    assert len(said) == 1 and "SYSMON_REPLICATION_FACTOR=3" in said[0], log[-3000:]
    found: dict[str, Any] = run(_topics(kafka_cluster.bootstrap, env["SYSMON_APP_ID"]))
    assert {replicas for replicas, _ in found.values()} == {1}
    assert "topic(s) have 1 replica on a cluster of 3 brokers" in describe(env)


def test_more_replicas_than_brokers_stops_the_worker_with_one_line(
    kafka_cluster: KafkaCluster,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = on_cluster(pipeline_env(), kafka_cluster, SYSMON_REPLICATION_FACTOR="4")
    worker = worker_factory(env, wait=False)
    assert worker.process.wait(timeout=120) != 0
    log = worker.log_path.read_text(errors="replace")
    assert log.rstrip().splitlines()[-1] == (
        "sysmon-faust: SYSMON_REPLICATION_FACTOR=4, but the cluster has 3 broker(s): set it to "
        "3 or less (unset: the cluster's default.replication.factor)"
    )
    assert "Traceback" not in log
