"""``make chaos``: kill the worker, wipe its state, restart the broker — and count what is lost.

Real broker, real ``faust worker`` processes, the generated workload of
``make bench`` (sysmon_faust.core.synthetic) with a fifth of the processes
connecting before their creation is logged (so the grace buffer holds
connects when the worker dies). What the pipeline must produce is computed
here from the generated events, independently of the pipeline: every
connect of a process created anywhere in the stream joins, once.

Scenarios (``--scenarios``, all by default):

kill     SIGKILL the worker at ``--kills`` random points of the replay (by the
         intake's committed share of the input), restart it each time on the
         same state directory; then count missing and duplicate enriched
         records, once per processing guarantee in ``--guarantees``
         (read with ``isolation_level=read_committed``).
broker   stop the local broker (``kafka/kafka.sh down``) in the middle of a
         replay and start it again on the same data; the worker must get
         through by itself, with nothing missing.
state    a worker whose table holds ``--rows`` rows is stopped, its
         ``SYSMON_DATA_DIR`` deleted, and started again: time until it is
         healthy with the same row count and the same lookups, beside a
         restart that keeps its state.

Prints a summary; writes bench/results/chaos-<timestamp>.json and chaos-latest.json.
Exit status 1 when anything is missing (or, with exactly_once, duplicated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from run import (  # bench/run.py
    REPO,
    RESULTS,
    Worker,
    _send_table_fill,
    _table_fill_records,
    bench_name,
    create_topic,
    end_offset_total,
    free_port,
    log,
    measure_then_delete_topics,
    pipeline_env,
    produce_events,
)

from sysmon_faust.cli.progress import Progress
from sysmon_faust.core.normalize import NETWORK_CONNECT
from sysmon_faust.core.rekey import EVENT_ID_FIELD, decode_batch
from sysmon_faust.core.synthetic import GeneratedEvent, Workload, WorkloadConfig

#: A replay is over when the intake committed all of the input, the worker is
#: healthy, and the join topic did not grow for this long.
SETTLED_SECONDS = 10.0
#: Longest a scenario may take to settle before it is reported as stuck.
STUCK_SECONDS = 600.0
#: Longest a worker may take to rebuild its table (about 7 min at 1 M rows).
RECOVERY_STUCK_SECONDS = 1800.0

Identity = tuple[str, str, str, int, str, int]


# --- the reference: what a correct pipeline emits -----------------------------


def _iso(utc_time: str) -> str:
    moment = datetime.strptime(utc_time, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _connect_identity(data: dict[str, Any]) -> Identity:
    return (
        str(data["ProcessGuid"]).lower(),
        _iso(data["UtcTime"]),
        data["SourceIp"],
        int(data["SourcePort"]),
        data["DestinationIp"],
        int(data["DestinationPort"]),
    )


def joined_identity(record: dict[str, Any]) -> Identity:
    """The same identity, read from an enriched record of sysmon-join."""
    return (
        record["process_guid"],
        record["event_date_creation"],
        record["src_ip_addr"],
        record["src_port"],
        record["dst_ip_addr"],
        record["dst_port"],
    )


@dataclass
class Reference:
    """Built from the events as they are produced, without the pipeline's code."""

    events: int = 0
    created: set[str] = field(default_factory=set)
    connects: list[Identity] = field(default_factory=list)

    def observe(self, events: Iterable[GeneratedEvent]) -> Iterator[GeneratedEvent]:
        for event in events:
            self.events += 1
            winlog = orjson.loads(event.value)["winlog"]
            if winlog["provider_name"] == "Microsoft-Windows-Sysmon":
                if winlog["event_id"] == 1:
                    self.created.add(winlog["event_data"]["ProcessGuid"].lower())
                elif winlog["event_id"] == 3:
                    self.connects.append(_connect_identity(winlog["event_data"]))
            yield event

    def joins(self) -> Counter[Identity]:
        return Counter(c for c in self.connects if c[0] in self.created)


def compare(expected: Counter[Identity], seen: Counter[Identity]) -> dict[str, int]:
    return {
        "expected": sum(expected.values()),
        "seen": sum(seen.values()),
        "missing": sum((expected - seen).values()),
        "duplicates": sum((seen - expected).values()),
    }


# --- Kafka reads ---------------------------------------------------------------


async def _read_committed(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic`` as committed (aborted transactions left out)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # With read_committed, the end offsets are the last stable offsets.
        ends = await consumer.end_offsets(tps)

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            values.extend(message.value for messages in batch.values() for message in messages)
    finally:
        await consumer.stop()
    return values


def read_joins(bootstrap: str, topic: str) -> Counter[Identity]:
    """The enriched records of sysmon-join."""
    values = asyncio.run(_read_committed(bootstrap, topic))
    return Counter(joined_identity(orjson.loads(value)) for value in values)


def read_rekeyed_connects(bootstrap: str, topic: str) -> Counter[Identity]:
    """The connects in the re-keying topic (the intake's output)."""
    return Counter(
        joined_identity(fields)
        for value in asyncio.run(_read_committed(bootstrap, topic))
        for fields in decode_batch(value)
        if fields[EVENT_ID_FIELD] == NETWORK_CONNECT
    )


async def _committed_share(bootstrap: str, group: str, topic: str) -> float:
    """The share of ``topic`` the consumer group has committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        done = sum(max(committed[tp].offset, 0) for tp in tps if tp in committed)
        return done / total if total else 0.0
    finally:
        await admin.close()
        await consumer.stop()


def committed_share(bootstrap: str, group: str, topic: str) -> float:
    try:
        return asyncio.run(_committed_share(bootstrap, group, topic))
    except Exception as exc:  # the broker may be down in the broker scenario
        log(f"  (could not read committed offsets: {type(exc).__name__})")
        return -1.0


def get_json(worker: Worker, path: str) -> tuple[int, Any]:
    try:
        url = f"http://127.0.0.1:{worker.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except OSError:
        return 0, None


def healthy(worker: Worker) -> bool:
    status, body = get_json(worker, "/health")
    return status == 200 and bool(body and body.get("healthy"))


# --- scenarios -------------------------------------------------------------


@dataclass
class Replay:
    topic: str
    reference: Reference


def fill_replay(bootstrap: str, events: int, partitions: int) -> Replay:
    topic = bench_name("chaos-input")
    asyncio.run(create_topic(bootstrap, topic, partitions))
    config = WorkloadConfig(events=events, hosts=50, seed=11, early_connect_share=0.2)
    reference = Reference()
    log(f"filling {topic} with {events:,} generated events ({partitions} partitions)")
    asyncio.run(produce_events(bootstrap, topic, reference.observe(Workload(config)), events))
    return Replay(topic, reference)


class Pipeline:
    """One worker over a replay, restartable on the same state directory."""

    def __init__(
        self, bootstrap: str, replay: Replay, kind: str, work: Path, partitions: int,
        guarantee: str = "at_least_once",
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.replay = replay
        self.app_id = bench_name(kind)
        self.work = work / self.app_id
        self.env = pipeline_env(bootstrap, self.app_id, replay.topic, self.work, partitions)
        self.env["SYSMON_PROCESSING_GUARANTEE"] = guarantee
        self.port = free_port()
        self.worker = Worker(self.env, self.work, self.port)
        self.restarts = 0

    @property
    def join_topic(self) -> str:
        return self.env["SYSMON_TOPIC_JOIN"]

    def intake_share(self) -> float:
        return committed_share(self.bootstrap, f"{self.app_id}-intake", self.replay.topic)

    def alive(self) -> None:
        if self.worker.process.poll() is not None:
            raise SystemExit(
                f"the worker exited ({self.worker.process.returncode}); see {self.worker.log}"
            )

    def kill_and_restart(self) -> None:
        self.worker.process.send_signal(signal.SIGKILL)
        self.worker.process.wait(30)
        self.worker = Worker(self.env, self.work, self.port)
        self.restarts += 1

    def wait_for_share(self, share: float, label: str) -> float:
        progress = Progress(1000, label)
        while True:
            self.alive()
            done = self.intake_share()
            progress.update(int(max(done, 0) * 1000))
            if done >= share:
                return done
            time.sleep(0.3)

    def wait_settled(self) -> float:
        """Seconds from now until the replay is through (see SETTLED_SECONDS)."""
        started = time.monotonic()
        last_size, last_change = -1, time.monotonic()
        while time.monotonic() - started < STUCK_SECONDS:
            self.alive()
            if self.intake_share() >= 1.0 and healthy(self.worker):
                size = asyncio.run(end_offset_total(self.bootstrap, self.join_topic))
                if size != last_size:
                    last_size, last_change = size, time.monotonic()
                elif time.monotonic() - last_change >= SETTLED_SECONDS:
                    return last_change - started
            time.sleep(1)
        log(f"  not settled after {STUCK_SECONDS:.0f} s; counting what is there")
        return STUCK_SECONDS

    def outcome(self) -> dict[str, int]:
        expected = self.replay.reference.joins()
        result = compare(expected, read_joins(self.bootstrap, self.join_topic))
        if result["duplicates"]:
            # Which stage made them: the intake (twice in the re-keying topic) or the join.
            rekeyed = read_rekeyed_connects(self.bootstrap, f"{self.app_id}-events-by-process-guid")
            result["duplicates_from_intake"] = sum(
                (rekeyed - Counter(self.replay.reference.connects)).values()
            )
        return result

    def stop(self) -> None:
        self.worker.stop()


def kill_scenario(
    bootstrap: str, replay: Replay, guarantee: str, kills: int, rng: random.Random,
    work: Path, partitions: int,
) -> dict[str, Any]:  # fmt: skip
    points = sorted(rng.uniform(0.05, 0.95) for _ in range(kills))
    log(f"kill ({guarantee}): SIGKILL at {', '.join(f'{p:.0%}' for p in points)} of the input")
    pipeline = Pipeline(bootstrap, replay, f"kill-{guarantee}", work, partitions, guarantee)
    started = time.monotonic()
    killed_at = []
    try:
        for n, point in enumerate(points, 1):
            share = pipeline.wait_for_share(point, f"kill {n}/{kills} at {point:.0%}")
            killed_at.append(round(share, 3))
            pipeline.kill_and_restart()
        settled = pipeline.wait_settled()
        seconds = time.monotonic() - started
        result = pipeline.outcome()
    finally:
        pipeline.stop()
    log(f"  {result}")
    return {
        "guarantee": guarantee,
        "kills": kills,
        "killed_at_input_share": killed_at,
        "seconds": round(seconds, 1),
        "settle_wait_seconds": round(settled, 1),
        **result,
    }


def _kafka_sh(command: str) -> float:
    started = time.monotonic()
    subprocess.run([str(REPO / "kafka" / "kafka.sh"), command], check=True, timeout=300)
    return time.monotonic() - started


def broker_scenario(
    bootstrap: str, replay: Replay, work: Path, partitions: int, down_seconds: float
) -> dict[str, Any]:
    log("broker restart: kafka.sh down at 40 % of the input, up again after a pause")
    pipeline = Pipeline(bootstrap, replay, "broker", work, partitions)
    started = time.monotonic()
    try:
        share = pipeline.wait_for_share(0.4, "broker restart at 40%")
        stop_seconds = _kafka_sh("down")
        time.sleep(down_seconds)
        pipeline.alive()
        start_seconds = _kafka_sh("up")
        pipeline.wait_settled()
        seconds = time.monotonic() - started
        result = pipeline.outcome()
        pid = pipeline.worker.process.pid
        restarted = pipeline.restarts
    finally:
        pipeline.stop()
    log(f"  {result}")
    return {
        "stopped_at_input_share": round(share, 3),
        "broker_stop_seconds": round(stop_seconds, 1),
        "broker_down_seconds": round(down_seconds + stop_seconds + start_seconds, 1),
        "worker_pid_unchanged": restarted == 0 and pid > 0,
        "seconds": round(seconds, 1),
        **result,
    }


def _sample_guids(rows: int, every: int) -> list[str]:
    # The same generator and seed as bench/run.py's _table_fill_records.
    config = WorkloadConfig(
        events=rows, hosts=200, seed=5, process_create_share=1.0,
        network_connect_share=0.0, other_sysmon_share=0.0, wmi_every=0,
    )  # fmt: skip
    guids = []
    for n, event in enumerate(Workload(config)):
        if n % every == 0:
            winlog = orjson.loads(event.value)["winlog"]
            guids.append(winlog["event_data"]["ProcessGuid"].lower())
        if n + 1 >= rows:
            break
    return guids


def _restart_timed(
    worker: Worker, env: dict[str, str], work: Path, rows: int
) -> tuple[Worker, float]:
    started = time.monotonic()
    worker = Worker(env, work, worker.port)
    progress = Progress(rows, "recovery (rows, counted every 10 s)")
    while time.monotonic() - started < RECOVERY_STUCK_SECONDS:
        if worker.process.poll() is not None:
            raise SystemExit(f"the worker exited; see {worker.log}")
        stats = worker.stats() or {}
        progress.update(stats.get("table_rows", 0) or 0)
        if healthy(worker) and (worker.stats() or {}).get("table_rows") == rows:
            progress.finish(rows)
            return worker, time.monotonic() - started
        time.sleep(1)
    raise SystemExit(f"no recovery in {RECOVERY_STUCK_SECONDS:.0f} s; see {worker.log}")


def state_scenario(bootstrap: str, rows: int, work: Path, partitions: int) -> dict[str, Any]:
    log(
        f"state loss: a table of {rows:,} rows, SYSMON_DATA_DIR deleted, rebuilt from the changelog"
    )
    topic = bench_name("state-loss-input")
    asyncio.run(create_topic(bootstrap, topic, partitions))
    app_id = bench_name("state-loss")
    data = work / app_id
    env = pipeline_env(bootstrap, app_id, topic, data, partitions)
    chunks = _table_fill_records(rows, partitions)
    worker = Worker(env, data)
    progress = Progress(rows, "table fill")
    try:
        while not (worker.stats() or {}).get("rebalances"):
            time.sleep(0.5)
        # What stops the fill goes here: without it, the loop below would wait forever.
        fill_failed: list[BaseException] = []
        filling = threading.Thread(
            target=_send_table_fill, args=(bootstrap, app_id, chunks, fill_failed)
        )
        filling.start()
        while (created := (worker.stats() or {}).get("process_creates", 0)) < rows:
            progress.update(created)
            if worker.process.poll() is not None:
                raise SystemExit(f"worker died; see {worker.log}")
            if fill_failed:
                raise SystemExit(f"the table fill failed: {fill_failed[0]!r}") from fill_failed[0]
            time.sleep(1)
        filling.join()
        if fill_failed:
            raise SystemExit(f"the table fill failed: {fill_failed[0]!r}") from fill_failed[0]
        del chunks
        progress.finish(rows)
        sample = _sample_guids(rows, max(rows // 200, 1))
        before_rows = (worker.stats() or {}).get("table_rows")
        before = {guid: get_json(worker, f"/process/{guid}") for guid in sample}

        worker.stop()
        worker, warm_seconds = _restart_timed(worker, env, data, rows)
        worker.stop()
        state_mb = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 1024 / 1024
        shutil.rmtree(data)
        log(f"  deleted {data} ({state_mb:.0f} MB); starting again")
        worker, cold_seconds = _restart_timed(worker, env, data, rows)
        after_rows = (worker.stats() or {}).get("table_rows")
        after = {guid: get_json(worker, f"/process/{guid}") for guid in sample}
    finally:
        worker.stop()
    same = sum(before[g] == after[g] and before[g][0] == 200 for g in sample)
    result = {
        "rows": rows,
        "rows_before": before_rows,
        "rows_after": after_rows,
        "lookups_compared": len(sample),
        "lookups_equal": same,
        "state_mb": round(state_mb, 1),
        "restart_with_state_seconds": round(warm_seconds, 1),
        "restart_after_wipe_seconds": round(cold_seconds, 1),
    }
    log(f"  {result}")
    return result


# --- the run ---------------------------------------------------------------


def measure(args: argparse.Namespace, bootstrap: str) -> int:
    scenarios = set(args.scenarios.split(","))
    work = REPO / "bench" / "work-chaos"
    shutil.rmtree(work, ignore_errors=True)
    rng = random.Random(args.seed)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": args.events,
        "seed": args.seed,
    }
    failed = False
    if scenarios & {"kill", "broker"}:
        replay = fill_replay(bootstrap, args.events, args.partitions)
        results["expected_joins"] = sum(replay.reference.joins().values())
    if "kill" in scenarios:
        results["kill"] = []
        for guarantee in args.guarantees.split(","):
            run = kill_scenario(
                bootstrap, replay, guarantee, args.kills, rng, work, args.partitions
            )
            results["kill"].append(run)
            failed |= run["missing"] > 0 or (guarantee == "exactly_once" and run["duplicates"] > 0)
    if "broker" in scenarios:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "") not in (
            "",
            f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}",
        ):
            log("broker restart skipped: KAFKA_BOOTSTRAP_SERVERS is not the local broker")
        else:
            run = broker_scenario(bootstrap, replay, work, args.partitions, args.broker_down)
            results["broker"] = run
            failed |= run["missing"] > 0 or not run["worker_pid_unchanged"]
    if "state" in scenarios:
        run = state_scenario(bootstrap, args.rows, work, args.partitions)
        results["state"] = run
        failed |= (
            run["rows_after"] != run["rows_before"]
            or run["lookups_equal"] != run["lookups_compared"]
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2)
    (RESULTS / f"chaos-{stamp}.json").write_text(text + "\n")
    (RESULTS / "chaos-latest.json").write_text(text + "\n")
    print(text)
    if failed:
        log(f"FAILED: something was lost; the workers' logs are in {work}")
    else:
        log("nothing lost")
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--guarantees", default="at_least_once,exactly_once")
    parser.add_argument("--scenarios", default="kill,broker,state")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="table rows of the state scenario"
    )
    parser.add_argument(
        "--broker-down", type=float, default=10.0, help="seconds the broker stays down"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    return measure_then_delete_topics(measure, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
