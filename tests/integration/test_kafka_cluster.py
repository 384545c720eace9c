"""The three-node cluster of ``kafka_cluster`` (tests/cluster.py) is one cluster, and replicates.

Each node, asked alone, names the same cluster and the same three brokers; a
topic of replication factor 3 is in sync on all three and takes ``acks=all``
writes; topics the brokers create themselves get replication factor 3 and
``min.insync.replicas`` 2; with the leader's node stopped a group still
writes with ``acks=all`` and reads on from its committed offsets, and the
node, started again, is back in every ISR.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.cluster import KafkaCluster
from tests.support import run, topic_configs

pytestmark = pytest.mark.integration

Partitions = dict[int, dict[str, Any]]  # partition -> {"leader", "replicas", "isr"}
#: UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE: a topic just created, not yet known.
_NOT_YET = (3, 5)


async def _describe_cluster(bootstrap: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return dict(await admin.describe_cluster())
    finally:
        await admin.close()


async def _create_topic(bootstrap: str, topic: str, partitions: int, replication: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication)])
    finally:
        await admin.close()


async def _partitions(bootstrap: str, topic: str) -> Partitions:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] in _NOT_YET:
        # A node learns of a topic the controller created a moment later
        # (KRaft metadata propagation): nothing to see yet, ask again.
        return {}
    assert described["error_code"] == 0, described
    return {
        p["partition"]: {"leader": p["leader"], "replicas": p["replicas"], "isr": p["isr"]}
        for p in described["partitions"]
    }


def wait_partitions(
    bootstrap: str, topic: str, wanted: Callable[[Partitions], bool], timeout: float = 60.0
) -> Partitions:
    """The topic's partitions once ``wanted`` holds of them (fails with the last seen)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = run(_partitions(bootstrap, topic))
        if wanted(seen):
            return seen
        assert time.monotonic() < deadline, f"{topic}: still {seen} after {timeout} s"
        time.sleep(0.5)


def in_sync_everywhere(nodes: set[int]) -> Callable[[Partitions], bool]:
    """Every partition replicated on ``nodes``, all in sync, led by one of them."""
    return lambda seen: (
        bool(seen)
        and all(
            set(p["replicas"]) == nodes and set(p["isr"]) == nodes and p["leader"] in nodes
            for p in seen.values()
        )
    )


async def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    """Each (partition, value), acknowledged by every in-sync replica (``acks=all``)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition, value in records:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, group: str, expect: int, timeout: float = 60.0
) -> list[tuple[int, bytes]]:
    """What group ``group`` reads next, (partition, value) in offset order; commits it."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
        # Nothing more than expected (a record read twice would show here).
        for records in (await consumer.getmany(timeout_ms=500)).values():
            got.extend(records)
        await consumer.commit()
    finally:
        await consumer.stop()
    got.sort(key=lambda r: (r.partition, r.offset))
    return [(r.partition, r.value) for r in got]


def records(label: str) -> list[tuple[int, bytes]]:
    """Three records for each of partitions 0 and 1."""
    return [
        (partition, f"{label}-{partition}-{n}".encode()) for partition in (0, 1) for n in range(3)
    ]


def by_partition(records: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return sorted(records, key=lambda r: r[0])  # stable: each partition's order stays


def test_every_node_answers_for_one_cluster_of_three_brokers(kafka_cluster: KafkaCluster) -> None:
    assert kafka_cluster.bootstrap == ",".join(f"127.0.0.1:{p}" for p in kafka_cluster.ports)
    answers = [run(_describe_cluster(kafka_cluster.address(n))) for n in kafka_cluster.node_ids]
    answers.append(run(_describe_cluster(kafka_cluster.bootstrap)))
    for answer in answers:
        brokers = {(b["node_id"], b["host"], b["port"]) for b in answer["brokers"]}
        assert brokers == {
            (n, "127.0.0.1", p) for n, p in zip([1, 2, 3], kafka_cluster.ports, strict=True)
        }
    assert len({answer["cluster_id"] for answer in answers}) == 1, answers
    # The same cluster id in every node's storage: formatted as one cluster.
    formatted = [
        dict(
            line.split("=", 1)
            for line in (data_dir / "logs" / "meta.properties").read_text().splitlines()
            if "=" in line
        )
        for data_dir in kafka_cluster.data_dirs
    ]
    assert [meta["node.id"] for meta in formatted] == ["1", "2", "3"]
    assert {meta["cluster.id"] for meta in formatted} == {answers[0]["cluster_id"]}


def test_a_topic_of_replication_factor_3_is_in_sync_on_every_node_and_takes_acks_all(
    kafka_cluster: KafkaCluster, unique_name: Callable[[str], str]
) -> None:
    bootstrap = kafka_cluster.bootstrap
    topic = unique_name("rf3")
    run(_create_topic(bootstrap, topic, partitions=3, replication=3))
    seen = wait_partitions(bootstrap, topic, in_sync_everywhere({1, 2, 3}))
    assert sorted(seen) == [0, 1, 2]

    sent = [(partition, f"{partition}-{n}".encode()) for partition in range(3) for n in range(5)]
    run(_produce(bootstrap, topic, sent))
    assert run(_consume(bootstrap, topic, unique_name("g"), expect=len(sent))) == sent

    # A topic the brokers create themselves (a producer writing to a new name)
    # gets the cluster's defaults: three replicas, two of them needed for acks=all.
    auto = unique_name("auto")
    run(_produce(bootstrap, auto, [(0, b"first")]))
    seen = wait_partitions(bootstrap, auto, in_sync_everywhere({1, 2, 3}))
    assert len(seen) == 1
    assert topic_configs(bootstrap, [auto])[auto]["min.insync.replicas"] == "2"
    internal = wait_partitions(bootstrap, "__consumer_offsets", in_sync_everywhere({1, 2, 3}))
    assert all(len(p["replicas"]) == 3 for p in internal.values())


def test_with_the_leaders_node_stopped_acks_all_writes_and_the_group_reads_on(
    kafka_cluster: KafkaCluster, unique_name: Callable[[str], str]
) -> None:
    bootstrap = kafka_cluster.bootstrap
    topic, group = unique_name("failover"), unique_name("g")
    run(_create_topic(bootstrap, topic, partitions=2, replication=3))
    seen = wait_partitions(bootstrap, topic, in_sync_everywhere({1, 2, 3}))
    before = records("before")
    run(_produce(bootstrap, topic, before))
    assert run(_consume(bootstrap, topic, group, expect=len(before))) == before

    victim = seen[0]["leader"]
    survivors = set(kafka_cluster.node_ids) - {victim}
    kafka_cluster.stop_node(victim)
    try:
        assert not kafka_cluster.running(victim)
        # Controlled shutdown: leadership moved and the ISRs shrank to the two left.
        wait_partitions(
            bootstrap,
            topic,
            lambda s: bool(s) and all(set(p["isr"]) == survivors and p["leader"] in survivors
                                      for p in s.values()),
        )  # fmt: skip
        brokers = run(_describe_cluster(bootstrap))["brokers"]
        assert {b["node_id"] for b in brokers} == survivors

        # Two in-sync replicas: min.insync.replicas is met, acks=all writes go on;
        # the group resumes from the offsets it committed before.
        during = records("during")
        run(_produce(bootstrap, topic, during))
        assert run(_consume(bootstrap, topic, group, expect=len(during))) == during
    finally:
        kafka_cluster.start_node(victim)

    # Back: registered, caught up, in every ISR again.
    assert kafka_cluster.running(victim)
    wait_partitions(bootstrap, topic, in_sync_everywhere({1, 2, 3}))
    after = records("after")
    run(_produce(kafka_cluster.address(victim), topic, after))
    assert run(_consume(bootstrap, topic, group, expect=len(after))) == after
    everything = run(_consume(bootstrap, topic, unique_name("g"), expect=18))
    assert everything == by_partition(before + during + after)
