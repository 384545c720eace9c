"""Helpers for the integration tests: a real broker, real worker processes, topic I/O."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYSMON_SHARED_DIR", REPO.parent / "shared"))
DATASETS = SHARED / "datasets"
CASES = SHARED / "cases"
#: For a test that kills a worker and starts it (or another) again: each restart
#: waits for the killed member's session to end before its group rebalances,
#: so the broker's least session (``group.min.session.timeout.ms``, 6 s) rather
#: than the worker's default 10 s. ~4 s less per kill; what is tested is the same.
SHORT_SESSION: dict[str, str] = {"SYSMON_SESSION_TIMEOUT": "6"}
#: SigmaHQ's Windows rules, as ``../shared`` holds them.
SIGMA_CORPUS = SHARED / "sigma" / "rules" / "windows"


@functools.cache
def sigmahq_corpus() -> Any:
    """:data:`SIGMA_CORPUS` loaded (a ``RuleSet``), once per test session: ~3.6 s each
    time, and two test modules read it. The test is skipped, saying so, when it is absent."""
    import pytest

    from sysmon_faust.core.sigma import ruleset

    if not SIGMA_CORPUS.is_dir():
        pytest.skip(f"{SIGMA_CORPUS} not found (set SYSMON_SHARED_DIR to the shared/ folder)")
    return ruleset.load([SIGMA_CORPUS])


def case_file(name: str) -> Path:
    """``../shared/cases/<name>.jsonl``; the test is skipped, saying so, when it is absent."""
    import pytest

    path = CASES / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not found (set SYSMON_SHARED_DIR to the shared/ folder)")
    return path


def case_events(name: str) -> list[Any]:
    """Every line of case ``name``, normalized; each must be an event (no dead letter)."""
    from sysmon_faust.core.normalize import NormalizedEvent, normalize

    found = [normalize(line) for line in case_file(name).read_bytes().splitlines()]
    assert all(isinstance(event, NormalizedEvent) for event in found), found
    return found


def rules_test_case(name: str) -> tuple[Any, list[Any]]:
    """``rules test`` over case ``name`` with the worker's defaults: (FileReport, detections).

    Detections one per match (a window of 0): the cases count matches.
    """
    from sysmon_faust.cli.rules_test import DEFAULT_DEPTH, DEFAULT_GRACE_S, check_file
    from sysmon_faust.core.sigma.ruleset import load
    from sysmon_faust.settings import DEFAULT_RULES

    detections: list[Any] = []
    report = check_file(
        case_file(name), load([DEFAULT_RULES]), DEFAULT_GRACE_S * 1000, DEFAULT_DEPTH,
        detections.append, window_ms=0,
    )  # fmt: skip
    return report, detections


FAUST = Path(sys.executable).parent / "faust"
KAFKA_SH = str(REPO / "kafka" / "kafka.sh")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Phases:
    """Prints how long each phase of a long test took, seconds since the last mark: captured,
    and shown for a passing test slower than ``tests.conftest.SLOW_TEST_SECONDS``."""

    def __init__(self) -> None:
        self._since = time.monotonic()

    def mark(self, what: str) -> None:
        now = time.monotonic()
        print(f"{now - self._since:6.1f} s  {what}")
        self._since = now


# --- Kafka I/O ----------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp_ms: int

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def kafka_security(env: Mapping[str, str]) -> dict[str, Any]:
    """The security arguments of aiokafka clients for these settings (KAFKA_SECURITY_PROTOCOL...).

    Every helper below takes them as ``security=``; without, clients connect in PLAINTEXT.
    """
    from sysmon_faust.settings import Settings

    return Settings.from_env(env).kafka_client_options()


async def _create_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    config: Mapping[str, str],
    security: Mapping[str, Any] | None = None,
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=dict(config),
                )
            ]
        )
    finally:
        await admin.close()


async def _end_offsets(
    bootstrap: str, topic: str, partitions: int, isolation_level: str
) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level)
    try:
        await consumer.start()  # inside: a start that fails leaves a client to close
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def held_back_by_transactions(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Per partition of ``topic``: records a read_committed consumer cannot read yet.

    The high watermark less the last stable offset (KIP-98): records after
    the first one of a transaction still open. For a failing test's message.
    """
    stable = run(_end_offsets(bootstrap, topic, partitions, "read_committed"))
    high = run(_end_offsets(bootstrap, topic, partitions, "read_uncommitted"))
    return {partition: high[partition] - stable[partition] for partition in high}


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    *,
    security: Mapping[str, Any] | None = None,
    **config: str,
) -> None:
    run(
        _create_topic(
            bootstrap,
            topic,
            partitions,
            {k.replace("_", "."): v for k, v in config.items()},
            security,
        )
    )


async def _produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    partition: int | None,
    keys: Iterable[bytes | None] | None,
    security: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **(security or {}),
        acks="all",
        enable_idempotence=True,
        max_request_size=16 * 1024 * 1024,
        compression_type=compression,
    )
    await producer.start()
    count = 0
    try:
        futures = []
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            key = next(key_iter) if key_iter is not None else None
            futures.append(await producer.send(topic, value, key=key, partition=partition))
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    partition: int | None = None,
    keys: Iterable[bytes | None] | None = None,
    *,
    security: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> int:
    """Send ``values`` (and ``keys``) to ``topic``; ``compression``: the producer's codec."""
    return int(run(_produce(bootstrap, topic, values, partition, keys, security, compression)))


async def _partitions(
    bootstrap: str, topic: str, deadline: float, security: Mapping[str, Any] | None = None
) -> set[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        while True:
            # Described only once it exists: naming a missing topic in a metadata
            # request creates it, with the broker's defaults, before the app can.
            exists = topic in await admin.list_topics()
            described = await admin.describe_topics([topic]) if exists else []
            found = {
                p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"]
            }
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _read_all(
    bootstrap: str,
    topic: str,
    expect: int | None,
    timeout: float,
    settle: float,
    security: Mapping[str, Any] | None = None,
) -> list[Record]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **(security or {}),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        partitions = await _partitions(bootstrap, topic, deadline, security)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last_growth = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10000)
            for messages in batch.values():
                for m in messages:
                    records.append(Record(m.key, m.value, m.partition, m.offset, m.timestamp))
            now = time.monotonic()
            if batch:
                last_growth = now
            if expect is not None and len(records) >= expect and now - last_growth >= settle:
                break
            if expect is None and now - last_growth >= settle:
                break
    finally:
        await consumer.stop()
    return records


def read_topic(
    bootstrap: str,
    topic: str,
    expect: int | None = None,
    timeout: float = 60.0,
    settle: float = 1.0,
    *,
    security: Mapping[str, Any] | None = None,
) -> list[Record]:
    """Every record of ``topic`` from the beginning.

    With ``expect``, reads until at least that many arrived and nothing more
    came for ``settle`` seconds (so extra records are seen, not hidden), or
    until ``timeout``. Without it, until the topic was quiet for ``settle``.
    """
    return list(run(_read_all(bootstrap, topic, expect, timeout, settle, security)))


# --- worker processes -------------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def http(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """(status, body): the body decoded from JSON, or as text when it is not JSON."""
        request = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())

    def http_raw(self, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """Send ``request`` byte for byte (no client checks it) → (status, headers, body).

        Reads until the server closes the connection: ask with
        ``Connection: close``. Header names come back in lower case.
        """
        with socket.create_connection(("127.0.0.1", self.web_port), timeout=timeout) as sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers, body

    def stats(self) -> dict[str, Any]:
        status, body = self.http("/stats")
        assert status == 200, body
        return dict(body)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                status, _ = self.http("/health")
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"worker not healthy after {timeout} s:\n{self.log_tail()}")

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll /stats until ``predicate(stats)`` holds; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            stats = self.stats()
            if predicate(stats):
                return stats
            time.sleep(0.25)
        raise AssertionError(
            f"condition not met after {timeout} s; last stats {stats}\n{self.log_tail()}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body.decode("utf-8", "replace")


def start_worker(
    env: Mapping[str, str], work_dir: Path, web_port: int | None = None
) -> WorkerProcess:
    port = web_port or free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"worker-{port}.log"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(FAUST), "-A", "sysmon_faust", "worker", "-l", "info", "--web-port", str(port)],
            cwd=work_dir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(process, port, log_path, dict(env))


def sysmon_env(bootstrap: str, prefix: str, data_dir: Path, partitions: int = 4) -> dict[str, str]:
    """Settings for one isolated pipeline: its own app id, topics and state."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SYSMON_APP_ID": prefix,
        "SYSMON_DATA_DIR": str(data_dir),
        "SYSMON_PARTITIONS": str(partitions),
        "SYSMON_TOPIC_INPUT": f"{prefix}-winlogbeat",
        "SYSMON_TOPIC_PROCESS_CREATE": f"{prefix}-process-create",
        "SYSMON_TOPIC_NETWORK_CONNECT": f"{prefix}-network-connect",
        "SYSMON_TOPIC_JOIN": f"{prefix}-join",
        "SYSMON_TOPIC_UNMATCHED": f"{prefix}-network-unmatched",
        "SYSMON_TOPIC_ALERTS": f"{prefix}-alerts",
        "SYSMON_TOPIC_ENRICHED": f"{prefix}-enriched",
        "SYSMON_TOPIC_DLQ": f"{prefix}-dlq",
        # ksqlDB's semantics (a connect before its create is unmatched at once),
        # which the datasets' counts assume; the grace buffer has its own tests.
        "SYSMON_JOIN_GRACE": "0",
        # An alert per rule match, which the datasets' counts (and the tests
        # of rules) count; alert groups have their own tests (test_alert_groups).
        "SYSMON_ALERT_WINDOW": "0",
    }


async def _topic_configs(
    bootstrap: str, topics: list[str], security: Mapping[str, Any] | None = None
) -> dict[str, dict[str, str]]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        )
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
        return configs
    finally:
        await admin.close()


def topic_configs(
    bootstrap: str, topics: list[str], *, security: Mapping[str, Any] | None = None
) -> dict[str, dict[str, str]]:
    """Each topic's effective configuration (``retention.ms``, ``cleanup.policy``...)."""
    return dict(run(_topic_configs(bootstrap, topics, security)))


async def _partition_counts(
    bootstrap: str, topics: list[str], security: Mapping[str, Any] | None = None
) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        # describe_topics alone would create a missing topic (auto.create.topics.enable).
        existing = set(await admin.list_topics())
        wanted = [topic for topic in topics if topic in existing]
        described = await admin.describe_topics(wanted) if wanted else []
        return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
    finally:
        await admin.close()


def partition_counts(
    bootstrap: str, topics: list[str], *, security: Mapping[str, Any] | None = None
) -> dict[str, int]:
    return dict(run(_partition_counts(bootstrap, topics, security)))


@dataclass
class OwnBroker:
    """A broker of one test's own: stopped, restarted or wiped without disturbing the others."""

    bootstrap: str
    env: dict[str, str]
    data_dir: Path

    def down(self) -> None:
        subprocess.run([KAFKA_SH, "down"], env=self.env, check=True, capture_output=True)

    def pause(self, sig: int) -> None:
        """SIGSTOP: a broker that hangs (a long GC pause, a stalled disk); SIGCONT: it goes on."""
        os.kill(int((self.data_dir / "broker.pid").read_text().strip()), sig)

    def up(self) -> None:
        subprocess.run([KAFKA_SH, "up"], env=self.env, check=True, capture_output=True, timeout=300)


def run_recording(
    path: Path, env: dict[str, str], start_worker: Callable[..., WorkerProcess]
) -> tuple[WorkerProcess, dict[str, Any]]:
    """Replay ``path`` (with the CLI, as a user would) into one new worker; its /stats once done.

    Done: every input record read, and the join has handled every event the
    intake normalized.
    """
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=1)
    worker = start_worker(env)
    replay = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "replay", str(path)],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    sent = int(replay.stdout.split("sent ")[1].split()[0])
    stats = worker.wait_for(
        lambda s: s["consumed"] >= sent and s["join_handled"] >= s["normalized"],
        timeout=240,
    )
    return worker, stats


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in ``GET /metrics`` text (read with prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def self_signed_pem(where: Path, common_name: str) -> tuple[Path, Path]:
    """A self-signed EC certificate and its unencrypted key (PEM) in ``where``: (cert, key).

    Raises RuntimeError when ``openssl`` is not on PATH (a test must not skip
    for want of it: install it, Debian ``apt-get install openssl``).
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl not on PATH: install it (Debian: apt-get install openssl)")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={common_name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
