"""The bulk restore of changelogs (stream/bulk_restore.py), against a real broker and RocksDB.

The reference is the changelog replayed in a dict (last value wins, a
tombstone deletes); the restore must leave every partition's database equal
to it, with Faust's persisted offset at the partition's last record — also
when a restore is killed midway and started again from what reached its
files (its writes skip the write-ahead log: stream/store.py).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rocksdb
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, TopicPartition
from faust.types import TP

from sysmon_faust.compat import private
from sysmon_faust.stream import bulk_restore
from tests.support import create_topic, produce

PARTITIONS = 3


def _changelog(seed: int, records: int) -> list[tuple[int, bytes, bytes | None]]:
    """(partition, key, value or None): overwrites and tombstones of a small key space."""
    rng = random.Random(seed)
    written = []
    for n in range(records):
        key = b"k%05d" % rng.randrange(records // 4)
        value = None if rng.random() < 0.1 else b"v%d-" % n + b"x" * rng.randrange(200)
        written.append((rng.randrange(PARTITIONS), key, value))
    return written


def _fill(bootstrap: str, topic: str, changelog: list[tuple[int, bytes, bytes | None]]) -> None:
    create_topic(bootstrap, topic, PARTITIONS)
    for partition in range(PARTITIONS):
        mine = [(key, value) for p, key, value in changelog if p == partition]
        values: list[Any] = [v for _, v in mine]
        produce(bootstrap, topic, values, partition, keys=[k for k, _ in mine])


def _reference(
    changelog: list[tuple[int, bytes, bytes | None]],
) -> dict[int, tuple[dict[bytes, bytes], int]]:
    """Per partition: the state a replay leaves, and the offset of its last record."""
    state: dict[int, tuple[dict[bytes, bytes], int]] = {p: ({}, -1) for p in range(PARTITIONS)}
    for partition, key, value in changelog:
        values, last = state[partition]
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
        state[partition] = (values, last + 1)
    return state


def _open(folder: Path, partition: int) -> rocksdb.DB:
    return rocksdb.DB(str(folder / f"p{partition}.db"), rocksdb.Options(create_if_missing=True))


def _contents(db: rocksdb.DB) -> tuple[dict[bytes, bytes], int | None]:
    keys = db.iteritems()
    keys.seek_to_first()
    values = dict(keys)
    offset = values.pop(bulk_restore.OFFSET_KEY, None)
    return values, int(offset) if offset is not None else None


def _partitions(topic: str, folder: Path) -> list[bulk_restore.Partition]:
    parts = []
    for partition in range(PARTITIONS):
        db = _open(folder, partition)
        persisted = _contents(db)[1]
        parts.append(bulk_restore.Partition(topic, partition, db, persisted))
    return parts


def test_the_restored_state_is_the_changelog_replayed(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_name("changelog")
    changelog = _changelog(seed=11, records=30_000)
    _fill(kafka_bootstrap, topic, changelog)
    parts = _partitions(topic, tmp_path)

    written = bulk_restore.restore(parts, {"bootstrap.servers": kafka_bootstrap}, min_records=1)

    assert written == len(changelog)
    for partition, (values, last) in _reference(changelog).items():
        assert _contents(parts[partition].db) == (values, last)
    # Nothing new on the topic: a second restore reads nothing (it starts after the offset).
    again = [
        bulk_restore.Partition(topic, part.partition, part.db, _contents(part.db)[1])
        for part in parts
    ]
    assert bulk_restore.restore(again, {"bootstrap.servers": kafka_bootstrap}, min_records=1) == 0


def test_nothing_is_read_past_fausts_highwater_nor_after_a_stop(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # Faust's recovery takes its highwaters before the restore runs; a
    # persisted offset past them is a ConsistencyError in its recovery.
    topic = unique_name("changelog")
    changelog = _changelog(seed=14, records=12_000)
    _fill(kafka_bootstrap, topic, changelog)
    ends = [1_000, 2_500, 4]  # offsets (exclusive) per partition
    parts = [
        bulk_restore.Partition(topic, p, _open(tmp_path, p), None, end=ends[p])
        for p in range(PARTITIONS)
    ]
    bulk_restore.restore(parts, {"bootstrap.servers": kafka_bootstrap}, min_records=1)
    below = [(p, k, v) for n, (p, k, v) in _numbered(changelog) if n < ends[p]]
    for partition, (values, last) in _reference(below).items():
        assert _contents(parts[partition].db) == (values, last) == (values, ends[partition] - 1)

    # Stopped (the recovery it was for is gone), or out of time: nothing is written.
    stopped = threading.Event()
    stopped.set()
    for n, kwargs in enumerate(({"stop": stopped}, {"deadline": time.monotonic()})):
        (tmp_path / f"fresh{n}").mkdir()
        fresh = [
            bulk_restore.Partition(topic, p, _open(tmp_path / f"fresh{n}", p), None)
            for p in range(PARTITIONS)
        ]
        bulk_restore.restore(fresh, {"bootstrap.servers": kafka_bootstrap}, 1, **kwargs)  # type: ignore[arg-type]
        assert all(_contents(part.db) == ({}, None) for part in fresh)


def _numbered(
    changelog: list[tuple[int, bytes, bytes | None]],
) -> list[tuple[int, tuple[int, bytes, bytes | None]]]:
    """Each record with its offset in its partition."""
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    numbered = []
    for record in changelog:
        numbered.append((offsets[record[0]], record))
        offsets[record[0]] += 1
    return numbered


_KILLABLE = textwrap.dedent(
    """
    import sys, time, rocksdb
    from sysmon_faust.stream import bulk_restore
    bulk_restore.WRITE_EVERY = 500
    topic, folder, bootstrap = sys.argv[1:4]
    write = bulk_restore.Partition.write
    def slow_write(self, *args, **kwargs):  # slow enough to be killed between two batches
        write(self, *args, **kwargs)
        time.sleep(0.05)
    bulk_restore.Partition.write = slow_write
    # Its batches skip the write-ahead log (stream/store.py): a kill leaves
    # what the memtables flushed, whole batches with their offsets. Small
    # memtables flush a few batches each.
    parts = []
    for partition in range(3):
        options = rocksdb.Options(create_if_missing=True, write_buffer_size=64 * 1024)
        db = rocksdb.DB(f"{folder}/p{partition}.db", options)
        parts.append(bulk_restore.Partition(topic, partition, db, None))
    bulk_restore.restore(parts, {"bootstrap.servers": bootstrap}, min_records=1)
    """
)


def test_a_restore_killed_midway_goes_on_from_its_last_batch(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_name("changelog")
    changelog = _changelog(seed=12, records=30_000)
    _fill(kafka_bootstrap, topic, changelog)
    restoring = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, topic, str(tmp_path), kafka_bootstrap]
    )
    try:
        # Killed once a few batches are in: RocksDB holds a prefix of each partition.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and restoring.poll() is None:
            time.sleep(0.3)
            if _written_enough(tmp_path):
                break
        restoring.send_signal(signal.SIGKILL)
        assert restoring.wait(timeout=30) == -signal.SIGKILL
    finally:
        if restoring.poll() is None:
            restoring.kill()

    parts = _partitions(topic, tmp_path)
    midway = [part.persisted for part in parts]
    reference = _reference(changelog)
    assert any(offset is not None and offset < reference[p][1] for p, offset in enumerate(midway))

    bulk_restore.restore(parts, {"bootstrap.servers": kafka_bootstrap}, min_records=1)
    for partition, (values, last) in reference.items():
        assert _contents(parts[partition].db) == (values, last)


def _written_enough(folder: Path) -> bool:
    """Whether the killable restore has a few batches in its table files (read from the
    files: the databases are locked by it)."""
    return sum(f.stat().st_size for f in folder.glob("p*.db/*.sst")) > 200_000


async def _produce_in_transactions(
    bootstrap: str, topic: str, transactions: list[tuple[bool, list[tuple[bytes, bytes | None]]]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{topic}-writer", enable_idempotence=True
    )
    await producer.start()
    try:
        for commit, records in transactions:
            await producer.begin_transaction()
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key, partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


def test_under_exactly_once_only_committed_records_are_restored_and_the_markers_passed(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # A changelog written in transactions, as the join writes it under
    # exactly_once: committed and aborted ones, a commit marker after each.
    topic = unique_name("changelog")
    create_topic(kafka_bootstrap, topic, 1)
    rng = random.Random(13)
    transactions = []
    for n in range(40):
        records = [(b"k%03d" % rng.randrange(60), None if rng.random() < 0.1 else b"v%d" % n)
                   for _ in range(rng.randrange(1, 30))]  # fmt: skip
        transactions.append((rng.random() < 0.7, records))
    aborted_tail = [(b"k%03d" % n, b"aborted") for n in range(5)]
    transactions.append((False, aborted_tail))  # the end: an aborted transaction
    asyncio.run(_produce_in_transactions(kafka_bootstrap, topic, transactions))
    committed: dict[bytes, bytes] = {}
    for commit, records in transactions:
        for key, value in records if commit else ():
            if value is None:
                committed.pop(key, None)
            else:
                committed[key] = value
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic}-probe"})
    end = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    probe.close()

    db = _open(tmp_path, 0)
    part = bulk_restore.Partition(topic, 0, db, None)
    bulk_restore.restore([part], {"bootstrap.servers": kafka_bootstrap}, min_records=1)

    # The last offset is a commit or abort marker: the persisted offset is
    # past it, so Faust's recovery has nothing left to wait for.
    assert _contents(db) == (committed, end - 1)
    assert part.records == sum(len(r) for commit, r in transactions if commit)

    # Faust's highwater inside that aborted transaction (its records filtered
    # out, the end reached past it): the offset stops at the highwater.
    tail_start = sum(len(records) + 1 for _, records in transactions[:-1])
    (tmp_path / "bounded").mkdir()
    db = _open(tmp_path / "bounded", 0)
    bounded = bulk_restore.Partition(topic, 0, db, None, end=tail_start + 2)
    bulk_restore.restore([bounded], {"bootstrap.servers": kafka_bootstrap}, min_records=1)
    assert _contents(db) == (committed, tail_start + 1)


def test_a_cancelled_restore_writes_nothing_once_it_has_returned(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As Faust runs it: before its own recovery, Faust's offsets following the
    # batches written; then cancelled (a rebalance) while it still reads.
    topic = unique_name("changelog")
    changelog = _changelog(seed=15, records=30_000)
    _fill(kafka_bootstrap, topic, changelog)
    ends = Counter(partition for partition, _, _ in changelog)
    databases = {p: _open(tmp_path, p) for p in range(PARTITIONS)}

    class Store:  # the part of Faust's RocksDB store the restore uses
        def persisted_offset(self, tp: TP) -> int | None:
            return _contents(databases[tp.partition])[1]

        def _db_for_partition(self, partition: int) -> rocksdb.DB:
            return databases[partition]

    write = bulk_restore.Partition.write

    def slow_write(self: bulk_restore.Partition, *args: Any, **kwargs: Any) -> None:
        write(self, *args, **kwargs)
        time.sleep(0.05)

    monkeypatch.setattr(private, "changelog_store", lambda app, topic: Store())
    monkeypatch.setattr(bulk_restore, "WRITE_EVERY", 500)
    monkeypatch.setattr(bulk_restore.Partition, "write", slow_write)
    tps = {TP(topic, p) for p in range(PARTITIONS)}
    recovery = SimpleNamespace(
        active_highwaters={tp: ends[tp.partition] - 1 for tp in tps},
        active_offsets=Counter(),
        in_recovery=True,
        active_remaining_total=lambda: 0,
    )

    async def cancel_midway() -> None:
        restoring = asyncio.create_task(
            bulk_restore.restore_active(
                None, recovery, tps, {"bootstrap.servers": kafka_bootstrap}, min_records=1
            )
        )
        await asyncio.sleep(1.5)
        restoring.cancel()
        with pytest.raises(asyncio.CancelledError):
            await restoring

    asyncio.run(cancel_midway())
    offsets = {p: _contents(db)[1] for p, db in databases.items()}
    time.sleep(1.0)
    assert {p: _contents(db)[1] for p, db in databases.items()} == offsets
    # Midway: something written, not everything (librdkafka may hand out one
    # partition's records before another's: some may have none yet).
    assert any(offset is not None for offset in offsets.values())
    assert any(offset is None or offset < ends[p] - 1 for p, offset in offsets.items())
    # Faust's offsets followed the batches written (-1: none yet).
    assert {tp.partition: recovery.active_offsets[tp] for tp in tps} == {
        p: -1 if offset is None else offset for p, offset in offsets.items()
    }
    # And what was written is a prefix of the changelog, replayed.
    numbered = _numbered(changelog)
    for p, offset in offsets.items():
        last = -1 if offset is None else offset
        prefix = [record for n, record in numbered if record[0] == p and n <= last]
        assert _contents(databases[p])[0] == _reference(prefix)[p][0]
