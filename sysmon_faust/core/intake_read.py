"""The intake's first step over the records of a batch: each one's event, the reason it goes to
the dead letters, or its count as filtered.

The intake reads up to 20,000 input records at a time, and a worker enriching
only Sysmon 1, 3 and 5 drops 94 % of them right here (``make bench``'s mix).
Per record, the loop's own steps around :func:`normalize` — the record's
position and value, the outcome told apart, the counters — were Python
bytecode on the event loop: ~1 µs of the ~10 µs a record cost the loop (the
loop's own lines 6.8 % of its samples, the join check 1.7 %, the position
1.4 %), beside normalize's 2.2 (py-spy of one worker enriching only 1, 3, 5,
2026-12-05). Here they are compiled with the rest of the core
(:mod:`sysmon_faust.core.compiled`), and run over a slice of the batch at
a time, between which the intake lets the join run: a worker's CPU went from
11.9 to 11.25 µs per event (medians of four pairs, docs/benchmark.md).

Records are librdkafka's (``confluent_kafka.Message``: ``value()``,
``partition()``, ``offset()``), or anything with those methods.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from sysmon_faust.core.normalize import (
    Filtered,
    NormalizedEvent,
    OtherEventFilter,
    normalize,
)
from sysmon_faust.core.stats import stats

#: Why a record without a value goes to the dead letters.
TOMBSTONE: Final = "value is null (a tombstone), not an event"


class ReadRecords:
    """What :func:`read_records` found in a slice of a batch, each list in the records' order."""

    def __init__(self) -> None:
        #: (record, its event, its partition): to route.
        self.events: list[tuple[Any, NormalizedEvent, int]] = []
        #: (record, why): to the dead letters.
        self.invalid: list[tuple[Any, str]] = []
        #: (record, what its reading raised): a bug, which the caller dead-letters (or,
        #: for a fault of the worker's own, stops on).
        self.failed: list[tuple[Any, Exception]] = []
        #: The first filtered record that says what was looked for (``Filtered.detail``).
        self.detail: tuple[Any, str] | None = None
        #: Per partition, the offset after the last record read.
        self.read_up_to: dict[int, int] = {}


def read_records(
    records: list[Any], start: int, stop: int, other_event_ids: Collection[int],
    wants: OtherEventFilter | None,
) -> ReadRecords:  # fmt: skip
    """``records[start:stop]`` normalized (:func:`~sysmon_faust.core.normalize.normalize` with
    ``other_event_ids`` and ``wants``), and counted in :data:`~sysmon_faust.core.stats.stats`
    (consumed, filtered and why, surrogates replaced). Never raises for a record: what
    reading one raises is in :attr:`ReadRecords.failed`."""
    found = ReadRecords()
    filtered_by_reason: dict[str, int] = {}
    for index in range(start, stop):
        record = records[index]
        partition = record.partition()
        found.read_up_to[partition] = record.offset() + 1
        try:
            raw = record.value()
            if not isinstance(raw, bytes):
                found.invalid.append((record, TOMBSTONE))
                continue
            outcome = normalize(raw, other_event_ids, wants)
            if isinstance(outcome, Filtered):
                reason = outcome.reason
                filtered_by_reason[reason] = filtered_by_reason.get(reason, 0) + 1
                if outcome.detail is not None and found.detail is None:
                    found.detail = (record, outcome.detail)
            elif isinstance(outcome, NormalizedEvent):
                if outcome.surrogates_replaced:
                    stats.surrogates_replaced += 1
                found.events.append((record, outcome, partition))
            else:
                found.invalid.append((record, outcome.error))
        except Exception as exc:
            found.failed.append((record, exc))
    stats.consumed += stop - start
    for reason, count in filtered_by_reason.items():
        stats.filtered += count
        stats.filtered_by_reason[reason] += count
    return found
