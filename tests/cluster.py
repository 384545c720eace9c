"""A real three-node Kafka cluster for tests that need replication: the ``kafka_cluster`` fixture.

Three KRaft nodes (each a combined broker+controller, all voters of one
quorum, one cluster id) started by ``kafka/cluster.sh`` on free loopback
ports, data under ``.kafka-test/cluster-<port>/``. Topics default to
replication factor 3 and ``min.insync.replicas`` 2 there, so ``acks=all``
still works with one node down.

Session scope: starting three JVMs costs some 15-25 s, so every test that
uses the fixture shares one cluster, and those tests run last
(``tests/conftest.py`` orders them), so that the cluster is up only while
they run; each test names its own topics and groups (``unique_name``). A
test that stops a node starts it again before it ends (``start_node``;
``try``/``finally``), or the next test finds a node missing. Every node is
stopped and the data removed at the end of the session, also when a test
failed.

To use it in a test module, ``tests/conftest.py`` imports it::

    from tests.cluster import kafka_cluster  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = str(REPO / "kafka" / "cluster.sh")
KAFKA_SH = str(REPO / "kafka" / "kafka.sh")
NODES = 3
#: Three JVMs on a small machine: each gets a small heap.
HEAP_OPTS = "-Xmx384m -Xms128m"
#: Settings of a developer's own broker that must not leak into the nodes.
FOREIGN = ("KAFKA_PORT", "KAFKA_DATA_DIR", "KAFKA_SASL_PORT", "KAFKA_SASL_USERS",
           "KAFKA_SASL_MECHANISMS", "KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM",
           "KAFKA_CLUSTER_ID", "KAFKA_CLUSTER_NODES")  # fmt: skip


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (bound all at once, so none comes twice)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class ClusterError(RuntimeError):
    """``kafka/cluster.sh`` failed; the message holds its output."""


@dataclass
class KafkaCluster:
    """A running cluster of ``kafka/cluster.sh``; nodes are numbered from 1 (their node.id)."""

    directory: Path
    ports: list[int]
    controller_ports: list[int]
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        """Every node: ``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``."""
        return ",".join(self.address(node_id) for node_id in self.node_ids)

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, len(self.ports) + 1))

    @property
    def data_dirs(self) -> list[Path]:
        """Each node's data dir (``broker.log`` is its log), in node order."""
        return [self.data_dir(node_id) for node_id in self.node_ids]

    def data_dir(self, node_id: int) -> Path:
        return self.directory / f"node-{node_id}"

    def address(self, node_id: int) -> str:
        """``127.0.0.1:port`` of one node only."""
        return f"127.0.0.1:{self.ports[node_id - 1]}"

    def cluster_sh(self, *args: str, timeout: float = 300) -> str:
        """Runs ``kafka/cluster.sh ARGS`` for this cluster; its output, or ClusterError."""
        done = subprocess.run(
            [CLUSTER_SH, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise ClusterError(
                f"kafka/cluster.sh {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout + done.stderr

    def up(self) -> None:
        """Every node started (those running are left alone), all registered."""
        self.cluster_sh("up")

    def down(self) -> None:
        self.cluster_sh("down")

    def stop_node(self, node_id: int, *, kill: bool = False) -> None:
        """Stops one node: SIGTERM (a controlled shutdown; leadership moves first), or
        SIGKILL with ``kill=True`` (a crash; the others notice after the broker
        session timeout, 9 s)."""
        if kill and self.running(node_id):
            os.kill(self._pid(node_id), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while self.running(node_id) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.cluster_sh("down", str(node_id))

    def start_node(self, node_id: int) -> None:
        """Starts one node again; returns once it is registered and unfenced (when a
        majority of the nodes is up; with fewer it cannot be, and returns once it listens)."""
        self.cluster_sh("up", str(node_id))

    def running(self, node_id: int) -> bool:
        """Is the node's process alive (answering or not)?"""
        try:
            pid = self._pid(node_id)
            os.kill(pid, 0)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
        return str(self.data_dir(node_id) / "server.properties").encode() in cmdline

    def _pid(self, node_id: int) -> int:
        return int((self.data_dir(node_id) / "broker.pid").read_text().strip())

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        try:
            text = (self.data_dir(node_id) / "broker.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def new_cluster(nodes: int = NODES) -> KafkaCluster:
    """A cluster of ``nodes`` on free ports, not started yet (``up``); ``stop_cluster`` ends it."""
    ports = free_ports(2 * nodes)
    directory = REPO / ".kafka-test" / f"cluster-{ports[0]}"
    shutil.rmtree(directory, ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    env.update(
        KAFKA_CLUSTER_DIR=str(directory),
        KAFKA_CLUSTER_NODES=str(nodes),
        KAFKA_CLUSTER_PORTS=",".join(map(str, ports[:nodes])),
        KAFKA_CLUSTER_CONTROLLER_PORTS=",".join(map(str, ports[nodes:])),
        KAFKA_HEAP_OPTS=HEAP_OPTS,
        # As the session broker: time retention every 5 s, so a topic whose
        # old-event-time records could expire fails every run.
        KAFKA_RETENTION_CHECK_MS="5000",
    )
    return KafkaCluster(directory, ports[:nodes], ports[nodes:], env)


def stop_cluster(cluster: KafkaCluster) -> None:
    """Every node stopped (whatever state the test left it in) and the data removed."""
    # The data goes: no need to wait for the last node, which cannot finish a
    # controlled shutdown once the others are gone (see kafka/cluster.sh).
    env = {**cluster.env, "KAFKA_STOP_TIMEOUT": "5"}
    subprocess.run([CLUSTER_SH, "down"], env=env, capture_output=True, timeout=120)
    # A node cluster.sh no longer knows of (its record never written or damaged):
    # kafka.sh needs only the data dir to stop what runs from it.
    for data_dir in cluster.directory.glob("node-*"):
        subprocess.run(
            [KAFKA_SH, "down"],
            env={**env, "KAFKA_DATA_DIR": str(data_dir)},
            capture_output=True,
            timeout=120,
        )
    shutil.rmtree(cluster.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A three-node KRaft cluster shared by the tests that use it (see the module's docstring)."""
    if shutil.which("java") is None:
        pytest.skip("needs Java to start a local Kafka cluster")
    cluster = new_cluster(NODES)
    try:
        try:
            cluster.up()
        except (ClusterError, subprocess.TimeoutExpired) as error:
            pytest.fail(f"could not start the 3-node Kafka cluster: {error}", pytrace=False)
        yield cluster
    finally:
        stop_cluster(cluster)
