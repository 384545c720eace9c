"""``/health`` tells the truth: 503 while the cluster is out of reach or the join cannot move.

It used to stay 200 through a 20 s broker outage and through a worker wedged
on a full disk: it checked that the worker had started, not that it was in
touch with the cluster or making progress (issue 15). Both ways here are
real: the worker's own broker is stopped for longer than the session
timeout; and the broker hangs (SIGSTOP: a long GC pause, a stalled disk)
while the worker has half its input to go, so nothing it does can be
committed and its committed offsets stop with lag behind them.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.events import connect, create, guid
from tests.integration.test_crash_recovery import Replay, joined, wait_for_share
from tests.support import OwnBroker, WorkerProcess, metric_value, produce, read_topic

pytestmark = pytest.mark.integration


def wait_for_health(worker: WorkerProcess, status: int, timeout: float) -> dict[str, Any]:
    """Poll /health until it answers ``status``; fail with the last answer otherwise."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log_tail()
        code, body = worker.http("/health")
        if code == status:
            return dict(body)
        time.sleep(0.5)
    raise AssertionError(f"/health not {status} after {timeout} s: {body}\n{worker.log_tail()}")


def test_health_is_503_while_the_cluster_is_out_of_reach_and_200_again_after(
    own_broker: OwnBroker,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env() | {
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "SYSMON_SESSION_TIMEOUT": "6",
    }
    worker = worker_factory(env)
    own_broker.down()
    try:
        body = wait_for_health(worker, 503, timeout=60)
    finally:
        own_broker.up()
    print(f"\nwhile the broker was down: {body['reasons']}")
    assert body["status"] == "unhealthy" and not body["broker_reachable"]
    assert any("no answer from the Kafka cluster" in reason for reason in body["reasons"])
    body = wait_for_health(worker, 200, timeout=120)
    assert body["broker_reachable"] and body["reasons"] == []

    # And it works: a process and its connect, joined after the outage.
    process = guid(7)
    produce(
        own_broker.bootstrap,
        env["SYSMON_TOPIC_INPUT"],
        [
            create("2026-11-30 05:00:00.000", process),
            connect("2026-11-30 05:00:01.000", process, 443),
        ],
    )
    joined = read_topic(own_broker.bootstrap, env["SYSMON_TOPIC_JOIN"], expect=1, timeout=60)
    assert [r.json()["process_guid"] for r in joined] == [process]


def test_health_is_503_while_the_worker_makes_no_progress_and_200_once_it_moves(
    own_broker: OwnBroker,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env() | {
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "SYSMON_STALL_TIMEOUT": "5",
        # The stream's early connects wait for their creations (as in make chaos).
        "SYSMON_JOIN_GRACE": "300",
        # Long enough that the group outlives the pause: what is tested is
        # the stall, not a rebalance.
        "SYSMON_SESSION_TIMEOUT": "60",
        # What is checked is the joins: the other types' enrichment (3x the CPU
        # per event, docs/benchmark.md) would only make the worker slower to catch up.
        "SYSMON_ENRICH_EVENTS": "1,3,5",
    }
    replay = Replay(80_000, seed=43)
    produce(own_broker.bootstrap, env["SYSMON_TOPIC_INPUT"], replay.values, keys=replay.keys)
    worker = worker_factory(env)
    wait_for_share(env, worker, 0.02)
    # The broker hangs with the worker's input half read: nothing the worker
    # does can be committed.
    own_broker.pause(signal.SIGSTOP)
    try:
        body = wait_for_health(worker, 503, timeout=30)
        code, metrics = worker.http("/metrics")
    finally:
        own_broker.pause(signal.SIGCONT)
    print(f"\nwhile the broker hung: {body['reasons']}")
    assert body["status"] == "unhealthy" and body["stalled_partitions"]
    assert any("no progress for" in reason for reason in body["reasons"])
    assert code == 200 and metric_value(metrics, "sysmon_healthy") == 0
    assert "sysmon_no_progress_seconds{" in metrics

    wait_for_share(env, worker, 1.0)
    body = wait_for_health(worker, 200, timeout=120)
    assert body["stalled_partitions"] == []
    # Nothing was lost meanwhile.
    expected = sum(replay.joins.values())
    seen = joined(own_broker.bootstrap, env["SYSMON_TOPIC_JOIN"], expected)
    assert sum((replay.joins - seen).values()) == 0
