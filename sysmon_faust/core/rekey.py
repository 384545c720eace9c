"""The record format of the internal re-keying topic ``<app_id>-events-by-process-guid``.

The intake writes Sysmon 1, 3 and 5 events to the partition of their
process_guid — Kafka's default partitioner (murmur2 of the key bytes), so
the partition is the one the table's changelog, HTTP routing and any Kafka
client agree on. It writes them in *batches*: one record holds, as a JSON
array in input order, the events of one intake batch that belong to one
partition. Why: Faust spends ~0.3 ms of CPU on every record it hands to an
agent, more than the join itself; a batch pays it once (``make bench``).
The join writes the second hops of Sysmon 8/10 (:data:`TARGET_LOOKUP`) the
same way: the hops made while it handles one record, one batch per target
partition.

What the join relies on still holds, because it holds per partition: the
events of one process are in one partition, in the order the intake read
them. Each event is a JSON object with the fields of
:class:`sysmon_faust.core.records.ProcessCreate` or ``NetworkConnect`` plus the
three bookkeeping fields below, and its EventData when it has any
(:func:`event_record`). A plain JSON object (one event, the format
before batching) is read as a batch of one.

Pure functions; table-tested in tests/unit/core/test_rekey.py.
"""

from __future__ import annotations

import functools
import random
import struct
from typing import Any, Final

import orjson

from sysmon_faust.core.normalize import NormalizedEvent
from sysmon_faust.core.sigma.fields import EVENT_DATA

#: The Sysmon event id (1, 3 or 5), or TICK.
EVENT_ID_FIELD: Final = "_event_id"
#: Not an event: a worker's periodic nudge so a quiet partition's waiting
#: connects can expire by the wall clock (sysmon_faust.stream.ticks).
TICK: Final = 0
#: A Sysmon 8/10 ``sysmon-enriched`` record whose source side is done, written
#: by the join to its target process's partition for the target's side
#: (:mod:`sysmon_faust.core.join.engine`, the second hop).
TARGET_LOOKUP: Final = -1
#: Kafka timestamp (seconds) of the input record: for the processing-latency histogram.
RECEIVED_FIELD: Final = "_received"
#: Event time in milliseconds: the timestamp of the records the join writes.
EVENT_TIME_FIELD: Final = "_event_time_ms"

#: A batch record is closed at this size: ~50 events of the benchmark's
#: workload, enough to spread Faust's per-record cost thin, small enough that
#: Faust's stream buffer (topology.py) stays a few megabytes.
MAX_BATCH_BYTES: Final = 64 * 1024


_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


@functools.lru_cache(maxsize=16_384)
def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``), as an unsigned 32-bit int.

    It runs twice for every Sysmon 1/3 event. aiokafka's pure-Python version
    works byte by byte; this one reads little-endian 32-bit words (~2x faster)
    and remembers recent keys (a process's connects repeat its GUID). A unit
    test holds the two equal.
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[words * 4 :]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def event_record(event: NormalizedEvent, received_s: float | None = None) -> dict[str, Any]:
    """One event as a re-keying record holds it: the bookkeeping fields, its normalized
    fields, and its EventData (for the rules) when it has any.

    ``received_s``: its input record's Kafka timestamp (seconds), for the
    processing-latency histogram; None: not written (an offline run). The one
    place the format is made: the intake, ``LocalJoin`` (``rules test``) and
    the benchmarks write what the join reads.
    """
    record: dict[str, Any] = {EVENT_ID_FIELD: event.event_id}
    if received_s is not None:
        record[RECEIVED_FIELD] = received_s
    record[EVENT_TIME_FIELD] = event.timestamp_ms
    record |= event.fields
    if event.event_data:
        record[EVENT_DATA] = event.event_data
    return record


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def kafka_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's DefaultPartitioner with the faster murmur2 (for keyed records)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[key_partition(key, len(all_partitions))]


class BatchBuilder:
    """Collects encoded events per partition and cuts them into batch records."""

    def __init__(self) -> None:
        self._open: dict[int, list[bytes]] = {}
        self._sizes: dict[int, int] = {}
        self.closed: list[tuple[int, bytes]] = []

    def add(self, partition: int, event: bytes) -> None:
        events = self._open.setdefault(partition, [])
        events.append(event)
        self._sizes[partition] = self._sizes.get(partition, 0) + len(event) + 1
        if self._sizes[partition] >= MAX_BATCH_BYTES:
            self._close(partition)

    def finish(self) -> list[tuple[int, bytes]]:
        """Every batch record as ``(partition, value)``, in the order they were closed."""
        for partition in list(self._open):
            self._close(partition)
        closed, self.closed = self.closed, []
        return closed

    def _close(self, partition: int) -> None:
        events = self._open.pop(partition)
        del self._sizes[partition]
        self.closed.append((partition, b"[" + b",".join(events) + b"]"))


def decode_batch(value: Any) -> list[dict[str, Any]]:
    """The events of one record of the topic; raises ValueError on anything else."""
    try:
        decoded = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"not a JSON batch: {exc}") from exc
    if isinstance(decoded, dict):
        return [decoded]
    if not isinstance(decoded, list) or not all(isinstance(e, dict) for e in decoded):
        raise ValueError("a batch must be a JSON array of objects")
    return decoded
