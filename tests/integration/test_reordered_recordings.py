"""The recordings delivered out of order, over four input partitions, join as in file order.

Winlogbeat spreads events over partitions, and the intake reads partitions at
their own pace: a connect can reach the join before its process's creation.
With a grace covering the reordering, every connect whose creation is
anywhere in the recording joins — the reference's set, computed from the
file, and the same set as a one-partition run in file order — and the rest
are unmatched once stream time passes the grace.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.events import create, guids_in_partition
from tests.reference import (
    RECORDINGS,
    ZERO,
    compute,
    guid_of,
    lines,
    network_identity,
    output_identity,
)
from tests.support import WorkerProcess, create_topic, produce, read_topic

PARTITIONS = 4
#: Longer than any stretch of stream time between a connect and its creation
#: in these recordings, however the partitions are read.
GRACE_SECONDS = 3600


def locally_shuffled(values: list[bytes], window: int, seed: int) -> list[bytes]:
    """Each run of ``window`` consecutive values in a random order."""
    rng = random.Random(seed)
    shuffled: list[bytes] = []
    for start in range(0, len(values), window):
        chunk = values[start : start + window]
        rng.shuffle(chunk)
        shuffled.extend(chunk)
    return shuffled


def replay(
    values: list[bytes],
    partitions: int,
    env: dict[str, str],
    worker_factory: Callable[..., WorkerProcess],
    expected_joins: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Joined and unmatched records of one pipeline fed ``values`` round-robin over partitions."""
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    create_topic(bootstrap, input_topic, partitions=partitions)
    worker = worker_factory(env)
    for partition in range(partitions):
        produce(bootstrap, input_topic, values[partition::partitions], partition=partition)
    worker.wait_for(
        lambda s: s["consumed"] >= len(values) and s["join_handled"] >= s["normalized"],
        timeout=240,
    )
    worker.wait_for(lambda s: s["joined"] >= expected_joins, timeout=60)

    # Events of today move every re-keying partition's stream time years past
    # the recording: what still waits is let go, and the recording's rows
    # pass their TTL.
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    today = [create(now, guids_in_partition(p, PARTITIONS, 1)[0]) for p in range(PARTITIONS)]
    produce(bootstrap, input_topic, today, partition=0)
    stats = worker.wait_for(
        lambda s: (
            s["pending_connects"] == 0
            and s["process_creates"] >= len(today)
            and s["table_rows"] == len(today)
        ),
        timeout=90,
    )
    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"])]
    unmatched = [
        r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_UNMATCHED"], stats["unmatched"])
    ]
    worker.stop()
    return joined, unmatched, stats


@pytest.mark.parametrize("name", RECORDINGS)
def test_reordered_recording_joins_every_connect_whose_creation_it_holds(
    name: str,
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / f"{name}.jsonl.gz"
    expected = compute(path)
    # The reference's connects, and which of them have a creation anywhere in the file.
    connects = [connect for connect, _ in expected.joined] + expected.unmatched
    joinable = [
        c for c in connects if guid_of(c) in expected.process_creates and guid_of(c) != ZERO
    ]
    values = lines(path)
    grace = {"SYSMON_JOIN_GRACE": str(GRACE_SECONDS)}

    # The in-order control runs beside the reordered run, each its own app
    # and topics: two workers starting together (faust_fixes 17), and the
    # test waits once rather than twice.
    in_order_env, reordered_env = ({**pipeline_env(PARTITIONS), **grace} for _ in range(2))
    shuffled = locally_shuffled(values, window=16, seed=len(values))
    with ThreadPoolExecutor(2) as pool:
        control = pool.submit(replay, values, 1, in_order_env, worker_factory, len(joinable))
        run = pool.submit(
            replay, shuffled, PARTITIONS, reordered_env, worker_factory, len(joinable)
        )
    in_order, in_order_unmatched, _ = control.result()
    reordered, reordered_unmatched, stats = run.result()

    want = Counter(map(network_identity, joinable))
    assert Counter(map(output_identity, in_order)) == want
    assert Counter(map(output_identity, reordered)) == want
    rest = Counter(map(network_identity, connects)) - want
    assert Counter(map(output_identity, reordered_unmatched)) == rest
    assert Counter(map(output_identity, in_order_unmatched)) == rest
    # Out of order means some connects waited for their creation.
    print(f"{name}: {len(reordered)} joined, {stats['released_after_wait']} after waiting")
