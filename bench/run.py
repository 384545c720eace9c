"""``make bench``: throughput, latency and memory of the pipeline, beside the raw Kafka ceiling.

One run, one broker, measured side by side:

1. fill an input topic with the generated workload (sysmon_faust.core.synthetic);
2. the ceilings: a plain aiokafka consume→produce passthrough of that topic,
   and the raw consume ceiling (librdkafka drains it, decoding nothing);
3. the pipeline, one worker, cold start over the filled topic: input events/s
   until the last enriched record is out, and the ratio to the ceiling;
4. the same with two workers;
5. end-to-end latency (event produced → enriched record appended) at a fixed
   rate of half the measured maximum, after a warm-up of LATENCY_WARMUP_SECONDS;
6. peak RSS of a worker and its RocksDB size after N distinct processes;
7. the normalizer's CPU per event, now and before issue 16 (bench/normalizer.py);
8. each SYSMON_COMPRESSION codec: throughput, and the local broker's CPU and
   disk per input event for what the worker writes;
9. with ``--baseline-rev REV``: one worker of this code and one of REV (a git
   worktree on the workers' PYTHONPATH), alternating, 3 rounds each, over the
   same input — a change's cost side by side in one run;
10. a peer: the Sysmon 1/3 join alone as a Quix Streams 3.28 application
    (bench/quix_peer.py) over the same input topic, and the product's ratio to it:
    as it runs by default, and enriching only 1, 3, 5 (the run that compares
    SYSMON_ENRICH_EVENTS=1,3,5 with every type);
11. the engine alone (bench/engine.py): a worker's per-event steps in one
    process, no Kafka, enriching only 1, 3, 5 and every type; beside the
    workers of 10., what they spend beyond it (Kafka, Faust, RocksDB).

Prints a table; writes bench/results/<timestamp>.json and latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiokafka
import confluent_kafka
import engine as engine_bench  # bench/engine.py, beside this script
import faust
import normalizer  # bench/normalizer.py, beside this script
import orjson
import rules as rules_bench  # bench/rules.py, beside this script
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sysmon_faust.cli.progress import Progress
from sysmon_faust.core.ancestry import encode_link
from sysmon_faust.core.normalize import NETWORK_CONNECT, NormalizedEvent, normalize
from sysmon_faust.core.rekey import BatchBuilder, event_record, key_partition
from sysmon_faust.core.synthetic import GeneratedEvent, Workload, WorkloadConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
FAUST = Path(sys.executable).parent / "faust"
QUIX_PEER = REPO / "bench" / "quix_peer.py"
#: The peer's Python: a venv of its own that `make bench` makes (.venv/quix),
#: never the workers' — quixstreams brings rocksdict, which Faust's RocksDB store
#: takes up whenever it can import it (see docs/benchmark.md, "A peer").
QUIX_PYTHON = Path(
    os.environ.get("BENCH_QUIX_PYTHON", Path(sys.executable).parent.parent / "quix/bin/python")
)
LATENCY_WARMUP_SECONDS = 5.0
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "warn")  # the workers' (logs in bench/work/)


#: Every topic of this run starts with this (Faust's internal ones too, through
#: the app ids; Quix Streams' internal ones carry it after their
#: ``repartition__``/``changelog__``): the run deletes them when it ends, so runs
#: do not pile up gigabytes on the broker (retention is by size, 1 GiB per partition).
RUN_PREFIX = f"bench-{uuid.uuid4().hex[:6]}-"


def bench_name(kind: str) -> str:
    return f"{RUN_PREFIX}{kind}-{uuid.uuid4().hex[:4]}"


async def delete_run_topics(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [
            topic
            for topic in await admin.list_topics()
            if topic.startswith(RUN_PREFIX) or f"__{RUN_PREFIX}" in topic
        ]
        if ours:
            await admin.delete_topics(ours)
        return len(ours)
    finally:
        await admin.close()


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Kafka helpers -------------------------------------------------------------


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, config: WorkloadConfig, rate: float = 0) -> Workload:
    """Produce the workload; with ``rate``, at that many events/s (for the latency run)."""
    workload = Workload(config)
    await produce_events(bootstrap, topic, workload, config.events, rate)
    return workload


async def produce_events(
    bootstrap: str, topic: str, events: Iterable[GeneratedEvent], total: int, rate: float = 0
) -> int:
    """Produce generated events keyed by host, with a progress line; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1
    )
    await producer.start()
    progress = Progress(total, f"fill {topic}")
    started = time.monotonic()
    pending = []
    n = 0
    try:
        for n, event in enumerate(events, 1):
            pending.append(await producer.send(topic, event.value, key=event.host))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
            progress.update(n)
            if rate:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    progress.finish(n)
    return n


async def end_offset_total(
    bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"
) -> int:
    """Sum of the topic's end offsets; with read_committed, of its last stable offsets.

    (Under exactly_once these also count one commit marker per partition and
    transaction: a few dozen in a benchmark run.)
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0
    finally:
        await consumer.stop()


async def passthrough(bootstrap: str, source: str, target: str, events: int) -> float:
    """The ceiling: bytes in, bytes out, same keys and partitions, offsets committed."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-passthrough-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1
    )
    await consumer.start()
    await producer.start()
    done = 0
    started = None
    try:
        while done < events:
            batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            if started is None and batch:
                started = time.monotonic()
            pending = []
            for tp, messages in batch.items():
                for m in messages:
                    pending.append(
                        await producer.send(target, m.value, key=m.key, partition=tp.partition)
                    )
                done += len(messages)
            await asyncio.gather(*pending)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    return events / (time.monotonic() - (started or time.monotonic()))


def raw_drain(bootstrap: str, source: str, events: int) -> float:
    """The machine's raw consume ceiling: librdkafka (the client Quix Streams reads with)
    drains the topic from the beginning, decoding nothing — events/s from the first
    record to the last. No consumer group: it only reads."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-drain-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
        }
    )
    try:
        partitions = consumer.list_topics(source, timeout=30).topics[source].partitions
        consumer.assign(
            [
                confluent_kafka.TopicPartition(source, p, confluent_kafka.OFFSET_BEGINNING)
                for p in partitions
            ]
        )
        done, started = 0, None
        deadline = time.monotonic() + 300
        while done < events and time.monotonic() < deadline:
            messages = consumer.consume(num_messages=10_000, timeout=1)
            if started is None and messages:
                started = time.monotonic()
            done += sum(1 for m in messages if m.error() is None)
    finally:
        consumer.close()
    return done / (time.monotonic() - (started or time.monotonic()))


# --- workers ---------------------------------------------------------------


class Worker:
    def __init__(
        self, env: dict[str, str], work: Path, port: int | None = None,
        cpus: frozenset[int] | None = None,
    ) -> None:  # fmt: skip
        """``cpus``: the CPUs the worker (every thread it starts) may run on; None: any."""
        # The web port also names the worker's state directory: a worker
        # restarted on the same port finds its RocksDB again.
        self.port = port or free_port()
        work.mkdir(parents=True, exist_ok=True)
        self.log = work / f"worker-{self.port}.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(FAUST), "-A", "sysmon_faust", "worker", "-l", LOG_LEVEL,
                 "--web-port", str(self.port)],
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=work,
                preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
            )  # fmt: skip

    def stats(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.port}/stats"
            with urllib.request.urlopen(url, timeout=5) as response:
                return dict(json.loads(response.read()))
        except OSError:
            return None

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self) -> dict[int, tuple[str, float]]:
        """Per thread id: (its kind, CPU seconds so far). Kinds: ``rocksdb`` (RocksDB's
        background threads, compaction and memtable flushes: ``rocksdb:*``), ``librdkafka``
        (``rdk:*``: fetching, compressing, sending), ``python`` (the rest: the event loop,
        Faust's consumer thread, executors). Empty once the worker is gone."""
        tick = os.sysconf("SC_CLK_TCK")
        found: dict[int, tuple[str, float]] = {}
        try:
            threads = list(Path(f"/proc/{self.process.pid}/task").iterdir())
        except OSError:
            return found
        for thread in threads:
            try:
                name = (thread / "comm").read_text().strip()
                fields = (thread / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            kind = "python"
            for named, prefix in (("rocksdb", "rocksdb:"), ("librdkafka", "rdk:")):
                if name.startswith(prefix):
                    kind = named
            found[int(thread.name)] = kind, (int(fields[11]) + int(fields[12])) / tick
        return found

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine (all cores, every process) has spent not idle."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def pipeline_env(
    bootstrap: str, app_id: str, input_topic: str, data: Path, partitions: int
) -> dict[str, str]:
    """A worker's settings for one run: every topic it writes is the run's own (named after
    ``app_id``), so that a run neither reads another's records nor leaves any behind
    (:func:`delete_run_topics`)."""
    names = ("PROCESS_CREATE", "NETWORK_CONNECT", "JOIN", "UNMATCHED", "ENRICHED", "ALERTS", "DLQ")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SYSMON_APP_ID": app_id,
        "SYSMON_DATA_DIR": str(data),
        "SYSMON_PARTITIONS": str(partitions),
        "SYSMON_TOPIC_INPUT": input_topic,
        **{f"SYSMON_TOPIC_{name}": f"{app_id}-{name.lower().replace('_', '-')}" for name in names},
    }


def run_pipeline(
    bootstrap: str, input_topic: str, workload: Workload, workers: int, partitions: int,
    work: Path, guarantee: str = "at_least_once", extra_env: dict[str, str] | None = None,
    label: str = "", cpus: frozenset[int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Cold start over the filled topic; measured until every expected join is out
    (``cpus``: where the workers may run, :class:`Worker`)."""
    app_id = bench_name(f"{workers}w-{guarantee.replace('_', '-')}{label}")
    env = pipeline_env(bootstrap, app_id, input_topic, work / app_id, partitions)
    env["SYSMON_PROCESSING_GUARANTEE"] = guarantee
    env.update(extra_env or {})
    # Under exactly_once a record is out when its transaction is committed.
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    expected = workload.expected
    launched = time.monotonic()
    group = [Worker(env, work / app_id, cpus=cpus) for _ in range(workers)]
    progress = Progress(expected.events, f"pipeline x{workers}")
    broker = LocalBroker()
    first = None
    busy_at_first = worker_cpu_at_first = broker_cpu_at_first = 0.0
    threads_at_first: list[dict[int, tuple[str, float]]] = [{} for _ in group]
    joined, last_joined, last_change = 0, -1, time.monotonic()
    try:
        while True:
            stats = [s for s in (w.stats() for w in group) if s]
            consumed = sum(s["consumed"] for s in stats)
            if first is None and consumed:
                first = time.monotonic()
                busy_at_first = machine_busy_seconds()
                worker_cpu_at_first = sum(w.cpu_seconds() for w in group)
                threads_at_first = [w.thread_cpu() for w in group]
                broker_cpu_at_first = broker.cpu_seconds() if broker.pid else 0.0
            progress.update(consumed)
            # The last enriched record is out when the join topic holds them all
            # (only asked once everything was read: it opens a client).
            if consumed >= expected.events:
                joined = asyncio.run(
                    end_offset_total(bootstrap, env["SYSMON_TOPIC_JOIN"], isolation)
                )
                if joined >= expected.joined_in_order:
                    break
                if joined != last_joined:
                    last_joined, last_change = joined, time.monotonic()
                elif time.monotonic() - last_change > 30:
                    # Nothing more comes: report what is missing rather than hang.
                    log(f"only {joined} of {expected.joined_in_order} joins arrived")
                    break
            if any(w.process.poll() is not None for w in group):
                raise SystemExit(f"a worker died; see {group[0].log}")
            time.sleep(0.2)
        finished = time.monotonic()
        last_stats = [s for s in (w.stats() for w in group) if s]
        busy = machine_busy_seconds() - busy_at_first
        worker_cpu = sum(w.cpu_seconds() for w in group) - worker_cpu_at_first
        threads_at_end = [w.thread_cpu() for w in group]
        broker_cpu = broker.cpu_seconds() - broker_cpu_at_first if broker.pid else None
        progress.finish(consumed)
        rss = max(w.peak_rss_mb() for w in group)
    finally:
        for w in group:
            w.stop()
    seconds = finished - (first or launched)
    if joined < expected.joined_in_order:
        seconds -= 30  # the wait for joins that never came
    return {
        "app_id": app_id,
        "missing_joins": max(expected.joined_in_order - joined, 0),
        "input_eps": expected.events / seconds,
        "enriched_eps": expected.joined_in_order / seconds,
        "seconds": seconds,
        "startup_seconds": (first or launched) - launched,
        "rss_mb": rss,
        # What limits the figure: cores busy on the machine (broker, workers,
        # this script) and the workers' own CPU per input event.
        "machine_busy_cores": busy / seconds,
        "worker_cpu_us_per_event": worker_cpu / expected.events * 1e6,
        # Of it: Python (the intake, the join, Faust), RocksDB's and librdkafka's threads.
        "worker_cpu_us_per_event_by_thread": per_item_by_kind(
            threads_at_first, threads_at_end, expected.events
        ),
        # The local broker's (None for a remote cluster): what the run made it do.
        "broker_cpu_us_per_event": _per_event_us(broker_cpu, expected.events),
        # Joins parked for an ancestor's link (sysmon_faust.core.join.parking).
        "ancestry_waits": sum(s.get("ancestry_waits", 0) for s in last_stats),
        "ancestry_wait_timeouts": sum(s.get("ancestry_wait_timeouts", 0) for s in last_stats),
        "alerts": sum(s.get("alerts", 0) for s in last_stats),
        "alert_matches": sum(s.get("alert_matches", 0) for s in last_stats),
        "enriched_records": sum(s.get("enriched", 0) for s in last_stats),
    }


def quixstreams_version() -> str | None:
    """The version of quixstreams in the peer's venv (None: not there)."""
    try:
        found = subprocess.run(
            [str(QUIX_PYTHON), "-c", "import quixstreams; print(quixstreams.__version__)"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() if found.returncode == 0 else None


class QuixPeer(Worker):
    """bench/quix_peer.py as a subprocess: its CPU and RSS are read like a worker's."""

    def __init__(self, args: list[str], work: Path) -> None:  # no super(): not a Faust worker
        work.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.log = work / "quix-peer.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(QUIX_PYTHON), str(QUIX_PEER), *args],
                stdout=out, stderr=subprocess.STDOUT, cwd=work,
            )  # fmt: skip

    def stats(self) -> dict[str, Any] | None:
        return None  # no HTTP


def run_quix(bootstrap: str, input_topic: str, workload: Workload, work: Path) -> dict[str, Any]:
    """The Quix Streams peer, cold start over the filled topic, until its joins are all out.

    Measured as ``run_pipeline`` measures a worker: from the first input event
    the peer reads (it writes the moment and its CPU time so far to a file) to
    the moment its output topic holds every expected joined record; CPU is the
    peer process's (every thread, librdkafka's too) over that span, per input event.

    Expected records: one per connect whose creation came before it in the
    stream, ``Expected.joined_in_order``. Both are on the same input partition
    (keyed by host), so the peer reads them in that order, and re-keyed by the
    same GUID they go to the same repartition partition in that order too. The
    connects that precede their creation (``Expected.joined_early``, none in
    the bench's workload) the product joins within its grace; the peer drops them.
    """
    app_id = bench_name("quix")
    output = bench_name("quix-join")
    state_dir = work / app_id
    first_file = state_dir / "first-event"
    expected = workload.expected
    # Python's logging names (Quix's): "warn" is the workers' spelling of WARNING.
    quix_log_level = {"warn": "WARNING"}.get(LOG_LEVEL.lower(), LOG_LEVEL.upper())
    launched = time.monotonic()
    peer = QuixPeer(
        [
            "--bootstrap", bootstrap, "--input", input_topic, "--output", output,
            "--app-id", app_id, "--state-dir", str(state_dir / "state"),
            "--first-file", str(first_file), "--log-level", quix_log_level,
        ],
        state_dir,
    )  # fmt: skip
    broker = LocalBroker()
    try:
        joined, broker_cpu_at_first = asyncio.run(
            _wait_for_records(bootstrap, output, expected.joined_in_order, peer, first_file, broker)
        )
        finished = time.monotonic()
        cpu = peer.cpu_seconds()
        broker_cpu = broker.cpu_seconds() - broker_cpu_at_first if broker.pid else None
        rss = peer.peak_rss_mb()
    finally:
        peer.stop()
    first, cpu_at_first = (float(x) for x in first_file.read_text().split())
    seconds = finished - first
    if joined < expected.joined_in_order:
        seconds -= 30  # the wait for joins that never came
    return {
        "app_id": app_id,
        "missing_joins": max(expected.joined_in_order - joined, 0),
        "joined_records": joined,
        "input_eps": expected.events / seconds,
        "enriched_eps": expected.joined_in_order / seconds,
        "seconds": seconds,
        "startup_seconds": first - launched,
        "rss_mb": rss,
        "process_cpu_us_per_event": (cpu - cpu_at_first) / expected.events * 1e6,
        "broker_cpu_us_per_event": _per_event_us(broker_cpu, expected.events),
    }


def _per_event_us(cpu_seconds: float | None, events: int) -> float | None:
    return None if cpu_seconds is None else cpu_seconds / events * 1e6


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _wait_for_records(
    bootstrap: str, topic: str, expected: int, peer: QuixPeer, first_file: Path,
    broker: LocalBroker,
) -> tuple[int, float]:  # fmt: skip
    """Records in ``topic`` once it holds ``expected`` (or nothing came for 30 s), and the
    broker's CPU seconds when the peer had read its first event (within 0.2 s).

    One client for the whole wait, asking the end offsets every 0.2 s (the
    product's rows ask its /stats as often).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    progress = Progress(expected, "quix peer (joined records)")
    started = time.monotonic()
    joined, last_change = 0, started
    broker_cpu_at_first = 0.0
    tps: list[TopicPartition] = []
    try:
        while True:
            if peer.process.poll() is not None:
                raise SystemExit(f"the Quix peer died; see {peer.log}")
            if not first_file.exists():
                last_change = time.monotonic()
                if last_change - started > 300:
                    raise SystemExit(f"the Quix peer read nothing in 300 s; see {peer.log}")
            elif not tps:  # the peer creates its output topic when it starts
                broker_cpu_at_first = broker.cpu_seconds() if broker.pid else 0.0
                await consumer._client.force_metadata_update()
                partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in partitions]
            else:
                now = sum((await consumer.end_offsets(tps)).values())
                if now != joined:
                    joined, last_change = now, time.monotonic()
                    progress.update(joined)
                if joined >= expected:
                    break
                if time.monotonic() - last_change > 30:
                    log(f"only {joined} of {expected} joins arrived from the Quix peer")
                    break
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()
    progress.finish(joined)
    return joined, broker_cpu_at_first


class LocalBroker:
    """The broker ``make`` started (kafka/kafka.sh, $KAFKA_DATA_DIR): its CPU time and log bytes."""

    def __init__(self) -> None:
        self.data_dir = (REPO / os.environ.get("KAFKA_DATA_DIR", ".kafka")).resolve()
        try:
            self.pid: int | None = int((self.data_dir / "broker.pid").read_text().strip())
            Path(f"/proc/{self.pid}/stat").read_text()
        except (OSError, ValueError):
            self.pid = None  # a remote cluster (KAFKA_BOOTSTRAP_SERVERS): not measured

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def pin(self, cpus: str) -> None:
        """Let every thread of the broker run only on ``cpus`` (taskset's list: ``0``, ``0-1``)."""
        subprocess.run(["taskset", "-a", "-cp", cpus, str(self.pid)], check=True,
                       capture_output=True)  # fmt: skip

    def log_bytes(self, topic_prefix: str) -> int:
        """Bytes of the record batches of every topic whose name starts with ``topic_prefix``."""
        return sum(
            segment.stat().st_size
            for segment in (self.data_dir / "logs").glob(f"{topic_prefix}*/*.log")
        )


def run_pinned(
    bootstrap: str, source: str, workload: Workload, partitions: int, work: Path
) -> dict[str, Any] | None:
    """One and two workers with the broker pinned to CPU 0 and the workers to the others
    (issue 21): what a worker costs per event without the broker on its core, and
    whether two scale where they have their own cores. None without a local broker
    or with one CPU. On a two-CPU machine both workers share CPU 1: the scaling
    shown is then only what a second worker costs on one core (standby
    replication), not what a second core gives."""
    broker = LocalBroker()
    machine_cpus = sorted(os.sched_getaffinity(0))
    if broker.pid is None or len(machine_cpus) < 2 or shutil.which("taskset") is None:
        log("pinned runs: no local broker, one CPU, or no taskset: skipped")
        return None
    broker_cpu, worker_cpus = machine_cpus[0], frozenset(machine_cpus[1:])
    broker.pin(str(broker_cpu))
    runs: dict[str, dict[str, Any]] = {}
    try:
        for workers in (1, 2):
            log(f"pipeline, {workers} worker(s), broker on CPU {broker_cpu}, workers on CPUs "
                f"{','.join(map(str, sorted(worker_cpus)))}")  # fmt: skip
            runs[str(workers)] = run_pipeline(
                bootstrap, source, workload, workers, partitions, work,
                label="-pinned", cpus=worker_cpus,
            )  # fmt: skip
    finally:
        broker.pin(",".join(map(str, machine_cpus)))
    one, two = runs["1"], runs["2"]
    return {
        "broker_cpu": broker_cpu,
        "worker_cpus": sorted(worker_cpus),
        **{
            f"workers_{n}": {
                "input_eps": round(run["input_eps"]),
                "worker_cpu_us_per_event": round(run["worker_cpu_us_per_event"], 1),
                "missing_joins": run["missing_joins"],
            }
            for n, run in runs.items()
        },
        "scaling": round(two["input_eps"] / one["input_eps"], 2),
    }


def no_rules_folder(work: Path) -> Path:
    """An empty folder of Sigma rules: SYSMON_RULES with nothing to match."""
    folder = work / "no-rules"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_sigma(
    bootstrap: str, source: str, workload: Workload, partitions: int, work: Path,
    default: dict[str, Any], rounds: int,
) -> dict[str, Any]:  # fmt: skip
    """One worker with no rules, the default rules (``default``: the main run) and the
    default rules plus SigmaHQ's Windows corpus (../shared/sigma); and the rules' CPU
    per event measured in process (bench/rules.py).

    No rules and the corpus run ``rounds`` times each, alternating, and the
    fastest run of each counts (its CPU per event with it): two runs of one
    configuration here differ by up to 25 % (2026-12-01: no rules 7,882 and
    9,281 events/s, the corpus 5,762 and 7,311), more than the rules cost, and
    what slows a run (the broker's own work, the other core's load) never
    speeds one. Every round's figure is in the JSON.
    """
    runs: dict[str, list[dict[str, Any]]] = {"no_rules": [], "sigmahq_windows": []}
    corpus = rules_bench.CORPUS.is_dir()
    if not corpus:
        log(f"{rules_bench.CORPUS} not found: the SigmaHQ corpus run is skipped")
    for round_ in range(1, rounds + 1):
        log(f"pipeline, one worker, cold start, no Sigma rules (SYSMON_RULES: an empty folder),"
            f" round {round_} of {rounds}")  # fmt: skip
        runs["no_rules"].append(run_pipeline(
            bootstrap, source, workload, 1, partitions, work,
            extra_env={"SYSMON_RULES": str(no_rules_folder(work))}, label=f"-no-rules-{round_}",
        ))  # fmt: skip
        if corpus:
            log(f"pipeline, one worker, cold start, SYSMON_RULES=default,{rules_bench.CORPUS},"
                f" round {round_} of {rounds}")  # fmt: skip
            runs["sigmahq_windows"].append(run_pipeline(
                bootstrap, source, workload, 1, partitions, work,
                extra_env={"SYSMON_RULES": f"default,{rules_bench.CORPUS}"},
                label=f"-sigmahq-{round_}",
            ))  # fmt: skip
    best = {name: max(done, key=lambda run: run["input_eps"]) for name, done in runs.items()
            if done}  # fmt: skip
    best["default"] = default
    log("the rules' CPU per event, in process (bench/rules.py)")
    bare = best["no_rules"]["input_eps"]
    result: dict[str, Any] = {
        name: {
            "input_eps": round(run["input_eps"]),
            "ratio_to_no_rules": round(run["input_eps"] / bare, 2),
            "worker_cpu_us_per_event": round(run["worker_cpu_us_per_event"], 1),
            "missing_joins": run["missing_joins"],
            "alerts": run.get("alerts"),
            "alert_matches": run.get("alert_matches"),
            "rounds_input_eps": [round(r["input_eps"]) for r in runs.get(name, [run])],
        }
        for name, run in best.items()
    }
    result["in_process"] = rules_bench.measure()
    return result


def run_codecs(
    bootstrap: str, input_topic: str, workload: Workload, partitions: int, work: Path
) -> dict[str, dict[str, float]] | None:
    """One worker per SYSMON_COMPRESSION codec over the same input, with the broker's cost.

    Broker CPU and disk are per input event, for what the worker writes
    (every topic of its app id: re-keying, process tree, outputs,
    changelogs); the input topic is the same for all and not counted.
    """
    from sysmon_faust.settings import COMPRESSION_TYPES

    broker = LocalBroker()
    if broker.pid is None:
        log("codecs: the broker is not the local one (no broker.pid): skipped")
        return None
    figures = {}
    for codec in COMPRESSION_TYPES:
        log(f"pipeline, one worker, SYSMON_COMPRESSION={codec}")
        cpu_before = broker.cpu_seconds()
        run = run_pipeline(
            bootstrap, input_topic, workload, 1, partitions, work,
            extra_env={"SYSMON_COMPRESSION": codec}, label=f"-{codec}",
        )  # fmt: skip
        events = workload.expected.events
        figures[codec] = {
            "input_eps": round(run["input_eps"]),
            "broker_cpu_us_per_event": round((broker.cpu_seconds() - cpu_before) / events * 1e6, 1),
            "disk_bytes_per_event": round(broker.log_bytes(run["app_id"]) / events, 1),
            "worker_cpu_us_per_event": round(run["worker_cpu_us_per_event"], 1),
            "missing_joins": run["missing_joins"],
        }
    return figures


def baseline_worktree(rev: str) -> Path:
    """A detached git worktree of ``rev``, for workers that run that code (PYTHONPATH).

    A revision that compiles its core (a ``setup.py``) is built as a wheel and
    unpacked beside the worktree, so that its workers run it compiled, as
    this code's do; the folder returned is then that one.
    """
    import tempfile
    import zipfile

    where = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / rev
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(where), rev],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    if not (where / "setup.py").is_file():
        return where
    log(f"baseline {rev}: compiling its core (a wheel, about 2 minutes)")
    wheels = where.parent / "wheel"
    build = subprocess.run(
        [str(FAUST.parent / "pip"), "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if build.returncode != 0:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)],
                       cwd=REPO, capture_output=True)  # fmt: skip
        output = (build.stdout + build.stderr).splitlines()
        errors = [line.strip() for line in output if ": error: " in line]
        raise SystemExit(
            f"bench: {rev} did not build ({len(errors)} type errors, e.g. "
            f"{errors[0] if errors else build.stderr.strip()[-300:]}); a revision before "
            "72be497 does not build against confluent-kafka 2.16's types: see "
            "docs/benchmark.md (--baseline-rev)"
        )
    built = where.parent / "built"
    for wheel in wheels.glob("*.whl"):
        zipfile.ZipFile(wheel).extractall(built)
    return built


def run_baseline(
    bootstrap: str, input_topic: str, workload: Workload, partitions: int, work: Path, rev: str,
    rounds: int = 3,
) -> dict[str, Any]:  # fmt: skip
    """Events/s of one worker of this code and of ``rev``, alternating, ``rounds`` each."""
    tree = baseline_worktree(rev)
    now: list[float] = []
    before: list[float] = []
    now_cpu: list[float] = []
    before_cpu: list[float] = []
    try:
        for round_ in range(1, rounds + 1):
            # Which goes first alternates: the second of a pair reads the
            # input from a warmer broker page cache.
            order = ("now", "before") if round_ % 2 else ("before", "now")
            for which in order:
                log(f"pipeline, one worker, {'this code' if which == 'now' else rev} "
                    f"(round {round_})")  # fmt: skip
                run = run_pipeline(
                    bootstrap, input_topic, workload, 1, partitions, work,
                    extra_env={"PYTHONPATH": str(tree)} if which == "before" else None,
                    label=f"-{which}{round_}",
                )  # fmt: skip
                (now if which == "now" else before).append(run["input_eps"])
                (now_cpu if which == "now" else before_cpu).append(run["worker_cpu_us_per_event"])
    finally:
        # The worktree itself (``tree`` may be the wheel unpacked beside it).
        subprocess.run(["git", "worktree", "remove", "--force", str(tree.parent / rev)],
                       cwd=REPO, capture_output=True)  # fmt: skip
    return {
        "rev": rev,
        "now_eps": [round(x) for x in now],
        "before_eps": [round(x) for x in before],
        "ratio": round(sum(now) / sum(before), 3),
        "now_cpu_us_per_event": [round(x, 1) for x in now_cpu],
        "before_cpu_us_per_event": [round(x, 1) for x in before_cpu],
    }


def run_latency(
    bootstrap: str, rate: float, seconds: float, partitions: int, work: Path
) -> dict[str, float]:
    """Latency = enriched record seen by a consumer - its connect sent to the input topic.

    The events are generated before the clock starts, so the generator does not
    compete with the worker for the two cores; each connect's send time is
    remembered under (process_guid, event time), which its enriched record carries.
    """
    topic = bench_name("latency")
    asyncio.run(create_topic(bootstrap, topic, partitions))
    app_id = bench_name("lat")
    env = pipeline_env(bootstrap, app_id, topic, work / app_id, partitions)
    events = list(Workload(WorkloadConfig(events=int(rate * seconds), hosts=200, seed=11)))
    worker = Worker(env, work / app_id)
    try:
        while not (worker.stats() or {}).get("rebalances"):
            time.sleep(0.5)
        latencies = asyncio.run(
            _measure_latency(bootstrap, env["SYSMON_TOPIC_JOIN"], topic, events, rate)
        )
    finally:
        worker.stop()
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else -1
        )

    return {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "samples": len(latencies)}


def _connect_id(fields: dict[str, Any]) -> tuple[Any, Any]:
    return fields.get("process_guid"), fields.get("event_date_creation")


async def _measure_latency(
    bootstrap: str, join_topic: str, input_topic: str, events: list[GeneratedEvent], rate: float
) -> list[float]:
    connect_ids = []  # per event: the id its enriched record will carry, if a connect
    for event in events:
        outcome = normalize(event.value)
        is_connect = isinstance(outcome, NormalizedEvent) and outcome.event_id == NETWORK_CONNECT
        connect_ids.append(_connect_id(outcome.fields) if is_connect else None)  # type: ignore[union-attr]
    sent_at: dict[tuple[Any, Any], float] = {}
    # A short fetch wait, so the measuring consumer adds little of its own.
    consumer = AIOKafkaConsumer(
        join_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    latencies: list[float] = []
    producing = asyncio.create_task(
        _send_at_rate(bootstrap, input_topic, events, connect_ids, rate, sent_at)
    )
    started = time.monotonic()
    idle_since = None
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            # Steady state only: the first seconds pay for metadata lookups
            # and connections to topics the worker writes to for the first time.
            warm = now - started >= LATENCY_WARMUP_SECONDS
            for messages in batch.values():
                for m in messages:
                    sent = sent_at.get(_connect_id(json.loads(m.value)))
                    if warm and sent is not None:
                        latencies.append(now - sent)
            if producing.done():
                idle_since = idle_since or time.monotonic()
                if batch:
                    idle_since = time.monotonic()
                if time.monotonic() - idle_since > 10:
                    break
    finally:
        await consumer.stop()
    await producing
    return latencies


async def _send_at_rate(
    bootstrap: str,
    topic: str,
    events: list[GeneratedEvent],
    connect_ids: list[tuple[Any, Any] | None],
    rate: float,
    sent_at: dict[tuple[Any, Any], float],
) -> None:
    """Winlogbeat at a steady ``rate``: small batches, each sent as soon as it is due."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    progress = Progress(len(events), f"latency at {rate:,.0f} events/s")
    started = time.monotonic()
    try:
        for n, event in enumerate(events, 1):
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            connect_id = connect_ids[n - 1]
            if connect_id is not None:
                sent_at[connect_id] = time.monotonic()
            await producer.send(topic, event.value, key=event.host)
            progress.update(n)
        await producer.flush()
    finally:
        await producer.stop()
    progress.finish(len(events))


def run_state(bootstrap: str, processes: int, partitions: int, work: Path) -> dict[str, Any]:
    """Peak RSS and on-disk state of a worker whose table holds ``processes`` rows.

    The rows are written straight to the re-keying topic, in the intake's
    batch format, and their parent links to the process-tree topic, as the
    intake writes them: the intake's speed is measured above, and going
    through it would make a 1 M-row fill take most of the run. So the figures
    include the worker's copy of the process tree. The records are built
    before the worker starts and sent by librdkafka once it is assigned, far
    faster than it reads them: the rate is the worker's (:func:`_send_table_fill`).
    """
    topic = bench_name("state-input")
    asyncio.run(create_topic(bootstrap, topic, partitions))
    app_id = bench_name("state")
    env = pipeline_env(bootstrap, app_id, topic, work / app_id, partitions)
    chunks = _table_fill_records(processes, partitions)
    worker = Worker(env, work / app_id)
    progress = Progress(processes, "table fill")
    try:
        while not (worker.stats() or {}).get("rebalances"):
            time.sleep(0.5)
        fill_started, cpu_at_start = time.monotonic(), worker.cpu_seconds()
        threads_at_start = worker.thread_cpu()
        failed: list[BaseException] = []
        filling = threading.Thread(
            target=_send_table_fill, args=(bootstrap, app_id, chunks, failed)
        )
        filling.start()
        while True:
            if failed:
                raise SystemExit(f"table fill: {failed[0]!r}") from failed[0]
            stats = worker.stats() or {}
            created = stats.get("process_creates", 0)
            progress.update(created)
            if created >= processes and stats.get("process_tree_records_read", 0) >= processes:
                break
            if worker.process.poll() is not None:
                raise SystemExit(f"worker died; see {worker.log}")
            time.sleep(1)
        fill_seconds = time.monotonic() - fill_started
        fill_cpu = worker.cpu_seconds() - cpu_at_start
        threads_at_end = worker.thread_cpu()
        filling.join()
        if failed:  # the last records' reports come after the worker may have read the rest
            raise SystemExit(f"table fill: {failed[0]!r}") from failed[0]
        del chunks
        progress.finish(processes)
        rss = worker.peak_rss_mb()
    finally:
        worker.stop()
    state_bytes = sum(f.stat().st_size for f in (work / app_id).rglob("*") if f.is_file())
    recovery = _recover_after_wipe(env, work / app_id, worker.port, processes)
    return {
        "rss_mb": rss,
        "state_mb": state_bytes / 1024 / 1024,
        "processes": processes,
        # Every record a creation, straight into the join (issue 21: >= 15,000/s).
        "creations_per_second": processes / fill_seconds,
        "worker_cpu_us_per_creation": fill_cpu / processes * 1e6,
        # Where the creation path's CPU goes (issue 21: row write, changelog send,
        # tree link, TTL entry): the event loop's Python, RocksDB compacting and
        # flushing what it wrote, librdkafka compressing and sending it.
        "worker_cpu_us_per_creation_by_thread": per_item_by_kind(
            [threads_at_start], [threads_at_end], processes
        ),
        **recovery,
    }


def per_item_by_kind(
    start: list[dict[int, tuple[str, float]]],
    end: list[dict[int, tuple[str, float]]],
    items: int,
) -> dict[str, float]:
    """µs of CPU per item (an input event, a creation) by kind of thread
    (:meth:`Worker.thread_cpu`) between two readings of each worker: each thread's own
    CPU since the first (all of it for a thread started since); a thread that ended
    between them is not counted."""
    spent = {"python": 0.0, "rocksdb": 0.0, "librdkafka": 0.0}
    for before, after in zip(start, end, strict=True):
        for tid, (kind, seconds) in after.items():
            spent[kind] += seconds - before.get(tid, (kind, 0.0))[1]
    return {kind: round(seconds / items * 1e6, 1) for kind, seconds in spent.items()}


#: What run_state measures beyond memory and disk (the JSON's ``table_fill``).
TABLE_FILL_FIGURES = (
    "creations_per_second", "worker_cpu_us_per_creation", "recovery_seconds",
    "recovery_changelog_records", "recovery_records_per_second",
)  # fmt: skip


def _recover_after_wipe(env: dict[str, str], data: Path, port: int, rows: int) -> dict[str, Any]:
    """The state deleted, the worker started again: seconds until /health is 200 with every
    row back, and its recovery's changelog records (``/health``'s ``recovery``)."""
    log(f"state: {data} deleted, the worker rebuilds {rows:,} rows from the changelogs")
    shutil.rmtree(data)
    started = time.monotonic()
    worker = Worker(env, data, port)
    try:
        while True:
            if worker.process.poll() is not None:
                raise SystemExit(f"worker died; see {worker.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    health = json.loads(answer.read())
            except OSError:  # 503 while it recovers, or not listening yet
                health = None
            if health and (worker.stats() or {}).get("table_rows") == rows:
                break
            if time.monotonic() - started > 900:
                raise SystemExit(f"no recovery in 900 s; see {worker.log}")
            time.sleep(0.5)
        seconds = time.monotonic() - started
    finally:
        worker.stop()
    records = health["recovery"]["records_total"]
    return {
        "recovery_seconds": seconds,
        "recovery_changelog_records": records,
        "recovery_records_per_second": records / seconds,
    }


#: The table fill's records for 5,000 creations: the re-keying topic's batch records as
#: (partition, value), then the process-tree topic's links as (partition, key, value).
FillChunk = tuple[list[tuple[int, bytes]], list[tuple[int, bytes, bytes]]]


def _table_fill_records(processes: int, partitions: int) -> list[FillChunk]:
    """The table fill's records, built before its clock starts: what the intake would have
    written for ``processes`` creations (every event a table row), 5,000 at a time."""
    config = engine_bench.creations_only(processes)
    batches, chunks = BatchBuilder(), []
    links: list[tuple[int, bytes, bytes]] = []
    progress = Progress(processes, "table fill: building its records")
    for n, event in enumerate(Workload(config), 1):
        outcome = normalize(event.value)
        assert isinstance(outcome, NormalizedEvent) and outcome.process_guid
        key = outcome.process_guid.encode()
        partition = key_partition(key, partitions)
        batches.add(partition, orjson.dumps(event_record(outcome)))
        links.append((partition, key, encode_link(outcome.fields)))
        if n % 5_000 == 0 or n == processes:
            chunks.append((list(batches.finish()), links))
            links = []
            progress.update(n)
    progress.finish(processes)
    return chunks


def _send_table_fill(
    bootstrap: str, app_id: str, chunks: list[FillChunk], failed: list[BaseException]
) -> None:
    """The table fill's records written by librdkafka as fast as it sends them, in a thread of
    its own (what stops it goes to ``failed``).

    Built and sent in one aiokafka loop as the worker read them, the records came at
    13,640 creations/s with no worker running, 69 µs of this script's CPU each: on two
    cores the fill measured its own producer as much as the worker. All at once, as a
    worker's intake writes the links of a backlog of creations: it reads them faster than
    the join handles them, and nothing in it waits for the join.
    """
    try:
        _send_chunks(bootstrap, app_id, chunks)
    except BaseException as exc:
        failed.append(exc)


def _send_chunks(bootstrap: str, app_id: str, chunks: list[FillChunk]) -> None:
    # A record not written in 60 s fails the fill (librdkafka's default: 300 s).
    producer = confluent_kafka.Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1024 * 1024,
        "acks": 1, "message.timeout.ms": 60_000,
    })  # fmt: skip
    failed: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(str(error))

    topic, tree_topic = f"{app_id}-events-by-process-guid", f"{app_id}-process-tree"
    for records, links in chunks:
        for partition, value in records:
            _produce(producer, topic, value, None, partition, delivered, failed)
        for partition, key, link in links:
            _produce(producer, tree_topic, link, key, partition, delivered, failed)
    producer.flush()
    _raise_if_failed(failed)


def _produce(
    producer: Any, topic: str, value: bytes, key: bytes | None, partition: int,
    delivered: Callable[[Any, Any], None], failed: list[str],
) -> None:  # fmt: skip
    while True:
        try:
            producer.produce(topic, value, key, partition=partition, on_delivery=delivered)
            return
        except BufferError:  # librdkafka's queue is full: let it send
            producer.poll(0.1)
            _raise_if_failed(failed)


def _raise_if_failed(failed: list[str]) -> None:
    if failed:
        raise RuntimeError(f"{len(failed)} records not written ({failed[0]})")


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def run_enrichment(
    bootstrap: str, source: str, workload: Workload, partitions: int, work: Path,
    every_type: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One worker enriching only Sysmon 1/3/5 beside ``every_type`` (the main run: the
    default, every Sysmon type that names a process, to sysmon-enriched)."""
    log("pipeline, one worker, cold start, SYSMON_ENRICH_EVENTS=1,3,5 (only what HELK joined)")
    only = run_pipeline(
        bootstrap, source, workload, 1, partitions, work,
        extra_env={"SYSMON_ENRICH_EVENTS": "1,3,5"}, label="-enrich-135",
    )  # fmt: skip
    return {
        name: {
            "input_eps": round(run["input_eps"]),
            "worker_cpu_us_per_event": round(run["worker_cpu_us_per_event"], 1),
            "worker_cpu_us_per_event_by_thread": run["worker_cpu_us_per_event_by_thread"],
            "enriched_records": run["enriched_records"],
            "missing_joins": run["missing_joins"],
        }
        for name, run in (("only_1_3_5", only), ("every_type", every_type))
    } | {"ratio_every_type_to_1_3_5": round(every_type["input_eps"] / only["input_eps"], 2)}


def plumbing(
    floor: dict[str, Any] | None, enrichment: dict[str, Any] | None
) -> dict[str, float] | None:
    """A worker's CPU per input event beyond the engine alone (bench/engine.py), enriching
    only 1, 3, 5 and every type: what Kafka, Faust, RocksDB and the event loop cost it."""
    if floor is None or enrichment is None:
        return None
    return {
        name: round(
            enrichment[name]["worker_cpu_us_per_event"] - floor[name]["total_us_per_event"], 1
        )
        for name in ("only_1_3_5", "every_type")
    }


def fill_plumbing(floor: dict[str, Any] | None, state: dict[str, Any] | None) -> float | None:
    """The table fill's worker CPU per creation beyond the steps it runs in the engine alone
    (bench/engine.py, ``FILL_STEPS``: its records come normalized and re-keyed)."""
    if floor is None or state is None:
        return None
    steps = floor["creations_only"]["fill_steps_us_per_creation"]
    return round(state["worker_cpu_us_per_creation"] - steps, 1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--table-processes", type=int, default=1_000_000)
    parser.add_argument(
        "--baseline-rev", metavar="REV",
        help="also run one worker of git revision REV beside this code's, alternating",
    )  # fmt: skip
    parser.add_argument("--baseline-rounds", type=int, default=3, metavar="N")
    parser.add_argument(
        "--sigma-rounds", type=int, default=3, metavar="N",
        help="runs each of no rules and SigmaHQ's corpus, alternating; the fastest counts",
    )  # fmt: skip
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of: quix,two,pinned,exactly_once,no_ancestry,sigma,enrichment,"
        "guid_without_time,codecs,latency,state,normalizer,engine",
    )
    args = parser.parse_args()
    return measure_then_delete_topics(measure, args)


def measure_then_delete_topics(
    measure: Callable[[argparse.Namespace, str], int], args: argparse.Namespace
) -> int:
    """Run ``measure`` against the broker, then delete every topic the run created."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    try:
        return measure(args, bootstrap)
    finally:
        log(f"deleted this run's {asyncio.run(delete_run_topics(bootstrap))} topics")


def measure(args: argparse.Namespace, bootstrap: str) -> int:
    skip = set(filter(None, args.skip.split(",")))
    quix_version = quixstreams_version() if "quix" not in skip else None
    if "quix" not in skip and quix_version is None:
        raise SystemExit(
            f"make bench: no quixstreams at {QUIX_PYTHON} (make bench makes that venv; "
            "BENCH_QUIX_PYTHON names another); or --skip quix"
        )
    work = REPO / "bench" / "work"
    shutil.rmtree(work, ignore_errors=True)

    source = bench_name("input")
    asyncio.run(create_topic(bootstrap, source, args.partitions))
    config = WorkloadConfig(events=args.events, hosts=200)
    log(f"filling {source} with {args.events:,} generated events over {args.partitions} partitions")
    workload = asyncio.run(fill(bootstrap, source, config))

    log("passthrough ceiling (aiokafka consume -> produce)")
    target = bench_name("passthrough")
    asyncio.run(create_topic(bootstrap, target, args.partitions))
    passthrough_eps = asyncio.run(passthrough(bootstrap, source, target, workload.expected.events))
    log("raw consume ceiling (librdkafka drains the input topic; the best of three)")
    # A ceiling: the best of three, the first after a cold client and broker
    # path ran at 40-60 % of the third here (90 k, 130 k, 224 k events/s).
    drain_eps = max(raw_drain(bootstrap, source, workload.expected.events) for _ in range(3))

    log("pipeline, one worker, cold start")
    one = run_pipeline(bootstrap, source, workload, 1, args.partitions, work)
    if "quix" not in skip:
        log(f"Quix Streams {quix_version} peer: the join alone (bench/quix_peer.py)")
    quix = run_quix(bootstrap, source, workload, work) if "quix" not in skip else None
    two = (
        run_pipeline(bootstrap, source, workload, 2, args.partitions, work)
        if "two" not in skip
        else None
    )
    pinned = (
        run_pinned(bootstrap, source, workload, args.partitions, work)
        if "pinned" not in skip
        else None
    )
    if "exactly_once" not in skip:
        log("pipeline, one worker, cold start, SYSMON_PROCESSING_GUARANTEE=exactly_once")
    eos = (
        run_pipeline(bootstrap, source, workload, 1, args.partitions, work, "exactly_once")
        if "exactly_once" not in skip
        else None
    )
    if "no_ancestry" not in skip:
        log("pipeline, one worker, cold start, no ancestry and no rules (what they cost)")
        bare_env = {"SYSMON_ANCESTRY_DEPTH": "0", "SYSMON_RULES": str(no_rules_folder(work))}
    bare = (
        run_pipeline(
            bootstrap, source, workload, 1, args.partitions, work, extra_env=bare_env,
            label="-bare",
        )
        if "no_ancestry" not in skip
        else None
    )  # fmt: skip
    sigma = (
        run_sigma(bootstrap, source, workload, args.partitions, work, one, args.sigma_rounds)
        if ("sigma" not in skip)
        else None
    )
    enrichment = (
        run_enrichment(bootstrap, source, workload, args.partitions, work, one)
        if "enrichment" not in skip
        else None
    )
    if "guid_without_time" not in skip:
        # The same stream, but no GUID carries a start time (random 2nd/3rd
        # groups): every ancestor above the stream's first processes is
        # missing and its time unbelievable, every unjoinable connect waits
        # out the grace. Issue 15: such input must not stall the join.
        log("pipeline, one worker, the same stream with GUIDs that carry no start time")
        timeless_source = bench_name("input-guid-without-time")
        asyncio.run(create_topic(bootstrap, timeless_source, args.partitions))
        timeless_config = dataclasses.replace(config, guid_start_times=False)
        timeless_workload = asyncio.run(fill(bootstrap, timeless_source, timeless_config))
    timeless = (
        run_pipeline(
            bootstrap, timeless_source, timeless_workload, 1, args.partitions, work,
            label="-timeless",
        )
        if "guid_without_time" not in skip
        else None
    )  # fmt: skip
    baseline = (
        run_baseline(
            bootstrap,
            source,
            workload,
            args.partitions,
            work,
            args.baseline_rev,
            args.baseline_rounds,
        )
        if args.baseline_rev
        else None
    )
    codecs = (
        run_codecs(bootstrap, source, workload, args.partitions, work)
        if "codecs" not in skip
        else None
    )
    if "normalizer" not in skip:
        log("normalizer alone, now and before issue 16 (bench/normalizer.py)")
    normalizer_cost = normalizer.measure() if "normalizer" not in skip else None
    if "engine" not in skip:
        log("the engine alone, in process: only 1, 3, 5 and every type (bench/engine.py)")
    engine_floor = engine_bench.measure() if "engine" not in skip else None
    latency = (
        run_latency(bootstrap, one["input_eps"] / 2, args.latency_seconds, args.partitions, work)
        if "latency" not in skip
        else None
    )
    state = (
        run_state(bootstrap, args.table_processes, args.partitions, work)
        if "state" not in skip
        else None
    )

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench " + " ".join(sys.argv[1:]),
        "events": workload.expected.events,
        "expected_joins": workload.expected.joined_in_order,
        "partitions": args.partitions,
        "passthrough_eps": round(passthrough_eps),
        "raw_drain_eps": round(drain_eps),
        "ratio_to_raw_drain": round(one["input_eps"] / drain_eps, 3),
        "pipeline_eps": round(one["input_eps"]),
        "enriched_eps": round(one["enriched_eps"]),
        "ratio": round(one["input_eps"] / passthrough_eps, 3),
        "startup_seconds": round(one["startup_seconds"], 1),
        "missing_joins": one["missing_joins"],
        "quix": (
            {
                "input_eps": round(quix["input_eps"]),
                "enriched_eps": round(quix["enriched_eps"]),
                "seconds": round(quix["seconds"], 1),
                "startup_seconds": round(quix["startup_seconds"], 1),
                "process_cpu_us_per_event": round(quix["process_cpu_us_per_event"], 1),
                "broker_cpu_us_per_event": _rounded(quix["broker_cpu_us_per_event"]),
                "rss_mb": round(quix["rss_mb"], 1),
                "joined_records": quix["joined_records"],
                "missing_joins": quix["missing_joins"],
            }
            if quix
            else None
        ),
        # The product's one worker (at_least_once, every feature on) / the Quix peer.
        "ratio_to_quix": round(one["input_eps"] / quix["input_eps"], 2) if quix else None,
        # The same, with the product enriching only what the peer joins
        # (SYSMON_ENRICH_EVENTS=1,3,5; ancestry and the default rules on):
        # issue 21's "the same work".
        "ratio_to_quix_same_work": (
            round(enrichment["only_1_3_5"]["input_eps"] / quix["input_eps"], 2)
            if quix and enrichment
            else None
        ),
        "two_worker_eps": round(two["input_eps"]) if two else None,
        "two_worker_missing_joins": two["missing_joins"] if two else None,
        "scaling": round(two["input_eps"] / one["input_eps"], 2) if two else None,
        "pinned": pinned,
        "exactly_once_eps": round(eos["input_eps"]) if eos else None,
        "exactly_once_missing_joins": eos["missing_joins"] if eos else None,
        "exactly_once_ratio_to_at_least_once": (
            round(eos["input_eps"] / one["input_eps"], 2) if eos else None
        ),
        "no_ancestry_eps": round(bare["input_eps"]) if bare else None,
        "ancestry_and_rules_ratio": (
            round(one["input_eps"] / bare["input_eps"], 2) if bare else None
        ),
        "sigma": sigma,
        "enrichment": enrichment,
        "guid_without_time_eps": round(timeless["input_eps"]) if timeless else None,
        "guid_without_time_missing_joins": timeless["missing_joins"] if timeless else None,
        "guid_without_time_ratio": (
            round(timeless["input_eps"] / one["input_eps"], 2) if timeless else None
        ),
        "cpu": {
            name: {
                "machine_busy_cores": round(run["machine_busy_cores"], 2),
                "worker_cpu_us_per_event": round(run["worker_cpu_us_per_event"], 1),
                "worker_cpu_us_per_event_by_thread": run["worker_cpu_us_per_event_by_thread"],
                "broker_cpu_us_per_event": _rounded(run["broker_cpu_us_per_event"]),
                "ancestry_waits": run["ancestry_waits"],
                "ancestry_wait_timeouts": run["ancestry_wait_timeouts"],
                "missing_joins": run["missing_joins"],
            }
            for name, run in (
                ("one_worker", one),
                ("two_workers", two),
                ("exactly_once", eos),
                ("no_ancestry", bare),
                ("guid_without_time", timeless),
            )
            if run
        },
        "codecs": codecs,
        "baseline": baseline,
        "normalizer": normalizer_cost,
        "engine_alone": engine_floor
        | {
            "plumbing_us_per_event": plumbing(engine_floor, enrichment),
            "fill_plumbing_us_per_creation": fill_plumbing(engine_floor, state),
        }
        if engine_floor
        else None,
        "latency_ms": {k: round(v, 1) for k, v in latency.items()} if latency else None,
        "rss_mb": round(state["rss_mb"], 1) if state else round(one["rss_mb"], 1),
        "state_mb": round(state["state_mb"], 1) if state else None,
        "table_processes": state["processes"] if state else None,
        "table_fill": {key: round(state[key], 1) for key in TABLE_FILL_FIGURES}
        | {"worker_cpu_us_per_creation_by_thread": state["worker_cpu_us_per_creation_by_thread"]}
        if state
        else None,
        "versions": {
            "faust-streaming": faust.__version__,
            "aiokafka": aiokafka.__version__,
            "quixstreams": quix_version,
            "python": platform.python_version(),
        },
        "machine": machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(result, indent=2) + "\n")
    print()
    rows = [
        ("raw consume ceiling, librdkafka drain (events/s)", result["raw_drain_eps"]),
        ("passthrough ceiling (events/s)", result["passthrough_eps"]),
        ("pipeline, 1 worker (input events/s)", result["pipeline_eps"]),
        ("  enriched records/s", result["enriched_eps"]),
        ("  ratio to ceiling", result["ratio"]),
        ("  ratio to the raw consume ceiling", result["ratio_to_raw_drain"]),
        ("  cold start to first record (s)", result["startup_seconds"]),
        ("Quix Streams peer, the join alone (input events/s)",
         result["quix"]["input_eps"] if quix else None),
        ("  ratio product 1 worker / Quix peer", result["ratio_to_quix"]),
        ("  ratio product enriching only 1,3,5 (the peer's work) / Quix peer",
         result["ratio_to_quix_same_work"]),
        ("  CPU per input event (µs): product / Quix peer",
         f"{round(one['worker_cpu_us_per_event'], 1)} / "
         f"{result['quix']['process_cpu_us_per_event']}" if quix else None),
        ("  broker CPU per input event (µs): product / Quix peer",
         f"{_rounded(one['broker_cpu_us_per_event'])} / "
         f"{result['quix']['broker_cpu_us_per_event']}" if quix else None),
        ("  Quix peer: missing joins, cold start (s)",
         f"{quix['missing_joins']}, {round(quix['startup_seconds'], 1)}" if quix else None),
        ("pipeline, 2 workers (input events/s)", result["two_worker_eps"]),
        ("  scaling factor", result["scaling"]),
        ("broker pinned to one CPU, workers to the rest: 1 / 2 workers (events/s)",
         f"{pinned['workers_1']['input_eps']:,} / {pinned['workers_2']['input_eps']:,}"
         if pinned else None),
        ("  worker CPU per input event, 1 / 2 workers (µs); scaling",
         f"{pinned['workers_1']['worker_cpu_us_per_event']} / "
         f"{pinned['workers_2']['worker_cpu_us_per_event']}; {pinned['scaling']}"
         if pinned else None),
        ("pipeline, 1 worker, exactly_once (events/s)", result["exactly_once_eps"]),
        ("  ratio to at_least_once", result["exactly_once_ratio_to_at_least_once"]),
        ("pipeline, 1 worker, no ancestry, no rules", result["no_ancestry_eps"]),
        ("  ratio with them to without", result["ancestry_and_rules_ratio"]),
        ("1 worker: no rules / the 7 default / + SigmaHQ's (best of rounds)",
         " / ".join(f"{sigma[k]['input_eps']:,}" for k in ("no_rules", "default", "sigmahq_windows")
                    if k in sigma) if sigma else None),
        # Named, not only ordered: the default rules' ratio, printed first, was
        # once reported as SigmaHQ's (docs/benchmark.md, the 19:28 run of 12-04).
        ("  ratio to no rules (goal for SigmaHQ's: >= 0.75)",
         " / ".join(f"{name} {sigma[k]['ratio_to_no_rules']}" for k, name in
                    (("default", "the 7 default"), ("sigmahq_windows", "SigmaHQ's"))
                    if k in sigma) if sigma else None),
        ("  worker CPU per input event (µs)",
         " / ".join(str(sigma[k]["worker_cpu_us_per_event"])
                    for k in ("no_rules", "default", "sigmahq_windows") if k in sigma)
         if sigma else None),
        ("  rules' CPU per event, in process (µs)",
         " / ".join(str(sigma["in_process"][k]["rules_us_per_event"])
                    for k in ("default", "sigmahq_windows") if k in sigma["in_process"])
         if sigma else None),
        ("  alerts / matches (SigmaHQ's)",
         f"{sigma['sigmahq_windows']['alerts']} / {sigma['sigmahq_windows']['alert_matches']}"
         if sigma and "sigmahq_windows" in sigma else None),
        ("1 worker: SYSMON_ENRICH_EVENTS=1,3,5 / all (events/s)",
         f"{enrichment['only_1_3_5']['input_eps']:,} / {enrichment['every_type']['input_eps']:,}"
         if enrichment else None),
        ("  ratio all to 1,3,5 (goal >= 0.6); worker CPU µs/event",
         f"{enrichment['ratio_every_type_to_1_3_5']}; "
         f"{enrichment['only_1_3_5']['worker_cpu_us_per_event']} / "
         f"{enrichment['every_type']['worker_cpu_us_per_event']}" if enrichment else None),
        ("  of it, µs/event: Python / RocksDB's / librdkafka's threads",
         " ; ".join(" / ".join(str(v) for v in enrichment[k]["worker_cpu_us_per_event_by_thread"]
                               .values()) for k in ("only_1_3_5", "every_type"))
         if enrichment else None),
        ("  sysmon-enriched records", f"{enrichment['only_1_3_5']['enriched_records']:,} / "
         f"{enrichment['every_type']['enriched_records']:,}" if enrichment else None),
        ("pipeline, 1 worker, GUIDs without start time", result["guid_without_time_eps"]),
        ("  ratio to Sysmon-layout GUIDs", result["guid_without_time_ratio"]),
        (f"cores busy on the machine, {' / '.join(result['cpu'])}",
         " / ".join(str(c["machine_busy_cores"]) for c in result["cpu"].values())),
        (f"worker CPU per input event (µs), {' / '.join(result['cpu'])}",
         " / ".join(str(c["worker_cpu_us_per_event"]) for c in result["cpu"].values())),
        ("  of it, µs: Python / RocksDB's / librdkafka's threads, each run",
         " ; ".join(" / ".join(str(v) for v in c["worker_cpu_us_per_event_by_thread"].values())
                    for c in result["cpu"].values())),
        (f"joins that waited for an ancestor (timed out), {' / '.join(result['cpu'])}",
         " / ".join(f"{c['ancestry_waits']} ({c['ancestry_wait_timeouts']})"
                    for c in result["cpu"].values())),
        (f"missing joins, {' / '.join(result['cpu'])}",
         " / ".join(str(c["missing_joins"]) for c in result["cpu"].values())),
        *[
            (f"SYSMON_COMPRESSION={codec}: events/s; per event broker CPU µs, disk B, "
             "worker CPU µs",
             f"{c['input_eps']:,}; {c['broker_cpu_us_per_event']}, {c['disk_bytes_per_event']}, "
             f"{c['worker_cpu_us_per_event']}")
            for codec, c in (codecs or {}).items()
        ],
        (f"1 worker, this code / at {baseline['rev']} (events/s, rounds)"
         if baseline else "1 worker, this code / a baseline revision",
         f"{baseline['now_eps']} / {baseline['before_eps']}: ratio {baseline['ratio']}; "
         f"worker CPU µs/event {baseline['now_cpu_us_per_event']} / "
         f"{baseline['before_cpu_us_per_event']}" if baseline else None),
        ("normalizer µs per event: now / before issue 16 / ratio",
         f"{normalizer_cost['us_per_event']} / {normalizer_cost['baseline_us_per_event']} / "
         f"{normalizer_cost['ratio_to_baseline']}" if normalizer_cost else None),
        ("engine alone, in process, µs per input event: only 1,3,5 / all; ratio",
         f"{engine_floor['only_1_3_5']['total_us_per_event']} / "
         f"{engine_floor['every_type']['total_us_per_event']}; "
         f"{engine_floor['ratio_every_type_to_1_3_5']}" if engine_floor else None),
        ("  a worker's CPU beyond it (plumbing), µs per input event: only 1,3,5 / all",
         " / ".join(str(v) for v in (plumbing(engine_floor, enrichment) or {}).values())
         if engine_floor and enrichment else None),
        ("engine alone, creations only: µs per creation (of it, the table fill's steps)",
         f"{engine_floor['creations_only']['total_us_per_event']} "
         f"({engine_floor['creations_only']['fill_steps_us_per_creation']})"
         if engine_floor else None),
        ("  the table fill's worker CPU beyond those steps, µs per creation",
         fill_plumbing(engine_floor, state) if engine_floor and state else None),
        ("latency at half load p50/p95/p99 (ms)",
         "/".join(str(round(latency[k])) for k in ("p50", "p95", "p99")) if latency else None),
        (f"peak RSS (MB){' after table fill' if state else ''}", result["rss_mb"]),
        (f"RocksDB state (MB) for {args.table_processes:,} processes", result["state_mb"]),
        ("table fill: creations/s; worker CPU µs per creation",
         f"{result['table_fill']['creations_per_second']:,.0f}; "
         f"{result['table_fill']['worker_cpu_us_per_creation']}" if state else None),
        ("  of it, µs per creation: Python / RocksDB's threads / librdkafka's",
         " / ".join(str(v) for v in state["worker_cpu_us_per_creation_by_thread"].values())
         if state else None),
        ("rebuilt after a wipe: s; changelog records; records/s",
         f"{result['table_fill']['recovery_seconds']}; "
         f"{result['table_fill']['recovery_changelog_records']:,.0f}; "
         f"{result['table_fill']['recovery_records_per_second']:,.0f}" if state else None),
    ]  # fmt: skip
    for label, value in rows:
        print(f"  {label:<48} {value if value is not None else 'skipped'}")
    print(f"\nwritten: {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
