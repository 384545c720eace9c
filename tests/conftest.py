"""Fixtures shared by every test: one real Kafka broker per session, unique names, workers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import kafka_cluster  # noqa: F401
from tests.support import (
    DATASETS,
    KAFKA_SH,
    REPO,
    OwnBroker,
    WorkerProcess,
    free_port,
    self_signed_pem,
    start_worker,
    sysmon_env,
)

INTEGRATION = Path(__file__).parent / "integration"
#: The modules whose tests take ``kafka_cluster``: under pytest-xdist they go to
#: one worker together, last, so that the cluster starts once and stops right
#: after them (see :func:`pytest_xdist_make_scheduler`, docs/testing.md).
CLUSTER_MODULES = (
    "tests/integration/test_kafka_cluster.py",
    "tests/integration/test_replication.py",
)
#: Tests that take ``kafka_cluster`` outside :data:`CLUSTER_MODULES`: they fail, saying so.
_UNDECLARED_CLUSTER_TESTS: set[str] = set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the three-node cluster last, together: it starts once for all of them
    (tests/cluster.py) and stops at the end of the session, right after them. Every test
    under tests/integration is marked ``integration``."""
    items.sort(key=_on_cluster)
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
        if _on_cluster(item) and not item.nodeid.startswith(CLUSTER_MODULES):
            _UNDECLARED_CLUSTER_TESTS.add(item.nodeid)


def _on_cluster(item: pytest.Item) -> bool:
    return "kafka_cluster" in getattr(item, "fixturenames", ())


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Failed here rather than refused at collection: under xdist the workers
    # collect, and the controller would drop their collection error's text.
    if item.nodeid in _UNDECLARED_CLUSTER_TESTS:
        pytest.fail(
            f"{item.nodeid} takes kafka_cluster: add its module to CLUSTER_MODULES "
            "(tests/conftest.py), or under xdist it may start a second cluster",
            pytrace=False,
        )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """For ``pytest -n N`` (xdist's default ``--dist load``): each integration module to
    one worker whole, the modules of :data:`CLUSTER_MODULES` together, each unit test on
    its own; handed out in the order collected (the cluster's last).

    A module's tests together: its module-scoped fixtures (a SASL broker, a worker
    for the hostile requests) start once. xdist's own ``xdist_group`` marker does
    nothing under pytest 9.2 (pytest-xdist 3.8 renames the test through
    ``Item._nodeid``, which pytest 9 no longer reads), so the groups are made
    here, from the node ids. Other ``--dist`` modes are xdist's own.
    """
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    # In collection order, not xdist's largest-first: the cluster's last.
    config.option.loadscopereorder = False

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(CLUSTER_MODULES):
                return "kafka-cluster"
            module = nodeid.split("::", 1)[0]
            return module if module.startswith("tests/integration/") else nodeid

    return ByModule(config, log)


#: A passing test slower than this shows what it printed (its phases' times) in
#: the run's summary: an outlier in a CI log then says where it waited.
SLOW_TEST_SECONDS = 90


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    slow = [
        report
        for report in terminalreporter.stats.get("passed", [])
        if report.when == "call" and report.duration > SLOW_TEST_SECONDS and report.capstdout
    ]
    if slow:
        terminalreporter.section(f"what the tests slower than {SLOW_TEST_SECONDS} s printed")
        for report in slow:
            terminalreporter.write_line(f"{report.nodeid} ({report.duration:.1f} s):")
            terminalreporter.write(report.capstdout)


def pytest_report_header() -> list[str]:
    where = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "a local broker started by the tests"
    datasets = DATASETS if DATASETS.is_dir() else f"{DATASETS} (absent: dataset tests skip)"
    return [f"kafka: {where}", f"datasets: {datasets}"]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker for the whole session.

    Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set; otherwise starts the project's
    local KRaft broker on a free port with its own data dir and stops it at the end.
    """
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    port = free_port()
    data_dir = REPO / ".kafka-test" / f"broker-{port}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_DATA_DIR": str(data_dir),
        # Time retention every 5 s instead of 5 min: a topic whose old-event-time
        # records could expire fails every run, not one run in many.
        "KAFKA_RETENTION_CHECK_MS": "5000",
    }
    script = str(REPO / "kafka" / "kafka.sh")
    started = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        why = f"could not start the test broker:\n{started.stdout}\n{started.stderr}"
        if os.environ.get("PYTEST_XDIST_WORKER"):
            # `make test` runs two xdist workers: one that exits mid-session is an
            # INTERNALERROR that drops this text, so each test that needs the
            # broker fails with it instead.
            pytest.fail(why, pytrace=False)
        pytest.exit(why, returncode=3)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def own_broker() -> Iterator[OwnBroker]:
    port = free_port()
    data_dir = REPO / ".kafka-test" / f"own-{port}"
    shutil.rmtree(data_dir, ignore_errors=True)
    broker = OwnBroker(
        f"127.0.0.1:{port}",
        {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA_DIR": str(data_dir)},
        data_dir,
    )
    broker.up()
    try:
        yield broker
    finally:
        subprocess.run([KAFKA_SH, "down"], env=broker.env, capture_output=True, timeout=120)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names no other test (or earlier run) uses: for topics, app ids, consumer groups."""

    def make(kind: str = "t") -> str:
        test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40].strip("-")
        return f"{kind}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def pipeline_env(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Callable[..., dict[str, str]]:
    """Factory: the settings of one isolated pipeline (own app id, topics, state dir)."""

    def make(partitions: int = 4) -> dict[str, str]:
        prefix = unique_name("sf")
        return sysmon_env(kafka_bootstrap, prefix, tmp_path / prefix / "data", partitions)

    return make


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a real ``faust -A sysmon_faust worker`` and wait until it is healthy."""
    workers: list[WorkerProcess] = []

    def make(env: dict[str, str], wait: bool = True, web_port: int | None = None) -> WorkerProcess:
        worker = start_worker(env, tmp_path / "workers", web_port)
        workers.append(worker)
        if wait:
            worker.wait_healthy()
        return worker

    yield make
    # All told at once, then waited for: a stop takes ~0.7 s or more (a commit,
    # RocksDB closed), and the three-worker tests paid it three times in a row.
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.stop()


@pytest.fixture
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(
            f"recordings not found at {DATASETS} (set SYSMON_SHARED_DIR to the shared/ folder)"
        )
    return DATASETS


@pytest.fixture(scope="session")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate (CN ``sysmon-faust-test``) and its unencrypted key (PEM),
    and a file that is neither."""
    where = tmp_path_factory.mktemp("pem")
    cert, key = self_signed_pem(where, "sysmon-faust-test")
    (where / "junk.pem").write_text("not a certificate\n")
    return {"cert": cert, "key": key, "junk": where / "junk.pem"}
