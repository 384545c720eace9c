"""Nothing lost when a worker is killed, loses its state directory, or its broker restarts.

Small versions of ``make chaos`` (bench/chaos.py, which has the figures at
300 k events): a generated stream where a fifth of the processes connect
before their creation is logged (so connects wait in the grace buffer when
the worker dies), real ``faust worker`` processes killed with SIGKILL, a
real broker. What must come out is computed here from the produced events,
without the pipeline's code: every connect of a process created anywhere in
the stream joins — at least once, or exactly once under exactly_once (read
with ``isolation_level=read_committed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from sysmon_faust.stream.faults import EXIT_STATUS
from tests.support import (
    SHORT_SESSION,
    OwnBroker,
    WorkerProcess,
    free_port,
    produce,
    read_topic,
)

Identity = tuple[Any, ...]


def _iso(utc_time: str) -> str:
    moment = datetime.strptime(utc_time, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Replay:
    """A generated stream and the joins it must give (the reference)."""

    def __init__(self, events: int, seed: int) -> None:
        config = WorkloadConfig(events=events, hosts=20, seed=seed, early_connect_share=0.2)
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        created: set[str] = set()
        connects: list[Identity] = []
        accesses: list[tuple[str, str, str]] = []
        for event in Workload(config):
            self.keys.append(event.host)
            self.values.append(event.value)
            winlog = orjson.loads(event.value)["winlog"]
            if winlog["provider_name"] != "Microsoft-Windows-Sysmon":
                continue
            data = winlog["event_data"]
            if winlog["event_id"] == 10:
                source, target = data["SourceProcessGUID"], data["TargetProcessGUID"]
                accesses.append((source.lower(), target.lower(), _iso(data["UtcTime"])))
            if winlog["event_id"] == 1:
                created.add(data["ProcessGuid"].lower())
            elif winlog["event_id"] == 3:
                connects.append(
                    (
                        data["ProcessGuid"].lower(),
                        _iso(data["UtcTime"]),
                        data["SourceIp"],
                        int(data["SourcePort"]),
                        data["DestinationIp"],
                        int(data["DestinationPort"]),
                    )
                )
        self.joins = Counter(c for c in connects if c[0] in created)
        self.created = sorted(created)
        # Sysmon 10 in sysmon-enriched: (source, target, time, source known, target known).
        # A process created in the stream is created before its events (none is early).
        self.accesses = Counter(
            (source, target, when, source in created, target in created)
            for source, target, when in accesses
        )


def process_accesses(bootstrap: str, topic: str, expect: int) -> Counter[Identity]:
    """The Sysmon 10 records of sysmon-enriched, by (source, target, time, each side known)."""
    seen: Counter[Identity] = Counter()
    for record in read_topic(bootstrap, topic, expect=expect, timeout=120, settle=3):
        enriched = orjson.loads(record.value)
        if enriched["event_id"] != 10:
            continue
        seen[
            (
                enriched["process_guid"],
                enriched["target_process_guid"],
                enriched["event_date_creation"],
                enriched["process"] is not None,
                enriched["target_process"] is not None,
            )
        ] += 1
    return seen


def joined(bootstrap: str, topic: str, expect: int) -> Counter[Identity]:
    records = read_topic(bootstrap, topic, expect=expect, timeout=120, settle=3)
    seen: Counter[Identity] = Counter()
    for record in records:
        enriched = orjson.loads(record.value)
        seen[
            (
                enriched["process_guid"],
                enriched["event_date_creation"],
                enriched["src_ip_addr"],
                enriched["src_port"],
                enriched["dst_ip_addr"],
                enriched["dst_port"],
            )
        ] += 1
    return seen


async def _committed_share(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, topic: str
) -> float:
    committed = await admin.list_consumer_group_offsets(group)
    await consumer._client.force_metadata_update()
    partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    done = sum(committed[tp].offset for tp in ends if tp in committed)
    return done / max(sum(ends.values()), 1)


async def _wait_for_committed_share(
    env: dict[str, str], worker: WorkerProcess, share: float, seconds: float
) -> float | None:
    """The share of the input the worker's intake has committed (which survives its
    restarts), once it is ``share`` or more; None after ``seconds``.

    One admin client and consumer for the whole wait, not two per look: made
    20 times a second they cost this process (and the broker) CPU the worker
    under test had to share.
    """
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    group, topic = f"{env['SYSMON_APP_ID']}-intake", env["SYSMON_TOPIC_INPUT"]
    deadline = time.monotonic() + seconds
    clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None
    try:
        while time.monotonic() < deadline:
            assert worker.process.poll() is None, worker.log_tail()
            try:
                if clients is None:
                    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
                    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
                    clients = admin, consumer
                    await admin.start()
                    await consumer.start()
                done = await _committed_share(*clients, group, topic)
            except Exception:  # the group has no coordinator yet, the broker restarts...
                if clients is not None:
                    await _close(*clients)
                    clients = None
                done = 0.0
            if done >= share:
                return done
            await asyncio.sleep(0.05)
        return None
    finally:
        if clients is not None:
            await _close(*clients)


async def _close(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> None:
    for close in (admin.close, consumer.stop):
        with contextlib.suppress(Exception):  # a client that never started
            await close()


def wait_for_share(env: dict[str, str], worker: WorkerProcess, share: float) -> float:
    """Wait until the worker's intake has committed ``share`` of the input (or more); that share."""
    done = asyncio.run(_wait_for_committed_share(env, worker, share, 180))
    if done is None:
        raise AssertionError(f"the intake did not reach {share:.0%}:\n{worker.log_tail()}")
    return done


def replayed_and_looked_up(
    env: dict[str, str], replay: Replay, port: int,
    worker_factory: Callable[..., WorkerProcess], every: int,
) -> tuple[WorkerProcess, dict[str, Any], dict[str, tuple[int, Any]]]:  # fmt: skip
    """``replay`` through a worker on ``port`` until every creation is in its table: the
    worker, its /stats then, and the lookups of every ``every``-th process (each a 200)."""
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"], replay.values,
            keys=replay.keys)  # fmt: skip
    worker = worker_factory(env, web_port=port)
    wait_for_share(env, worker, 1.0)
    rows = worker.wait_for(lambda s: s["process_creates"] == len(replay.created), timeout=60)
    looked_up = {guid: worker.http(f"/process/{guid}") for guid in replay.created[::every]}
    assert all(status == 200 for status, _ in looked_up.values())
    return worker, rows, looked_up


def lookups_until_healthy(worker: WorkerProcess, guids: list[str], timeout: float) -> Counter[int]:
    """Look ``guids`` up in turn, as fast as the worker answers, from its start until its
    /health is 200: how many answers of each status (0: no answer yet)."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    for guid in itertools.cycle(guids):
        assert time.monotonic() < deadline, f"not healthy after {timeout} s: {dict(statuses)}"
        try:
            if worker.http("/health")[0] == 200:
                return statuses
            statuses[worker.http(f"/process/{guid}")[0]] += 1
        except OSError:  # not listening yet
            statuses[0] += 1
            time.sleep(0.05)
    raise AssertionError("no GUIDs to look up")


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_killed_twice_mid_replay_loses_nothing(
    guarantee: str,
    kafka_bootstrap: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env()
    env["SYSMON_JOIN_GRACE"] = "300"
    env["SYSMON_PROCESSING_GUARANTEE"] = guarantee
    env |= SHORT_SESSION
    replay = Replay(60_000, seed=23)
    produce(kafka_bootstrap, env["SYSMON_TOPIC_INPUT"], replay.values, keys=replay.keys)

    port = free_port()  # the same port: a restarted worker finds its state directory again
    worker = worker_factory(env, web_port=port)
    killed_at = []
    for share in (0.01, 0.5):
        killed_at.append(wait_for_share(env, worker, share))
        worker.stop(signal.SIGKILL)
        worker = worker_factory(env, web_port=port)
    wait_for_share(env, worker, 1.0)

    expected = sum(replay.joins.values())
    seen = joined(kafka_bootstrap, env["SYSMON_TOPIC_JOIN"], expected)
    missing = sum((replay.joins - seen).values())
    duplicates = sum((seen - replay.joins).values())
    print(
        f"\n{guarantee}: killed at {', '.join(f'{s:.0%}' for s in killed_at)} of the input; "
        f"{expected:,} joins expected, {missing} missing, {duplicates} duplicates"
    )
    assert all(share < 1.0 for share in killed_at), "a kill came after the replay was through"
    assert missing == 0
    if guarantee == "exactly_once":
        assert duplicates == 0

    # Sysmon 10 names two processes, in different partitions for most: both
    # sides enriched (the target's after a second hop), none lost, none doubled
    # under exactly_once. Read after the joins: the rest of the topic is there.
    both = sum(n for (_, _, _, source, target), n in replay.accesses.items() if source and target)
    assert both > 50, "the stream should have accesses between processes of the stream"
    enriched = sum(replay.accesses.values())
    seen_accesses = process_accesses(kafka_bootstrap, env["SYSMON_TOPIC_ENRICHED"], enriched)
    missing_accesses = sum((replay.accesses - seen_accesses).values())
    doubled_accesses = sum((seen_accesses - replay.accesses).values())
    print(f"{enriched:,} process accesses ({both:,} with both processes known): "
          f"{missing_accesses} missing, {doubled_accesses} duplicates")  # fmt: skip
    assert missing_accesses == 0
    if guarantee == "exactly_once":
        assert doubled_accesses == 0
    assert worker.stats()["dead_lettered"] == 0


def test_a_worker_that_lost_its_state_rebuilds_it_from_the_changelog(
    kafka_bootstrap: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env()
    # Enough for the bulk restore (stream/bulk_restore.BULK_MIN_RECORDS changelog records).
    replay = Replay(40_000, seed=29)
    port = free_port()
    worker, rows, before = replayed_and_looked_up(env, replay, port, worker_factory, every=10)
    assert worker.stop() == 0

    shutil.rmtree(env["SYSMON_DATA_DIR"])
    started = time.monotonic()
    worker = worker_factory(env, web_port=port, wait=False)
    # While it rebuilds, the partitions are assigned here before their rows are
    # back: a lookup of a process the changelog holds says "retry" (503), never
    # "not found" (404).
    during = lookups_until_healthy(worker, list(before), timeout=120)
    print(f"\nlookups while it rebuilt: {dict(during)}")
    assert during[404] == 0, f"404 for processes the changelog holds: {dict(during)}"
    worker.wait_healthy()
    after_rows = worker.stats()["table_rows"]
    print(f"\n{after_rows:,} rows rebuilt from the changelog in {time.monotonic() - started:.1f} s")
    assert after_rows == rows["table_rows"] == len(replay.created)
    assert {guid: worker.http(f"/process/{guid}") for guid in before} == before
    # What it read to get there, as /health and /metrics say once it is done:
    # every row came from a changelog record (and the index's entries too).
    status, health = worker.http("/health")
    recovery = health["recovery"]
    print(f"recovery: {recovery}")
    assert status == 200 and recovery["recovering"] is False
    assert recovery["records_total"] >= len(replay.created) and recovery["percent"] == 100
    assert recovery["records_remaining"] == 0 and recovery["last_recovery_seconds"] > 0
    metrics = worker.http("/metrics")[1]
    assert f"sysmon_recovery_records_total {recovery['records_total']}" in metrics
    assert "sysmon_recovery_records_remaining 0" in metrics
    # Read in bulk (stream/bulk_restore.py), not record by record through Faust.
    assert worker.stats()["changelog_records_bulk_restored"] > 0


def test_a_worker_killed_after_writing_its_rows_has_them_all_when_it_restarts(
    kafka_bootstrap: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # The tables are written without RocksDB's write-ahead log (stream/store.py):
    # a SIGKILL loses what the memtables held — here every row, a few MB — and
    # the changelog offsets written with them (faust_fixes 15), so recovery
    # reads those rows again. An offset kept by the log would skip them.
    env = pipeline_env() | SHORT_SESSION
    replay = Replay(10_000, seed=37)
    port = free_port()
    worker, _, before = replayed_and_looked_up(env, replay, port, worker_factory, every=5)
    # The join persists a changelog partition's offset once its sends are
    # acknowledged, when it handles its next record: a few more seconds of
    # ticks (sysmon_faust.stream.ticks) let each partition's come after its rows.
    time.sleep(5)
    worker.stop(signal.SIGKILL)

    worker = worker_factory(env, web_port=port)
    rows = worker.stats()["table_rows"]
    print(f"\n{rows:,} of {len(replay.created):,} rows back after a SIGKILL")
    assert rows == len(replay.created)
    assert {guid: worker.http(f"/process/{guid}") for guid in before} == before


def test_a_broker_restart_mid_replay_loses_nothing(
    own_broker: OwnBroker,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    """The worker rides out its broker's restart; or, when one of its librdkafka clients has
    lost every broker (the broker, shutting down, named none: confluentinc/librdkafka#5301),
    it stops with exit 75 and says so (sysmon_faust.stream.broker_watch), and, started again
    as its supervisor would, goes on. Either way no join is missing."""
    bootstrap = own_broker.bootstrap
    env = pipeline_env() | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SYSMON_JOIN_GRACE": "300"}
    replay = Replay(60_000, seed=31)
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], replay.values, keys=replay.keys)
    worker = worker_factory(env)
    stopped_at = wait_for_share(env, worker, 0.01)
    own_broker.down()
    time.sleep(5)
    own_broker.up()
    try:
        wait_for_share(env, worker, 1.0)
        outcome = "rode it out"
    except AssertionError:
        if worker.process.poll() != EXIT_STATUS or "known no broker" not in worker.log_tail(400):
            raise
        outcome = "stopped: a client lost every broker; started again"
        worker = worker_factory(env)
        wait_for_share(env, worker, 1.0)

    expected = sum(replay.joins.values())
    seen = joined(bootstrap, env["SYSMON_TOPIC_JOIN"], expected)
    missing = sum((replay.joins - seen).values())
    print(
        f"\nbroker stopped at {stopped_at:.0%} of the input for 5 s; the worker {outcome}; "
        f"{missing} of {expected:,} joins missing, {sum((seen - replay.joins).values())} twice"
    )
    assert stopped_at < 1.0
    assert worker.process.poll() is None
    assert missing == 0
