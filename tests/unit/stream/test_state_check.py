"""Local state ahead of, or not from, its changelog: found, named, set aside (no broker).

The stores are real RocksDB databases written the way Faust and the
process-tree copy write them, so a change of either's key layout fails here
rather than as a worker that stops at start on a rebuilt cluster.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksDBStore

from sysmon_faust.stream import state_check
from sysmon_faust.stream.state_check import Ahead, ClusterView, find_ahead
from sysmon_faust.stream.tree_replica import TreeReplica

CHANGELOG = "sf-process-create-changelog"
CHANGELOGS = {"process-create": CHANGELOG, "pending-connects": "sf-pending-connects-changelog"}
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_the_offset_key_is_faust_s() -> None:
    assert FaustRocksDBStore.offset_key == state_check.FAUST_OFFSET_KEY


@pytest.mark.parametrize(
    ("next_offset", "end_offset", "ahead"),
    [
        (0, 0, False),  # nothing applied
        (10, 10, False),  # applied everything the partition holds
        (10, 25, False),  # behind: recovery reads the rest
        (11, 10, True),  # one record past the end
        (500, 0, True),  # the rebuilt cluster: an empty changelog
    ],
)
def test_find_ahead_compares_the_next_offset_with_the_end_offset(
    next_offset: int, end_offset: int, ahead: bool
) -> None:
    found = find_ahead({(CHANGELOG, 2): next_offset}, {(CHANGELOG, 2): end_offset}, [CHANGELOG])
    assert found == ([Ahead(CHANGELOG, 2, next_offset, end_offset, True)] if ahead else [])


def test_a_missing_topic_or_partition_ends_at_zero() -> None:
    found = find_ahead(
        {(CHANGELOG, 0): 5, (CHANGELOG, 7): 3, ("gone", 1): 9},
        {(CHANGELOG, 0): 5},  # the topic has fewer partitions now
        [CHANGELOG],
    )
    assert found == [Ahead("gone", 1, 9, 0, False), Ahead(CHANGELOG, 7, 3, 0, True)]
    assert str(found[0]) == "gone[1]: next offset 9 > end offset 0 (topic missing)"
    assert str(found[1]) == f"{CHANGELOG}[7]: next offset 3 > end offset 0"


@pytest.mark.parametrize(
    ("recorded", "current", "changed"),
    [("A", "A", False), ("A", "B", True), (None, "B", False), ("A", None, False)],
)
def test_cluster_changed_needs_both_ids(
    recorded: str | None, current: str | None, changed: bool
) -> None:
    assert state_check.cluster_changed(recorded, current) is changed


def test_describe_mismatch_names_the_cluster_and_a_few_partitions() -> None:
    ahead = [Ahead(CHANGELOG, p, 10, 0, True) for p in range(5)]
    line = state_check.describe_mismatch(ahead, "old-id", "new-id", shown=2)
    assert line == (
        f"built from Kafka cluster old-id, now new-id; {CHANGELOG}[0]: next offset 10 > end "
        f"offset 0; {CHANGELOG}[1]: next offset 10 > end offset 0 (and 3 more partitions)"
    )


def test_set_aside_path_is_a_utc_stamped_sibling_never_taken(tmp_path: Path) -> None:
    state = tmp_path / "sf-worker-6066"
    in_utc_plus_2 = NOW.astimezone(timezone(timedelta(hours=2)))
    first = state_check.set_aside_path(state, in_utc_plus_2)
    assert first == tmp_path / "sf-worker-6066.set-aside-20250304T050607Z"
    first.mkdir()
    assert state_check.set_aside_path(state, NOW).name == first.name + "-2"


def _faust_store(path: Path, persisted_offset: int | None) -> None:
    db = RocksDBOptions(use_rocksdict=False).open(path)
    db.put(b"some-key", b"some-value")
    if persisted_offset is not None:
        db.put(state_check.FAUST_OFFSET_KEY, str(persisted_offset).encode())
    db.close()


def test_table_next_offsets_reads_each_partition_s_persisted_offset(tmp_path: Path) -> None:
    _faust_store(tmp_path / "process-create-0.db", 41)
    _faust_store(tmp_path / "process-create-3.db", 0)
    _faust_store(tmp_path / "process-create-1.db", None)  # nothing applied yet
    _faust_store(tmp_path / "pending-connects-2.db", 7)
    # Another table whose name starts with a checked one's: not read as its partition.
    _faust_store(tmp_path / "process-create-extra-0.db", 99)
    assert state_check.table_next_offsets(tmp_path, CHANGELOGS) == {
        (CHANGELOG, 0): 42,
        (CHANGELOG, 3): 1,
        ("sf-pending-connects-changelog", 2): 8,
    }
    assert state_check.table_next_offsets(tmp_path / "absent", CHANGELOGS) == {}


def _tree_copy(path: Path, last_offsets: dict[int, int]) -> None:
    replica = TreeReplica("sf-process-tree", 4, "127.0.0.1:1", {}, read_committed=False)
    replica.open(path)
    try:
        for partition, offset in last_offsets.items():
            replica.apply([SimpleNamespace(offset=offset, key=b"{guid}", value=b"{}")], partition)
    finally:
        replica.close()


def test_tree_next_offsets_reads_what_the_copy_stored(tmp_path: Path) -> None:
    _tree_copy(tmp_path / "process-tree", {0: 9, 3: 0})
    assert state_check.tree_next_offsets(tmp_path / "process-tree", "sf-process-tree") == {
        ("sf-process-tree", 0): 10,
        ("sf-process-tree", 3): 1,
    }
    assert state_check.tree_next_offsets(tmp_path / "no-copy", "sf-process-tree") == {}


def _worker_dir(tmp_path: Path, persisted_offset: int, cluster_id: str | None) -> Path:
    worker_dir = tmp_path / "sf-worker-6066"
    tabledir = worker_dir / "v1" / "tables"
    tabledir.mkdir(parents=True)
    _faust_store(tabledir / "process-create-0.db", persisted_offset)
    if cluster_id:
        state_check.record_cluster_id(worker_dir, cluster_id)
    return worker_dir


def _view(end_offset: int, cluster_id: str = "cluster-A") -> ClusterView:
    return ClusterView(cluster_id, frozenset({CHANGELOG}), {(CHANGELOG, 0): end_offset})


def test_state_ahead_of_its_changelog_is_set_aside_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker_dir = _worker_dir(tmp_path, persisted_offset=499, cluster_id=None)
    with caplog.at_level(logging.WARNING, logger=state_check.__name__):
        moved_to = state_check.check_worker_state(
            worker_dir, worker_dir / "v1" / "tables", CHANGELOGS, _view(0), NOW
        )
    assert moved_to == tmp_path / "sf-worker-6066.set-aside-20250304T050607Z"
    assert (moved_to / "v1" / "tables" / "process-create-0.db").is_dir()  # kept, not deleted
    assert [r.getMessage() for r in caplog.records] == [
        f"local state {worker_dir} is not from its changelogs ({CHANGELOG}[0]: next offset 500 "
        f"> end offset 0): set aside as {moved_to.name}, rebuilding it from the changelogs"
    ]
    # The new (empty) state directory knows its cluster.
    assert sorted(p.name for p in worker_dir.iterdir()) == [state_check.CLUSTER_ID_FILE]
    assert state_check.recorded_cluster_id(worker_dir) == "cluster-A"


def test_state_within_its_changelog_stays(tmp_path: Path) -> None:
    worker_dir = _worker_dir(tmp_path, persisted_offset=499, cluster_id="cluster-A")
    assert state_check.check_worker_state(
        worker_dir, worker_dir / "v1" / "tables", CHANGELOGS, _view(500), NOW
    ) is None  # fmt: skip
    assert (worker_dir / "v1" / "tables" / "process-create-0.db").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == [worker_dir.name]


def test_state_of_another_cluster_is_set_aside_even_when_its_offsets_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker_dir = _worker_dir(tmp_path, persisted_offset=3, cluster_id="cluster-A")
    with caplog.at_level(logging.WARNING, logger=state_check.__name__):
        moved_to = state_check.check_worker_state(
            worker_dir, worker_dir / "v1" / "tables", CHANGELOGS, _view(900, "cluster-B"), NOW
        )
    assert moved_to is not None and moved_to.is_dir()
    assert "built from Kafka cluster cluster-A, now cluster-B" in caplog.records[0].getMessage()
    assert state_check.recorded_cluster_id(worker_dir) == "cluster-B"


def test_a_directory_holding_only_the_cluster_id_is_not_set_aside(tmp_path: Path) -> None:
    worker_dir = tmp_path / "sf-worker-6066"
    state_check.record_cluster_id(worker_dir, "cluster-A")
    view = _view(0, "cluster-B")
    assert state_check.check_worker_state(worker_dir, worker_dir / "v1", CHANGELOGS, view) is None
    assert state_check.recorded_cluster_id(worker_dir) == "cluster-B"


def test_a_tree_copy_ahead_of_its_topic_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "process-tree"
    _tree_copy(copy, {0: 9})
    topic = "sf-process-tree"
    behind = ClusterView("c", frozenset({topic}), {(topic, 0): 10})
    assert state_check.check_tree_copy(copy, topic, behind, NOW) is None
    ahead = ClusterView("c", frozenset({topic}), {(topic, 0): 0})
    with caplog.at_level(logging.WARNING, logger=state_check.__name__):
        moved_to = state_check.check_tree_copy(copy, topic, ahead, NOW)
    assert moved_to == tmp_path / "process-tree.set-aside-20250304T050607Z"
    assert not copy.exists() and moved_to.is_dir()
    assert [r.getMessage() for r in caplog.records] == [
        f"process-tree copy {copy} is not from {topic} ({topic}[0]: next offset 10 > end offset "
        f"0): set aside as {moved_to.name}, reading the topic again"
    ]
