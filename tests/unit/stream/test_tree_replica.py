from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import rocksdb

from sysmon_faust.core.ancestry import (
    START_TO_CREATION_MS,
    creation_may_come,
    decode_watermark,
    encode_watermark,
    watermark_key,
)
from sysmon_faust.stream.tree_replica import TreeReplica


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[TreeReplica]:
    """A copy opened on an empty folder, closed after the test."""
    opened = TreeReplica("tree", 4, "127.0.0.1:1", {}, read_committed=False)
    opened.open(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


# Started at 0x5ce06e79 s = 2019-05-18 20:43:37 UTC (Sysmon's GUID layout).
GUID = "{03ba39f5-6e79-5ce0-0000-001032d21002}"
START_MS = 0x5CE06E79 * 1000


PASSED = START_MS + START_TO_CREATION_MS


@pytest.mark.parametrize(
    ("start_ms", "watermarks", "may_come"),
    [
        (START_MS, [], True),  # no intake has written anything yet
        (START_MS, [START_MS - 60_000], True),  # the input is behind the process's start
        (START_MS, [PASSED - 1], True),
        (START_MS, [PASSED], False),  # passed it: never seen, not coming
        (START_MS, [START_MS + 3_600_000], False),
        (START_MS, [PASSED, PASSED - 1], True),  # one input partition is still behind
        (START_MS, [PASSED, START_MS + 3_600_000], False),
        # No start time, or none believed (guid_time): no way to tell, no wait.
        (None, [], False),
        (None, [START_MS - 60_000], False),
    ],
)
def test_creation_may_come(start_ms: int | None, watermarks: list[int], may_come: bool) -> None:
    assert creation_may_come(start_ms, watermarks) is may_come


def test_watermark_round_trip() -> None:
    assert decode_watermark(encode_watermark(START_MS)) == START_MS


def record(offset: int, key: bytes | None, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, key=key, value=value)


def test_copy_applies_links_tombstones_and_watermarks_and_keeps_its_offsets(
    tmp_path: Path,
) -> None:
    replica = TreeReplica("tree", 4, "127.0.0.1:1", {}, read_committed=False)
    partition = replica.partition_of(GUID)
    replica.open(tmp_path)
    try:
        assert replica.may_come(GUID, START_MS)
        replica.apply(
            [
                record(0, GUID.encode(), b'{"process_guid": "p"}'),
                record(1, watermark_key(0), encode_watermark(START_MS + 5_000)),
            ],
            partition,
        )
        assert replica.link(GUID) == b'{"process_guid": "p"}'
        assert not replica.may_come(GUID, START_MS)
        # Another input partition, behind: its intake may still write the link.
        replica.apply([record(2, watermark_key(1), encode_watermark(START_MS))], partition)
        assert replica.may_come(GUID, START_MS)
        replica.apply([record(7, GUID.encode(), None)], partition)  # the row was deleted
        assert replica.link(GUID) is None
        assert replica._next_offsets() == {partition: 8}
    finally:
        replica.close()
    # A restart goes on from the stored offset and watermark.
    again = TreeReplica("tree", 4, "127.0.0.1:1", {}, read_committed=False)
    again.open(tmp_path)
    try:
        assert again._next_offsets() == {partition: 8}
        assert again.may_come(GUID, START_MS)  # input partition 1's watermark, kept
        again.apply([record(8, watermark_key(1), encode_watermark(PASSED))], partition)
        assert not again.may_come(GUID, START_MS)
    finally:
        again.close()


def test_write_through_is_seen_at_once(replica: TreeReplica) -> None:
    replica.write_through(GUID, b"{}")
    assert replica.link(GUID) == b"{}"
    replica.write_through(GUID, None)
    assert replica.link(GUID) is None


# --- waiting for a link in flight -------------------------------------------

PARENT = "{03ba39f5-6e79-5ce0-0000-001032d21003}"  # started with GUID's process
CHILD_ROW = {
    "process_guid": GUID,
    "parent_process_guid": PARENT,
    "parent_process_path": "C:\\Windows\\System32\\cmd.exe",
    "parent_process_command_line": "cmd",
}
#: The parent's own creation names its parent by image only: the walk ends there.
PARENT_LINK = (
    b'{"process_guid": null, "process_path": "services.exe", "process_command_line": null}'
)


def replica_at(tmp_path: Path) -> TreeReplica:
    replica = TreeReplica("tree", 4, "127.0.0.1:1", {}, read_committed=False)
    replica.open(tmp_path)
    return replica


def test_a_walk_stops_at_a_missing_link_and_goes_on_once_it_is_read(tmp_path: Path) -> None:
    replica = replica_at(tmp_path)
    partition = replica.partition_of(PARENT)
    try:
        version = replica.version
        walk = replica.walk(CHILD_ROW, 4)
        assert [hop["process_guid"] for hop in walk.ancestors] == [PARENT]
        assert walk.unknown == PARENT
        # No intake has written a watermark: the parent's link may still come.
        assert replica.may_come(PARENT, START_MS)
        replica.apply([record(0, PARENT.encode(), PARENT_LINK)], partition)
        assert replica.version > version  # what tells parked joins to look again
        walk = replica.walk(CHILD_ROW, 4)
    finally:
        replica.close()
    assert [hop["process_path"] for hop in walk.ancestors] == [
        "C:\\Windows\\System32\\cmd.exe",
        "services.exe",
    ]
    assert walk.unknown is None


def test_a_link_passed_by_every_watermark_cannot_come(tmp_path: Path) -> None:
    replica = replica_at(tmp_path)
    partition = replica.partition_of(PARENT)
    try:
        # Every input partition is past the parent's start: it was never seen.
        replica.apply([record(0, watermark_key(0), encode_watermark(PASSED))], partition)
        assert not replica.may_come(PARENT, START_MS)
        assert replica.walk(CHILD_ROW, 4).unknown == PARENT
    finally:
        replica.close()


class _CountingGets:
    """Counts the copy's RocksDB gets."""

    def __init__(self, replica: TreeReplica) -> None:
        self.reads = 0
        db = replica._db

        class _Db:
            def __getattr__(_self, name: str):  # type: ignore[no-untyped-def]
                return getattr(db, name)

            def get(_self, key: bytes) -> bytes | None:
                self.reads += 1
                value: bytes | None = db.get(key)
                return value

        replica._db = _Db()


def test_links_are_remembered_present_or_absent(tmp_path: Path) -> None:
    db = rocksdb.DB(str(tmp_path), rocksdb.Options(create_if_missing=True))
    db.put(GUID.encode(), b"{}")
    del db
    replica = TreeReplica("tree", 4, "127.0.0.1:1", {}, read_committed=False)
    replica.open(tmp_path)  # nothing remembered
    try:
        counter = _CountingGets(replica)
        for _ in range(3):
            assert replica.link(GUID) == b"{}"
            assert replica.link("{unknown}") is None
        assert counter.reads == 2
    finally:
        replica.close()


def test_links_the_topic_brings_are_remembered_as_read(replica: TreeReplica) -> None:
    # The walks that ask for a new process's link next (its children's) read
    # no RocksDB: 12,010 / 11,323 against 10,350 / 9,793 creations/s in a
    # table fill whose links came 50,000 creations ahead (docs/benchmark.md).
    counter = _CountingGets(replica)
    replica.apply([record(0, GUID.encode(), b"{}"), record(1, b"{other}", None)], 0)
    assert replica.link(GUID) == b"{}"
    assert replica.link("{other}") is None
    assert counter.reads == 0
    replica._links.clear()  # what was remembered is what the copy holds
    assert replica.link(GUID) == b"{}"
    assert replica.link("{other}") is None
    assert counter.reads == 2


def test_a_batch_not_written_is_not_remembered(replica: TreeReplica) -> None:
    class _Full:
        def write(self, batch: object) -> None:
            raise OSError("No space left on device")

    db, replica._db = replica._db, _Full()
    with pytest.raises(OSError):
        replica.apply([record(0, GUID.encode(), b"{}")], 0)
    replica._db = db
    assert replica.link(GUID) is None


def test_what_the_topic_brings_replaces_what_was_remembered(replica: TreeReplica) -> None:
    assert replica.link(GUID) is None  # remembered absent
    replica.apply([record(0, GUID.encode(), b'{"a": 1}')], 0)
    assert replica.link(GUID) == b'{"a": 1}'
    replica.apply([record(1, GUID.encode(), None)], 0)  # its row was deleted
    assert replica.link(GUID) is None
    replica.write_through(GUID, b'{"b": 2}')
    assert replica.link(GUID) == b'{"b": 2}'
    replica.apply([record(2, b"\xff\xfe", b"{}")], 0)  # a key no GUID has: no harm
    assert replica.link(GUID) == b'{"b": 2}'
    assert replica._next_offsets()[0] == 3  # and the offset moved past it


def test_a_copy_opened_again_reads_its_links_again(tmp_path: Path) -> None:
    replica = TreeReplica("tree", 4, "127.0.0.1:1", {}, read_committed=False)
    replica.open(tmp_path)
    assert replica.link(GUID) is None
    replica.close()
    # What another process wrote while it was closed (a copy set aside and
    # read anew, say) is seen.
    db = rocksdb.DB(str(tmp_path), rocksdb.Options(create_if_missing=True))
    db.put(GUID.encode(), b"{}")
    del db
    replica.open(tmp_path)
    try:
        assert replica.link(GUID) == b"{}"
    finally:
        replica.close()
