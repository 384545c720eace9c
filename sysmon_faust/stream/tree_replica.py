"""Every worker's own copy of the whole process tree, so an ancestry lookup never leaves it.

A process's parent usually lives on another partition of the re-keying
topic, owned by another worker. Asking that worker per hop (HTTP) would put
the network inside the join; re-keying creations by parent would send every
creation through the topic twice and make every new process's connects
wait. Instead, as Kafka Streams does with a GlobalKTable:

* The intake writes one *parent link* per ProcessCreate it reads
  (:func:`sysmon_faust.core.ancestry.encode_link`) to the compacted topic
  ``<app_id>-process-tree``, keyed by the process's GUID — before the events
  it reads after that creation, and into its own worker's copy at once. The
  join writes a tombstone when it deletes the process's row (retention,
  TTL): the tree is as bounded as the table.
* Every worker reads **all** partitions of that topic into a RocksDB of its
  own (``<data dir>/process-tree``), with the offsets it has read in the same
  atomic write, so a restart goes on where it stopped. Rebalancing does not
  touch it: it holds every partition whichever worker owns which.

What a copy cannot know is a link another worker's intake has not written
*yet* — it reads another input partition, and lags behind. So each intake
also writes, into every partition of the topic, how far in event time it has
written each input partition it reads (a *watermark*; the wall clock once
the partition is read to its end: what comes next happens from now on). A
watermark follows the links it covers in each partition of the topic, so a
copy that has read it has those links.
When a walk stops at an ancestor whose link is missing, the join asks
:meth:`TreeReplica.may_come`: is some input partition still before that
ancestor's start time (which Sysmon encodes in its GUID, if it is plausible:
:mod:`sysmon_faust.core.guid_time`)? Only then may its creation still come, and
the join is parked (:mod:`sysmon_faust.core.join.parking`) — at most
``SYSMON_ANCESTRY_WAIT`` seconds, released when :attr:`TreeReplica.version`
says the copy read something that settles it. Ancestors that started long
ago, were never seen, or carry no believable start time cost no wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import rocksdb
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.stores.rocksdb import RocksDBOptions

from sysmon_faust.core import ancestry
from sysmon_faust.core.ancestry import (
    WATERMARK_PREFIX,
    Row,
    creation_may_come,
    decode_watermark,
)
from sysmon_faust.core.memo import MISSING, Memo
from sysmon_faust.core.rekey import key_partition
from sysmon_faust.stream import faults, state_check
from sysmon_faust.stream.store import BLOOM_FILTER_BITS_PER_KEY

log = logging.getLogger(__name__)

#: Keys of the copy's own bookkeeping: the next offset to read, per partition.
_OFFSET_PREFIX: Final = b"\x00offset:"
#: ... and the watermarks read: partition of the topic, input partition.
_STORED_WATERMARK_PREFIX: Final = b"\x00read-watermark:"

#: The copy's RocksDB: small buffers and bloom filters, as the join's small
#: tables (topology.py): a walk looks up parents the copy never held.
_ROCKSDB_OPTIONS: Final = {
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024**2,
    "block_cache_compressed_size": 1 * 1024**2,
    "bloom_filter_size": BLOOM_FILTER_BITS_PER_KEY,
}

#: Links (and absences) remembered at most (see TreeReplica.link): ~10 MB.
LINK_CACHE_ENTRIES: Final = 16_384


class TreeReplica:
    """The local copy of ``<app_id>-process-tree`` (see the module docstring)."""

    def __init__(
        self,
        topic: str,
        partitions: int,
        bootstrap_servers: str,
        client_options: Mapping[str, Any],
        read_committed: bool,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self._bootstrap_servers = bootstrap_servers
        self._client_options = dict(client_options)
        self._read_committed = read_committed
        self._db: Any = None
        #: Per partition of the topic: per input partition, its watermark.
        self._watermarks: dict[int, dict[int, int]] = {}
        #: Set once the copy has read everything the topic held when it started.
        self.caught_up = asyncio.Event()
        #: Moves on with every batch the copy reads: parked joins are looked
        #: at again only then (sysmon_faust.core.join.parking).
        self.version = 0
        self.records_read = 0
        #: Links read or written lately, by GUID (None: absent): see link().
        self._links: Memo[str, bytes | None] = Memo(LINK_CACHE_ENTRIES)

    # --- reads (the join) ------------------------------------------------------

    def link(self, guid: str) -> bytes | None:
        """The process's parent link (:func:`sysmon_faust.core.ancestry.encode_link`), None
        when this copy has none.

        Remembered, present or absent (:mod:`sysmon_faust.core.memo`, at most
        :data:`LINK_CACHE_ENTRIES`): a walk reads a link per ancestor, and the
        same ancestors (services.exe, explorer.exe, a build's shell) are walked
        through by most events. Every write of the copy — :meth:`apply`,
        :meth:`write_through` — updates what is remembered, and all run on the
        worker's event loop. What the copy reads is remembered as well: a new
        process's link is what its children's walks ask for next (a present
        key's get took 9.5-11.4 µs at 1 M keys; docs/benchmark.md). The price:
        the memo starts over every 16,384 links the cluster creates, and the
        ancestors most walks share are then read once more.
        """
        cached = self._links.get(guid)
        if cached is not MISSING:
            return cached  # type: ignore[return-value]
        if self._db is None:
            return None
        value: bytes | None = self._db.get(guid.encode())
        self._links.put(guid, value)
        return value

    def partition_of(self, guid: str) -> int:
        return key_partition(guid.encode(), self.partitions)

    def may_come(self, guid: str, start_ms: int | None) -> bool:
        """Whether the missing link of ``guid`` may still come (see :func:`creation_may_come`)."""
        watermarks = self._watermarks.get(self.partition_of(guid), {}).values()
        return creation_may_come(start_ms, watermarks)

    def walk(self, row: Row, depth: int) -> ancestry.Walk:
        """Up to ``depth`` ancestors of ``row``'s process, as this copy holds them now."""
        return ancestry.ancestry(row, self.link, depth)

    # --- writes ------------------------------------------------------------------

    def write_through(self, guid: str, link: bytes | None) -> None:
        """A link (None: deleted) the join has just sent: seen here before Kafka echoes it."""
        if self._db is None:
            return
        # No write-ahead log (as sysmon_faust.stream.store): a link lost in a
        # crash is read again from the topic, whose batches (apply) write it
        # with the offset after it.
        if link is None:
            self._db.delete(guid.encode(), disable_wal=True)
        else:
            self._db.put(guid.encode(), link, disable_wal=True)
        self._links.put(guid, link)
        self.version += 1

    # --- the reader ----------------------------------------------------------------

    def open(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._links.clear()
        options = RocksDBOptions(use_rocksdict=False, **_ROCKSDB_OPTIONS)
        self._db = options.open(path)
        keys = self._db.iteritems()
        keys.seek(_STORED_WATERMARK_PREFIX)
        for key, value in keys:
            if not key.startswith(_STORED_WATERMARK_PREFIX):
                break
            partition, input_partition = map(int, key[len(_STORED_WATERMARK_PREFIX) :].split(b":"))
            self._watermarks.setdefault(partition, {})[input_partition] = decode_watermark(value)

    def close(self) -> None:
        self._links.clear()
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def _next_offsets(self) -> dict[int, int]:
        found = {}
        for partition in range(self.partitions):
            stored = self._db.get(_OFFSET_PREFIX + b"%d" % partition)
            if stored is not None:
                found[partition] = int(stored)
        return found

    def apply(self, records: Iterable[Any], partition: int) -> None:
        """Write one fetched batch of a partition, and the offset after it, atomically."""
        batch = rocksdb.WriteBatch()
        last_offset = None
        # Remembered as read, not forgotten (link()): a new process's link is
        # what its children's walks ask for next. Only once written, so that
        # what is remembered is what the copy holds even if the write fails.
        links: list[tuple[str, bytes | None]] = []
        for record in records:
            last_offset = record.offset
            self.records_read += 1
            key, value = record.key, record.value
            if key is None:
                continue
            if key.startswith(WATERMARK_PREFIX):
                if value is not None:
                    input_partition = int(key[len(WATERMARK_PREFIX) :])
                    watermarks = self._watermarks.setdefault(partition, {})
                    watermarks[input_partition] = decode_watermark(value)
                    batch.put(
                        _STORED_WATERMARK_PREFIX + b"%d:%d" % (partition, input_partition), value
                    )
            else:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
                # Per link every worker reads: try costs nothing when nothing is
                # raised, contextlib.suppress ~0.3 µs (156 against 453 ns, timeit).
                try:
                    guid = key.decode()
                except UnicodeDecodeError:
                    continue  # never a GUID the join asks for (no str encodes to it)
                links.append((guid, value))
        if last_offset is None:
            return
        batch.put(_OFFSET_PREFIX + b"%d" % partition, b"%d" % (last_offset + 1))
        self._db.write(batch)
        for guid, link in links:
            self._links.put(guid, link)
        self.version += 1

    async def run(self, path: Path) -> None:
        """Read the topic into the copy for as long as the worker runs.

        Raises what stops it: an ``OSError`` or ``rocksdb.errors.Error`` (a
        full disk; the copy's RocksDB is then left open, for the worker's
        exit — see below), or anything else after closing the copy, so that
        it can be opened again. ``KafkaError`` while reading is logged and
        retried here.
        """
        # A copy ahead of a topic created again (a rebuilt cluster) is set
        # aside and read anew, not trusted.
        await state_check.set_aside_stale_tree_copy(
            path, self.topic, self._bootstrap_servers, self._client_options
        )
        self.open(path)
        closing = True
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if self._read_committed else "read_uncommitted",
            **self._client_options,
        )
        try:
            await consumer.start()
            partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            # Asked before the assignment: after it, each request waits behind
            # the consumer's fetch, which the broker holds up to 0.5 s on a
            # quiet topic (a connection's requests are answered in order).
            started = time.monotonic()
            end_at_start = await consumer.end_offsets(partitions)
            consumer.assign(partitions)
            next_offsets = self._next_offsets()
            unread = []
            for tp in partitions:
                if tp.partition in next_offsets:
                    consumer.seek(tp, next_offsets[tp.partition])
                else:
                    unread.append(tp)
            if unread:
                # In one call: aiokafka resolves each call's reset in turn
                # (0.38 s a partition here: 1.5 s of every first start).
                await consumer.seek_to_beginning(*unread)
            await self._read(consumer, end_at_start, started)
        except (OSError, rocksdb.errors.Error):
            # Its RocksDB failed (a full disk) and the worker exits on it
            # (agents.read_process_tree): not closed, because a close waits
            # for a memtable flush that cannot succeed and would block the
            # event loop for good — /health could not say why in the
            # seconds before the exit (seen in CI's full-disk test; 3 runs
            # in 20 here). A socket's OSError stops the worker too.
            closing = False
            raise
        finally:
            await consumer.stop()
            if closing:
                self.close()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
        for tp, end in offsets.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _read(
        self, consumer: AIOKafkaConsumer, end_at_start: dict[TopicPartition, int], started: float
    ) -> None:
        if not self.caught_up.is_set() and await self._reached(consumer, end_at_start):
            # Nothing to read (a new topic, or a copy up to date): no fetch's
            # 0.5 s wait before the join may start.
            self._set_caught_up(started)
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=500, max_records=5_000)
            except KafkaError as exc:  # the consumer reconnects by itself; say so and go on
                log.warning("process-tree copy: %r; retrying", exc)
                await asyncio.sleep(1)
                continue
            await faults.hold_if_stopping()
            for tp, records in fetched.items():
                self.apply(records, tp.partition)
            if not self.caught_up.is_set() and await self._reached(consumer, end_at_start):
                self._set_caught_up(started)

    def _set_caught_up(self, started: float) -> None:
        self.caught_up.set()
        log.info(
            "process-tree copy: caught up with %s (%d records in %.1f s)",
            self.topic, self.records_read, time.monotonic() - started,
        )  # fmt: skip
