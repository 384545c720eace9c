"""The grace buffer's rules: how waiting connects are keyed, and when one more may wait.

A NetworkConnect whose process is not (yet) in the table waits for up to the
grace period of stream time (:mod:`sysmon_faust.core.join.expiry`) for its creation.
Each waiting connect is one record of the pending table, keyed

    process_guid  NUL  event time (8 bytes, big-endian)  position (12 bytes)

so the connects of one process are one ordered range of RocksDB keys: its
creation reads them in event-time order with one seek, and a connect read
twice (a replay after a crash) lands on the same key instead of waiting twice.
The position is where the connect was read: offset and place in its batch
record.

Table-tested in tests/unit/core/join/test_grace.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

#: unmatched_reason of a connect whose process did not appear within the grace.
AFTER_GRACE: Final = "process_unknown_after_grace"
#: unmatched_reason of a connect whose process, by the start time its GUID
#: carries, started more than the grace before it: its creation is not coming.
STARTED_BEFORE_GRACE: Final = "process_started_before_grace"
#: unmatched_reason of a connect turned away because its process already has
#: ``max_per_process`` connects waiting, or the worker ``max_total``.
OVERFLOW: Final = "pending_overflow"

_SEPARATOR = b"\x00"  # never in a GUID's text
_TIME_AND_POSITION = struct.Struct(">QQI")


@dataclass(frozen=True, slots=True)
class GraceLimits:
    grace_ms: int
    max_per_process: int
    max_total: int


def admit(waiting_for_process: int, waiting_in_total: int, limits: GraceLimits) -> bool:
    """Whether one more connect may wait (else it overflows: the buffer never grows past)."""
    return waiting_for_process < limits.max_per_process and waiting_in_total < limits.max_total


def creation_may_still_come(start_ms: int | None, connect_time_ms: int, grace_ms: int) -> bool:
    """Whether waiting can help a connect whose process is not in the table.

    ``start_ms``: the process's start time from its GUID, if plausible
    (:func:`sysmon_faust.core.guid_time.plausible_start_ms`; Unix ms).
    Its creation's event time is the process's start time. A process that
    started more than the grace before the connect (clocks of the same host)
    has a creation that, were it coming in time, would have come: 80-98 % of
    connects in the recordings are of processes older than the recording, and
    none of them waits. A connect whose start time is unknown waits: the
    wait is bounded by the grace, in stream time, and holds nothing else up.
    """
    if start_ms is None:
        return True
    return start_ms + 1000 + grace_ms > connect_time_ms


def process_prefix(guid: str) -> bytes:
    """The key prefix shared by the waiting connects of one process."""
    return guid.encode() + _SEPARATOR


def pending_key(guid: str, event_time_ms: int, offset: int, index: int) -> bytes:
    """A waiting connect's key: sorts by process, then event time, then position."""
    return process_prefix(guid) + _TIME_AND_POSITION.pack(max(event_time_ms, 0), offset, index)


def parse_pending_key(key: bytes) -> tuple[str, int, int, int]:
    """(guid, event_time_ms, offset, index) of a :func:`pending_key`."""
    guid, separator, rest = key.partition(_SEPARATOR)
    if not separator or len(rest) != _TIME_AND_POSITION.size:
        raise ValueError(f"not a pending connect key: {key!r}")
    event_time_ms, offset, index = _TIME_AND_POSITION.unpack(rest)
    return guid.decode(), event_time_ms, offset, index
