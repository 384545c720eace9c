"""Why a worker cannot start, and the replicas of its topics: pure decisions of startup.py."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sysmon_faust.stream import startup
from sysmon_faust.stream.startup import StartRefused


@pytest.mark.parametrize(
    ("setting", "default", "brokers", "replicas"),
    [
        (None, 1, 1, 1),  # the local broker
        (None, 3, 3, 3),  # a production cluster
        (None, 3, 1, 1),  # a default the cluster cannot honour
        (None, 3, 5, 3),
        (None, 0, 3, 1),
        (2, 3, 3, 2),  # the operator's choice wins
        (1, 3, 3, 1),
    ],
)
def test_replicas_follow_the_setting_else_the_cluster(
    setting: int | None, default: int, brokers: int, replicas: int
) -> None:
    assert startup.replication_factor(setting, default, brokers) == replicas


def test_more_replicas_than_brokers_are_refused() -> None:
    with pytest.raises(StartRefused, match="SYSMON_REPLICATION_FACTOR=4, but the cluster has 3"):
        startup.replication_factor(4, 3, 3)


def test_min_insync_replicas_and_the_one_replica_warning() -> None:
    assert startup.min_insync_replicas(3) == {"min.insync.replicas": "2"}
    assert startup.min_insync_replicas(2) == startup.min_insync_replicas(1) == {}
    assert startup.single_replica_warning(1, 1) is None
    assert startup.single_replica_warning(3, 3) is None
    warning = startup.single_replica_warning(1, 3)
    assert warning is not None and "SYSMON_REPLICATION_FACTOR=3" in warning


def test_a_partition_count_that_changed_is_refused_naming_both() -> None:
    assert startup.partition_mismatch(4, {"a": 4, "b": 4}, "app") is None
    refused = startup.partition_mismatch(8, {"app-x": 4, "app-y": 4}, "app")
    assert refused is not None
    assert str(refused).startswith(
        "SYSMON_PARTITIONS=8, but this app's topics were made with 4 partitions "
        "(app-x has 4 and others too): set SYSMON_PARTITIONS=4 again"
    )


def test_a_state_folder_must_be_writable(tmp_path: Path) -> None:
    assert startup.check_state_folder(tmp_path / "new" / "folder") is None
    (tmp_path / "file").write_text("")
    refused = startup.check_state_folder(tmp_path / "file" / "data")
    assert refused is not None and "cannot hold the worker's state" in str(refused)


def test_a_web_port_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = startup.check_web_port("127.0.0.1", port)
        assert refused is not None and f"web port {port}" in str(refused)
    assert startup.check_web_port("127.0.0.1", port) is None


def test_workers_starting_together_on_one_state_folder_are_not_refused(tmp_path: Path) -> None:
    # Two workers of one host share SYSMON_DATA_DIR and start at once (a
    # two-worker test did): one probe file for both made one unlink the
    # other's, and a worker refused to start with "No such file or directory".
    def probe(_: int) -> list[StartRefused | None]:
        return [startup.check_state_folder(tmp_path) for _ in range(300)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [r for batch in pool.map(probe, range(4)) for r in batch]
    assert results == [None] * 1200
    assert list(tmp_path.iterdir()) == []  # no probe left behind


def test_a_static_member_reached_by_its_host_name_is_warned() -> None:
    warn = startup.static_member_address_warning
    assert warn("", "", "0.0.0.0") is None  # dynamic membership: no assignment kept
    assert warn("worker-1", "worker-1", "0.0.0.0") is None  # an advertised name
    assert warn("worker-1", "", "10.0.0.5") is None  # a fixed bind address
    warning = warn("worker-1", "", "0.0.0.0")
    assert warning is not None and "SYSMON_WEB_ADVERTISED_HOST" in warning
