"""A fault of the machine or the cluster is not a bad record: it stops the worker, loses nothing.

Tried before the fix (issue 15): a worker's ``SYSMON_DATA_DIR`` on a 40 MB
filesystem, 300,000 process creations — every RocksDB write raised ``IO
error: No space left on device`` and the join dead-lettered each event as
bad: 282,188 valid events in the dead-letter topic, ``/health`` 200 all
along. Here, with a real full filesystem (a tmpfs) and a real broker that
refuses a write: the worker says why on ``/health`` (503) and in one log
line, exits with status 75, makes no dead letter, commits nothing past the
record — and started again with room, it ends with every row, every expiry
index entry and every process-tree link in its local state.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import rocksdb
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faust.stores.rocksdb import RocksDBOptions

from sysmon_faust.core.join import expiry
from sysmon_faust.stream.faults import EXIT_STATUS
from sysmon_faust.stream.tree_replica import TreeReplica
from tests.events import connect, winlogbeat
from tests.support import (
    SHORT_SESSION,
    Phases,
    WorkerProcess,
    create_topic,
    free_port,
    produce,
    read_topic,
    run,
)

pytestmark = pytest.mark.integration

STOP_LINE = "by a fault of the machine or the cluster, not of the record"


def encoded_command_line(n: int) -> str:
    """Process ``n``'s command line: as long as real ones get (encoded PowerShell, ~2.4 KB),
    and of random bytes (seeded by ``n``). One repeated line compressed so well that
    12,000 processes sometimes fit the small disk: the worker then went on without a
    fault and the test waited out its 240 s (docs/testing.md)."""
    payload = base64.b64encode(random.Random(n).randbytes(1800)).decode()
    return f"powershell.exe -NoP -W Hidden -Enc {payload}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB filesystem of the test's own (tmpfs: needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def chain(processes: int, started: int) -> tuple[list[str], list[bytes]]:
    """``processes`` creations, each the child of the one before: GUIDs and events."""
    guids = [
        f"{{7c1a0b3e-{started & 0xFFFF:04x}-{started >> 16:04x}-0000-{n:012x}}}"
        for n in range(processes)
    ]
    events = []
    for n, guid in enumerate(guids):
        parent = guids[n - 1] if n else "{7c1a0b3e-0000-0000-0000-ffffffffffff}"
        utc = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started + n // 1000))
        events.append(
            winlogbeat(
                1, f"{utc}.{n % 1000:03d}", guid,
                Image="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                CommandLine=encoded_command_line(n), ParentProcessGuid=parent,
                ParentImage="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                ParentCommandLine=encoded_command_line(n - 1),
            )
        )  # fmt: skip
    return guids, events


def wait_for_exit(worker: WorkerProcess, timeout: float) -> list[dict[str, Any]]:
    """Poll /health until the worker exits; the 503 answers it gave meanwhile.

    Started before the events are produced (:func:`watching_health`): the
    worker may meet the fault and exit (3 s after) while they are still
    being sent — seen in CI once the intake read with librdkafka.
    """
    unhealthy = []
    deadline = time.monotonic() + timeout
    while worker.process.poll() is None:
        assert time.monotonic() < deadline, f"the worker did not stop:\n{worker.log_tail()}"
        try:
            code, body = worker.http("/health")
        except OSError:
            continue  # exiting
        if code == 503 and body.get("reasons"):
            unhealthy.append(body)
        time.sleep(0.2)
    return unhealthy


@contextmanager
def watching_health(
    worker: WorkerProcess, timeout: float
) -> Iterator[Future[list[dict[str, Any]]]]:
    """:func:`wait_for_exit` in a thread from now on: its result is the 503 answers."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(wait_for_exit, worker, timeout)


def keys_of(database: Path) -> list[bytes]:
    db = RocksDBOptions(use_rocksdict=False).open(database, read_only=True)
    try:
        keys = db.iterkeys()
        keys.seek_to_first()
        return list(keys)
    finally:
        del keys
        db.close()


def local_state(worker_dir: Path) -> dict[str, set[bytes]]:
    """What the stopped worker holds: rows, TTL entries of the expiry index, tree links."""
    rows: set[bytes] = set()
    ttl: set[bytes] = set()
    for database in worker_dir.rglob("*process-create-*.db"):
        rows |= {key for key in keys_of(database) if key.startswith(b"{")}
    for database in worker_dir.rglob("*expiry-index-*.db"):
        for key in keys_of(database):
            if key.startswith(expiry.ROW_TTL):
                ttl.add(expiry.parse_index_key(key)[2])
    links = {key for key in keys_of(worker_dir / "process-tree") if key.startswith(b"{")}
    return {"rows": rows, "ttl": ttl, "links": links}


def test_a_full_disk_stops_the_worker_and_a_restart_with_room_ends_whole(
    small_disk: Path,
    tmp_path: Path,
    kafka_bootstrap: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    phases = Phases()
    env = pipeline_env() | SHORT_SESSION | {"SYSMON_DATA_DIR": str(small_disk)}
    guids, events = chain(12_000, started=int(time.time()) - 3600)
    port = free_port()  # the same port again: the restarted worker finds its state directory
    worker = worker_factory(env, web_port=port)
    phases.mark("worker healthy")
    with watching_health(worker, timeout=240) as watch:
        produce(kafka_bootstrap, env["SYSMON_TOPIC_INPUT"], events)
        phases.mark(f"{len(events)} events produced")
    unhealthy = watch.result()
    phases.mark("worker exited on the full disk")
    log = worker.log_path.read_text(errors="replace")
    stop_lines = [line for line in log.splitlines() if STOP_LINE in line]
    print(f"\n{stop_lines[0] if stop_lines else log[-2000:]}")
    assert worker.process.returncode == EXIT_STATUS
    assert len(stop_lines) == 1 and "No space left on device" in stop_lines[0]
    # Without one, the event loop was blocked: the watchdog's stacks say where.
    assert unhealthy, f"no 503 with a reason before the exit:\n{log[-6000:]}"
    assert any("No space left on device" in r for r in unhealthy[-1]["reasons"])
    assert read_topic(kafka_bootstrap, env["SYSMON_TOPIC_DLQ"], expect=0, settle=2) == []

    # Room again: the state, as the full disk left it, on a larger filesystem.
    larger = tmp_path / "larger"
    shutil.copytree(small_disk, larger)
    env["SYSMON_DATA_DIR"] = str(larger)
    worker = worker_factory(env, web_port=port)
    phases.mark("state copied, worker healthy again")
    worker.wait_for(lambda s: s["table_rows"] == len(guids), timeout=240)
    phases.mark("every row in the table")
    # The last process's connect carries its ancestry from the tree copy.
    last = guids[-1]
    produce(
        kafka_bootstrap,
        env["SYSMON_TOPIC_INPUT"],
        [connect(time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime()), last, 443)],
    )
    joined = read_topic(kafka_bootstrap, env["SYSMON_TOPIC_JOIN"], expect=1, timeout=60)
    phases.mark("the last process's connect joined")
    assert [hop["process_guid"] for hop in joined[0].json()["process_ancestry"]] == guids[-2:-6:-1]
    assert worker.stop() == 0
    assert read_topic(kafka_bootstrap, env["SYSMON_TOPIC_DLQ"], expect=0, settle=1) == []

    state = local_state(larger / f"{env['SYSMON_APP_ID']}-worker-{port}")
    want = {guid.encode() for guid in guids}
    assert len(state["rows"]) == len(want) and state["rows"] == want
    assert state["ttl"] == want  # every row's TTL entry in the expiry index
    assert want <= state["links"]  # every process's parent link in the tree copy


# What a full disk raises: RocksDB's own error (not an OSError), or the OS's.
@pytest.mark.parametrize(
    "full_disk",
    [
        rocksdb.errors.RocksIOError("IO error: No space left on deviceWhile appending to file"),
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    ],
    ids=["RocksIOError", "OSError"],
)
def test_a_process_tree_copy_whose_rocksdb_failed_is_left_open_for_the_exit(
    full_disk: Exception,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing a RocksDB whose write failed on a full disk waits for a flush
    that cannot succeed: on the event loop it blocked /health for good (the
    full-disk test above, 3 runs in 20 before the fix). The worker exits on
    the fault without it."""
    topic = unique_name("tree")
    create_topic(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [b"link"], keys=[b"{7c1a0b3e-0000-0000-0000-000000000001}"])
    replica = TreeReplica(topic, 1, kafka_bootstrap, {}, read_committed=False)
    closed: list[bool] = []

    def full(records: Any, partition: int) -> None:
        raise full_disk

    monkeypatch.setattr(replica, "apply", full)
    monkeypatch.setattr(replica, "close", lambda: closed.append(True))
    with pytest.raises(type(full_disk), match="No space left on device"):
        run(asyncio.wait_for(replica.run(tmp_path / "process-tree"), 60))
    assert closed == []
    # A fault of the record's kind (not the machine's) closes it, so the
    # worker's next attempt can open it again (here a second copy: the
    # first one still holds its folder's lock).
    monkeypatch.setattr(replica, "apply", lambda records, partition: int(b"not a number"))
    with pytest.raises(ValueError):
        run(asyncio.wait_for(replica.run(tmp_path / "another-process-tree"), 60))
    assert closed == [True]


async def _set_topic_config(bootstrap: str, topic: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = {name.replace("_", "."): value for name, value in configs.items()}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=names)])
    finally:
        await admin.close()


# The join's output, and a topic the intake writes (every creation, before the join sees it).
@pytest.mark.parametrize("refusing", ["SYSMON_TOPIC_JOIN", "SYSMON_TOPIC_PROCESS_CREATE"])
def test_a_write_the_broker_refuses_stops_the_worker_and_nothing_is_lost(
    refusing: str,
    kafka_bootstrap: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env() | SHORT_SESSION
    join_topic = env["SYSMON_TOPIC_JOIN"]
    refused_topic = env[refusing]
    guids, creations = chain(20, started=int(time.time()) - 600)
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    connects = [connect(f"{now}.{n:03d}", guid, 443) for n, guid in enumerate(guids)]
    port = free_port()
    worker = worker_factory(env, web_port=port)
    # Joined records are ~6 KB, creations ~1 KB, some hundreds of bytes compressed
    # (zstd, SYSMON_COMPRESSION's default): the topic now takes none.
    run(_set_topic_config(kafka_bootstrap, refused_topic, max_message_bytes="100"))
    with watching_health(worker, timeout=120) as watch:
        produce(kafka_bootstrap, env["SYSMON_TOPIC_INPUT"], creations + connects)
    unhealthy = watch.result()
    log = worker.log_path.read_text(errors="replace")
    stop_lines = [line for line in log.splitlines() if STOP_LINE in line]
    print(f"\n{stop_lines[0] if stop_lines else log[-2000:]}")
    assert worker.process.returncode == EXIT_STATUS and len(stop_lines) == 1
    assert unhealthy and unhealthy[-1]["reasons"]
    assert read_topic(kafka_bootstrap, env["SYSMON_TOPIC_DLQ"], expect=0, settle=2) == []

    # The topic takes them again: the restarted worker replays what was not committed.
    run(_set_topic_config(kafka_bootstrap, refused_topic, max_message_bytes="1048588"))
    worker = worker_factory(env, web_port=port)
    joined = read_topic(kafka_bootstrap, join_topic, expect=len(guids), timeout=120)
    assert sorted({r.json()["process_guid"] for r in joined}) == sorted(guids)
    created = read_topic(
        kafka_bootstrap, env["SYSMON_TOPIC_PROCESS_CREATE"], expect=len(guids), timeout=60
    )
    assert {r.json()["process_guid"] for r in created} == set(guids)
