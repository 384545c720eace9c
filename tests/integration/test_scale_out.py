"""Several workers share the partitions; any of them answers for any process.

Real worker processes on the real broker: three workers with one app id,
recordings keyed by origin host (so a host's events keep their order, as a
process's creation and connections come from one host), lookups through each
worker, and a worker killed with SIGKILL in the middle of a replay.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiokafka.partitioner import murmur2

from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from tests.integration.test_join_ordering import HOSTS, stream
from tests.reference import RECORDINGS, acting_guid, compute, lines
from tests.support import SHORT_SESSION, WorkerProcess, create_topic, produce, read_topic


def origin_host(line: bytes) -> bytes:
    """The computer an event came from, in any of the three shapes (a partitioning key)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return b"?"
    winlog = doc.get("winlog") or {}
    host = winlog.get("computer_name") or doc.get("computer_name") or doc.get("Hostname")
    return str(host).encode()


#: Rows (and activity summaries) kept ten years: the recordings and the
#: generated streams are years old in event time, and the table must hold
#: every process of them.
TEN_YEARS = str(3650 * 86400)
KEEP_ROWS = {"SYSMON_TABLE_TTL": TEN_YEARS, "SYSMON_TABLE_RETENTION": TEN_YEARS}


def guid_of(n: int) -> str:
    """GUID of process ``n`` of tests.integration.test_join_ordering.stream."""
    return "{" + str(uuid.UUID(int=n + 1)) + "}"


def table_partition(guid: str, partitions: int) -> int:
    # Kafka's default partitioner, as aiokafka implements it.
    return (murmur2(guid.encode()) & 0x7FFFFFFF) % partitions


def start_group(
    count: int, env: dict[str, str], worker_factory: Callable[..., WorkerProcess]
) -> list[WorkerProcess]:
    workers = [worker_factory(env, wait=False) for _ in range(count)]
    wait_settled(workers)
    return workers


def wait_settled(workers: list[WorkerProcess], timeout: float = 180.0) -> None:
    """Every worker healthy, and together they own every partition (the group has settled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [w.http("/health") for w in workers]
        except OSError:
            states = []
        if states and all(status == 200 for status, _ in states):
            return
        time.sleep(0.5)
    raise AssertionError("workers did not settle:\n" + "\n".join(w.log_tail(20) for w in workers))


def _by_host(missing: set[tuple[str, int]]) -> dict[str, int]:
    """How many of the missing joins each host (and so each input partition) had."""
    hosts: dict[str, int] = {}
    for guid, _ in missing:
        host = HOSTS[(uuid.UUID(guid.strip("{}")).int - 1) % len(HOSTS)]
        hosts[host] = hosts.get(host, 0) + 1
    return hosts


def _intake_view(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("consumed", "normalized", "join_handled", "joined", "input_partitions",
            "table_partitions_active", "rebalances", "dropped_before_seek", "ancestry_parked",
            "pending_connects", "dead_lettered")  # fmt: skip
    return [{k: s.get(k) for k in keys} for s in stats]


def keyed_backlog(
    pipeline_env: Callable[..., dict[str, str]], events: int
) -> tuple[Workload, dict[str, str]]:
    """A pipeline's settings, and its input topic (4 partitions) holding ``events`` generated
    events keyed by host, so a host's events keep their order."""
    workload = Workload(WorkloadConfig(events=events, hosts=100))
    generated = list(workload)
    env = pipeline_env(partitions=4)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=4)
    produce(
        bootstrap,
        env["SYSMON_TOPIC_INPUT"],
        [e.value for e in generated],
        keys=[e.host for e in generated],
    )
    return workload, env


def stats_until(
    workers: list[WorkerProcess],
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 240.0,
) -> list[dict[str, Any]]:
    """Every worker's /stats, polled until ``done`` holds of them or ``timeout`` s; the last
    answers ([] if none answered)."""
    totals: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            totals = [w.stats() for w in workers]
        except OSError:
            time.sleep(0.5)
            continue
        if done(totals):
            break
        time.sleep(0.5)
    return totals


def lookup_until(worker: WorkerProcess, guid: str, timeout: float = 60.0) -> tuple[int, Any]:
    """GET /process/{guid}, retrying while the group rebalances (503)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = worker.http(f"/process/{guid}")
        if status != 503 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.5)


def test_three_workers_answer_for_every_process(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # The recordings span 2019 to 2020 in event time.
    env = {**pipeline_env(partitions=6), **KEEP_ROWS, "SYSMON_ACTIVITY_TTL": TEN_YEARS}
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=3)
    workers = start_group(3, env, worker_factory)

    creates: dict[str, dict[str, Any]] = {}
    values: list[bytes] = []
    #: Per process: its events by Sysmon id, as the raw files have them.
    activity: dict[str, Counter[str]] = defaultdict(Counter)
    enriched = 0
    for name in RECORDINGS:
        path = datasets_dir / f"{name}.jsonl.gz"
        expected = compute(path)
        creates.update(expected.process_creates)
        values.extend(lines(path))
        for event in expected.enriched:
            acting = acting_guid(event.event_id, event.data)
            if acting is not None:
                activity[acting][str(event.event_id)] += 1
        enriched += len(expected.enriched)
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values, keys=map(origin_host, values))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        totals = [w.stats() for w in workers]
        if (
            sum(t["consumed"] for t in totals) >= len(values)
            and sum(t["process_creates"] for t in totals) >= len(creates)
            and sum(t["enriched"] for t in totals) >= enriched
        ):
            break
        time.sleep(0.5)
    assert sum(t["table_rows"] for t in totals) == len(creates)
    assert all(t["table_rows"] > 0 for t in totals), "a worker owns no rows: no scale-out"

    for guid, raw in creates.items():
        for worker in workers:
            asked = guid.upper() if worker is workers[1] else guid.strip("{}")
            status, row = lookup_until(worker, asked)
            assert status == 200, (worker.web_port, guid, row)
            assert row["process_guid"] == guid
            assert row["process_path"] == raw["Image"]
            assert row["process_command_line"] == raw.get("CommandLine")
            assert (row["parent_process_guid"] or "") == str(
                raw.get("ParentProcessGuid", "")
            ).lower()

    # A three-level chain from the recordings, walked through every worker.
    chains = []
    for guid, raw in creates.items():
        chain = [guid]
        parent = str(raw.get("ParentProcessGuid", "")).lower()
        while parent in creates and parent not in chain:
            chain.append(parent)
            parent = str(creates[parent].get("ParentProcessGuid", "")).lower()
        if len(chain) >= 3:
            chains.append((chain, parent))
    assert chains, "the recordings hold a three-level process chain"
    chain, unknown_parent = chains[0]
    for worker in workers:
        status, body = worker.http(f"/process/{chain[0]}/ancestry")
        assert status == 200, body
        assert body["process_guid"] == chain[0]
        # The parent whose creation the recording lacks is named all the
        # same (from its child's creation): the hop above it is unknown.
        ancestors = [hop["process_guid"] for hop in body["ancestry"]]
        assert ancestors == [*chain[1:], unknown_parent]
        assert [hop["own_creation_seen"] for hop in body["ancestry"]][-1] is False
        assert body["stopped"] == "unknown_parent"
        assert body["unknown_parent_guid"] == unknown_parent

    # What a process did, asked of every worker (two of three forward it to
    # the owner): its events by Sysmon id, as the raw files count them. The
    # summaries are written with each commit (every few seconds): asked again
    # until then.
    busiest = sorted(activity, key=lambda guid: -activity[guid].total())[:5]
    for guid in [*busiest, *list(creates)[:5]]:
        for worker in workers:
            deadline = time.monotonic() + 30
            while True:
                status, body = worker.http(f"/process/{guid}/activity")
                counted = body.get("counts_by_event_id") if status == 200 else None
                if counted == dict(activity[guid]) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert status == 200, (worker.web_port, guid, body)
            assert body["counts_by_event_id"] == dict(activity[guid]), guid
            assert body["events"] == activity[guid].total()
            assert all(len(items) <= body["recent_per_kind"] for items in body["recent"].values())

    for worker in workers:
        for bad in ("not-a-guid", "{1234}", "x" * 300, "%ff%fe", "'; DROP TABLE processes;--"):
            status, body = worker.http(f"/process/{quote(bad, safe='%')}")
            assert status == 400 and isinstance(body, dict) and body["error"], (bad, body)
        status, body = worker.http("/process/{00000000-1111-2222-3333-444444444444}")
        assert status == 404 and body["error"] == "process not found"
        status, body = worker.http("/process/{00000000-1111-2222-3333-444444444444}/ancestry")
        assert status == 404
        status, body = worker.http("/process/{00000000-1111-2222-3333-444444444444}/activity")
        assert status == 404 and body["error"] == "no activity recorded for this process"
        status, body = worker.http("/process/not-a-guid/activity")
        assert status == 400 and body["error"]
        status, body = worker.http("/no/such/page")
        assert status == 404 and isinstance(body, dict)
        # Without SYSMON_HTTP_TOKEN, Faust's table pages are off.
        status, body = worker.http("/table/")
        assert status == 404 and isinstance(body, dict)
        status, text = worker.http("/metrics")
        assert status == 200
        assert (
            "sysmon_consumed_total" in text and "sysmon_processing_latency_seconds_bucket" in text
        )


@pytest.mark.timeout(900)
def test_sigkill_of_one_worker_loses_nothing(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    processes, connects_each = 3000, 2
    values, keys = stream(processes, connects_each, filler_each=6)
    env = {**pipeline_env(partitions=6), **KEEP_ROWS, **SHORT_SESSION}
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=3)
    workers = start_group(3, env, worker_factory)

    half = len(values) // 2
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values[:half], keys=keys[:half])
    # Kill a worker while it is busy with the first half, once it holds table
    # rows: a process in one of its partitions is the probe.
    victim = workers[0]
    victim_stats = victim.wait_for(lambda s: s["table_rows"] > 0, timeout=120)
    owned = set(victim_stats["table_partitions_active"])
    probe_n = next(n for n in range(processes // 4) if table_partition(guid_of(n), 6) in owned)
    probe = guid_of(probe_n)
    victim.wait_for(lambda s: victim.http(f"/process/{probe}")[0] == 200, timeout=120)
    victim.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    survivors = workers[1:]
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values[half:], keys=keys[half:])

    # Lookups of a process the dead worker owned answer correctly again once
    # the group has settled.
    recovered_after = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and recovered_after is None:
        answers = [w.http(f"/process/{probe}") for w in survivors]
        if all(
            status == 200 and body["process_command_line"] == f"a.exe {probe_n}"
            for status, body in answers
        ):
            recovered_after = time.monotonic() - killed_at
        else:
            time.sleep(0.25)
    assert recovered_after is not None, [w.log_tail(20) for w in survivors]

    # The stream's process n has GUID UUID(int=n + 1) and connects to ports 1..connects_each.
    expected = {
        (guid_of(n), port) for n in range(processes) for port in range(1, connects_each + 1)
    }
    joined = read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], len(expected), timeout=300, settle=3)
    seen = [(r.json()["process_guid"], r.json()["dst_port"]) for r in joined]
    missing = expected - set(seen)
    duplicates = len(seen) - len(set(seen))
    after = [w.stats() for w in survivors]
    print(
        f"\nSIGKILL: lookups of the dead worker's process correct again after "
        f"{recovered_after:.1f} s; {len(set(seen))}/{len(expected)} joined, "
        f"{len(missing)} missing, {duplicates} duplicates (at-least-once); survivors "
        f"consumed {[s['consumed'] for s in after]}, rebalances {[s['rebalances'] for s in after]}"
    )
    assert not missing, (
        f"{len(missing)} joined records missing, e.g. {sorted(missing)[:5]}; "
        f"missing by host {_by_host(missing)}; survivors' health "
        f"{[w.http('/health') for w in survivors]}; stats {_intake_view(after)}; logs:\n"
        + "\n".join(w.log_tail(40) for w in survivors)
    )
    for status, body in (w.http(f"/process/{probe}") for w in survivors):
        assert status == 200 and body["process_command_line"] == f"a.exe {probe_n}"

    # The killed worker comes back (same port, so the same state folder) and
    # gets a share again; then another one stops politely (SIGTERM).
    back = worker_factory(env, web_port=victim.web_port)
    group = [back, *survivors]
    back.wait_for(lambda s: bool(s["table_partitions_active"]), timeout=180)
    wait_settled(group)
    assert survivors[0].stop(signal.SIGTERM) == 0
    remaining = [back, survivors[1]]
    for worker in remaining:
        status, body = lookup_until(worker, probe, timeout=120)
        assert status == 200 and body["process_command_line"] == f"a.exe {probe_n}"
    # ... and the two left take over the stopped worker's partitions.
    deadline = time.monotonic() + 60
    while True:
        owned = sorted(p for w in remaining for p in w.stats()["table_partitions_active"])
        if owned == list(range(6)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert owned == list(range(6)), owned


def test_bearer_token_guards_every_endpoint_but_health(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    token = "s3cret-token"
    env = {**pipeline_env(partitions=4), "SYSMON_HTTP_TOKEN": token}
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=1)
    first = worker_factory(env, wait=False)
    second = worker_factory(env, wait=False)
    workers = [first, second]
    wait_settled(workers)
    values, keys = stream(40, 1, filler_each=0)
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], values, keys=keys)
    auth = {"Authorization": f"Bearer {token}"}

    for worker in workers:
        assert worker.http("/health")[0] == 200
        status, body = worker.http("/stats")
        assert status == 401 and "token" in body["error"]
        assert worker.http("/stats", {"Authorization": "Bearer wrong"})[0] == 401
        assert worker.http("/metrics")[0] == 401
        assert worker.http(f"/process/{guid_of(0)}")[0] == 401
        # Faust's own table pages exist only behind the token.
        assert worker.http("/table/", auth)[0] == 200

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = sum(w.http("/stats", auth)[1]["table_rows"] for w in workers)
        if rows == 40:
            break
        time.sleep(0.5)
    # Every lookup through either worker, forwarded with the token where needed.
    for n in range(40):
        for worker in workers:
            status, body = worker.http(f"/process/{guid_of(n)}", auth)
            assert status == 200, body
            assert body["process_command_line"] == f"a.exe {n}"


def test_two_workers_starting_together_on_a_filled_topic_skip_nothing(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # The situation in which make bench lost records before
    # sysmon_faust.compat.faust_fixes (a partition kept across the first rebalance
    # resumed after the records Faust had dropped). The race does not happen
    # on every run; this asserts that nothing is missing when it does not.
    workload, env = keyed_backlog(pipeline_env, 150_000)
    events = workload.expected.events
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    # Both start at once: the group settles in two rebalances while the intake
    # already feeds the join, and the leader keeps half of its partitions.
    workers = [worker_factory(env, wait=False) for _ in range(2)]
    totals = stats_until(
        workers,
        lambda totals: (
            sum(t["consumed"] for t in totals) >= events
            and sum(t["join_handled"] for t in totals) >= sum(t["normalized"] for t in totals)
        ),
    )
    # Seen once (16:00, a local run of five test files): no worker answered
    # /stats for 240 s; it passed alone at once. Say so with the logs if again.
    assert totals, "no /stats answer in 240 s:\n" + "\n".join(w.log_tail() for w in workers)
    # At-least-once: duplicates may appear after a rebalance, gaps may not.
    assert sum(t["consumed"] for t in totals) >= events
    # Table rows are counted in each worker's active partitions: wait out a
    # partition that is still being recovered on its new owner.
    deadline = time.monotonic() + 60
    while True:
        totals = [w.stats() for w in workers]
        rows = sum(t["table_rows"] for t in totals)
        if rows == workload.expected.process_creates or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows == workload.expected.process_creates, ("table rows", rows, totals)
    joined = read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], workload.expected.joined_in_order)
    distinct = {
        (r.key, r.json()["src_port"], r.json()["dst_ip_addr"], r.json()["event_date_creation"])
        for r in joined
    }
    assert len(distinct) == workload.expected.joined_in_order, ("distinct joins", len(distinct))


def test_a_worker_joining_mid_stream_takes_over_without_doubling_a_record(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # Under at_least_once the intake reads a batch while the one before waits
    # for its acknowledgements and its commit; a revocation in between commits
    # that one inside librdkafka's callback (Intake._settle_now). Without it the
    # new owner reads that batch again and its records are written twice: a
    # rebalance with no fault doubles nothing, as when every batch waited.
    # (A race: with that commit taken out this failed in 2 of 4 runs, 75 and
    # 150 creations written twice; the others' commit from the task came in
    # before the group rebalanced.) The topic is a backlog, so batches overlap.
    # Enough for the first worker to be reading still when the second has
    # started (~17 s of it at ~35,000 events/s, every type enriched; 300,000
    # were read before the second joined once).
    workload, env = keyed_backlog(pipeline_env, 600_000)
    events = workload.expected.events
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    first = worker_factory(env)
    first.wait_for(lambda s: s["consumed"] > 0, timeout=120)
    second = worker_factory(env, wait=False)
    workers = [first, second]
    totals = stats_until(workers, lambda totals: sum(t["consumed"] for t in totals) >= events)
    assert totals and sum(t["consumed"] for t in totals) >= events, _intake_view(totals)
    # The second worker took partitions over while the first was reading them.
    assert totals[1]["consumed"] > 0, ("the stream ended before the rebalance", totals)
    creations = read_topic(
        bootstrap, env["SYSMON_TOPIC_PROCESS_CREATE"], workload.expected.process_creates,
        timeout=120, settle=3.0,
    )  # fmt: skip
    doubled = [key for key, n in Counter(r.key for r in creations).items() if n > 1]
    assert len(creations) == workload.expected.process_creates, (
        f"{len(creations)} process creations written for {workload.expected.process_creates} "
        f"read; {len(doubled)} written twice, e.g. {doubled[:3]}; {_intake_view(totals)}"
    )
