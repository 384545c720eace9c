"""A worker whose Kafka cluster was rebuilt under it starts, sets its state aside and rebuilds.

The issue's case, step for step: a worker stops; the broker loses its data
(``kafka.sh down``, data dir removed, ``kafka.sh up`` on the same port: a
new cluster, empty topics); the worker starts again on its state directory.
Faust alone stops it within seconds (``ConsistencyError``: the persisted
changelog offsets are past the end of the new, empty changelogs), at every
restart. Here it must start, say so in one line, keep the old state renamed
beside the new, and answer lookups from what the new cluster holds — not
from the old rows.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from sysmon_faust.stream.state_check import SET_ASIDE_INFIX, set_aside_stale_tree_copy
from sysmon_faust.stream.tree_replica import TreeReplica
from tests.integration.test_crash_recovery import Replay, wait_for_share
from tests.support import OwnBroker, WorkerProcess, create_topic, free_port, produce, run

pytestmark = pytest.mark.integration

SET_ASIDE_LINE = "is not from its changelogs"


def lookups(worker: WorkerProcess, guids: list[str]) -> dict[str, int]:
    return {guid: worker.http(f"/process/{guid}")[0] for guid in guids}


def test_a_worker_on_a_rebuilt_cluster_sets_its_state_aside_and_rebuilds(
    own_broker: OwnBroker,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    bootstrap = own_broker.bootstrap
    env = pipeline_env() | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    data_dir = Path(env["SYSMON_DATA_DIR"])
    before = Replay(4_000, seed=37)
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], before.values, keys=before.keys)
    port = free_port()  # the same port again: the restarted worker finds its state directory
    worker = worker_factory(env, web_port=port)
    wait_for_share(env, worker, 1.0)
    worker.wait_for(lambda s: s["table_rows"] == len(before.created), timeout=60)
    old_sample = before.created[::10]
    assert set(lookups(worker, old_sample).values()) == {200}
    assert worker.stop() == 0

    own_broker.down()
    shutil.rmtree(own_broker.data_dir)
    own_broker.up()
    after = Replay(4_000, seed=41)
    assert not set(after.created) & set(before.created)
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], after.values, keys=after.keys)

    worker = worker_factory(env, web_port=port)  # fails if the worker exits before healthy
    wait_for_share(env, worker, 1.0)
    stats = worker.wait_for(lambda s: s["table_rows"] == len(after.created), timeout=60)
    assert worker.process.poll() is None
    log = worker.log_path.read_text(errors="replace")
    set_aside_lines = [line for line in log.splitlines() if SET_ASIDE_LINE in line]
    print(f"\n{set_aside_lines[-1] if set_aside_lines else '(no set-aside line)'}")
    # One line for this start (the log file holds the first start too, which had none).
    assert len(set_aside_lines) == 1, log[-3000:]
    assert "ConsistencyError" not in log
    worker_dir = f"{env['SYSMON_APP_ID']}-worker-{port}"
    set_aside = [p for p in data_dir.iterdir() if p.name.startswith(worker_dir + SET_ASIDE_INFIX)]
    assert len(set_aside) == 1 and (set_aside[0] / "process-tree").is_dir(), list(
        data_dir.iterdir()
    )
    assert set_aside[0].name in set_aside_lines[0]
    # Rows of the new cluster only: the old ones went with the set-aside state.
    assert stats["table_rows"] == len(after.created)
    assert set(lookups(worker, after.created[::10]).values()) == {200}
    assert set(lookups(worker, old_sample).values()) == {404}


def test_a_process_tree_copy_ahead_of_its_topic_is_set_aside(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """What TreeReplica.run calls before it opens the copy, against a real topic."""
    topic = unique_name("tree")
    create_topic(kafka_bootstrap, topic, partitions=2, cleanup_policy="compact")
    produce(kafka_bootstrap, topic, [b"{}"] * 5, partition=0, keys=[b"{guid}"] * 5)
    copy = tmp_path / "process-tree"
    replica = TreeReplica(topic, 2, kafka_bootstrap, {}, read_committed=False)
    replica.open(copy)
    try:  # the copy has read offsets 0-4 of partition 0: all there is
        replica.apply([SimpleNamespace(offset=4, key=b"{guid}", value=b"{}")], 0)
    finally:
        replica.close()
    assert run(set_aside_stale_tree_copy(copy, topic, kafka_bootstrap, {})) is None
    assert copy.is_dir()

    other_topic = unique_name("tree")  # the copy's offsets are past this one's end (0)
    create_topic(kafka_bootstrap, other_topic, partitions=2, cleanup_policy="compact")
    moved_to = run(set_aside_stale_tree_copy(copy, other_topic, kafka_bootstrap, {}))
    assert moved_to is not None and moved_to.is_dir() and not copy.exists()
    assert moved_to.name.startswith("process-tree" + SET_ASIDE_INFIX)
