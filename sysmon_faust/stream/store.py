"""The join's tables in RocksDB: :class:`sysmon_faust.core.join.store.PartitionStore` over Faust's.

Reads and writes go straight to the partition's RocksDB, and every write is
kept for the changelog: the join sends it after each record, straight to
the producer (in the partition's transaction under exactly_once), keeping the
persisted offsets recovery starts from (:mod:`sysmon_faust.stream.transactions`)
— what Faust's ``table[key] = value`` does, without its per-key layers: a
lookup through the table API reads RocksDB twice, a delete of a key Faust
has not cached deletes it in every partition's database, and Faust's own
``send_changelog`` builds a message, a future and a callback per write —
measured at ~25 µs per write against ~8 µs straight (``make bench``).

These writes skip RocksDB's write-ahead log, and so do the offsets
recovery starts from (Faust's persisted offsets, ``faust_fixes`` 15; the
bulk restore's batches) and the process-tree copy's write-through. The
changelogs make the tables durable, so a crash may lose what the log would
have kept: a database reopens as of its last memtable flush, with the
changelog offsets of that moment, and recovery reads the changelogs from
there — Kafka Streams' RocksDBStore writes the same way
(``WriteOptions.setDisableWAL(true)``). It is safe because no offset is
written more durably than the rows it covers (an offset the log kept while
the rows before it were lost would skip them). What still goes through the
log are batches of rows read from a topic (Faust's standby and recovery
batches, the tree copy's): rows that outlive their offset are only read
again. A put with the log cost 8.4 µs, without 3.4 (200 k puts of ~700
bytes, python-rocksdb, this machine): 157.6 -> 135.6 µs of worker CPU per
creation in the table fill (docs/benchmark.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

from faust.types import TableT

from sysmon_faust.compat import private
from sysmon_faust.core.join.store import Change, last_per_key

#: Bloom filter bits per key of every RocksDB the worker writes (the join's
#: tables, topology.py; the process-tree copy, tree_replica.py): they keep
#: lookups of unknown GUIDs — every creation's, most other events' — off the
#: disk. At Faust's 3 bits about one lookup in four per SST file reads a
#: block anyway (~24 % false positives); at 10, RocksDB's usual setting, ~1 %,
#: for ~1.2 MB of filter per million keys.
BLOOM_FILTER_BITS_PER_KEY = 10


class RocksDBTable:
    """One changelog-backed Faust table, read and written a partition at a time (bytes)."""

    def __init__(self, table: TableT) -> None:
        self.table = table
        self.unsent: list[Change] = []

    @cached_property
    def _store(self) -> Any:
        # faust.stores.rocksdb.Store. Not touched before the worker runs:
        # Faust creates the store, and fixes its folder, on first access.
        # Keys and values are bytes kept as they are (the raw codec): what
        # Faust would write is what is written here.
        return private.raw_rocksdb(self.table.data)

    def _db(self, partition: int) -> Any:
        return private.rocksdb_for_partition(self._store, partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db(partition).get(key)
        return value

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.unsent.append((partition, key, value))
        self._db(partition).put(key, value, disable_wal=True)

    def delete(self, partition: int, key: bytes) -> None:
        self.unsent.append((partition, key, None))
        self._db(partition).delete(key, disable_wal=True)

    def take_unsent(self) -> list[Change]:
        """The writes since the last call, one per key: the last (:func:`last_per_key`)."""
        unsent, self.unsent = self.unsent, []
        return last_per_key(unsent)

    def items_from(self, partition: int, prefix: bytes) -> list[tuple[bytes, bytes]]:
        items = self._db(partition).iteritems()
        items.seek(prefix)
        found = []
        for key, value in items:
            if not key.startswith(prefix):
                break
            found.append((key, value))
        return found

    def keys_from(self, partition: int, prefix: bytes) -> Iterator[bytes]:
        keys = self._db(partition).iterkeys()
        keys.seek(prefix)
        for key in keys:
            if not key.startswith(prefix):
                return
            yield key

    def keys(self, partition: int, start: bytes = b"") -> Iterator[bytes]:
        keys = self._db(partition).iterkeys()
        keys.seek(start)
        offset_key = self._store.offset_key  # Faust's: where the changelog was read up to
        for key in keys:
            if key != offset_key:
                yield key
