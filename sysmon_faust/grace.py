"""The grace buffer's rules: which waiting connects join, expire or overflow.

A NetworkConnect whose process is not (yet) in the table waits, keyed by its
process_guid, for up to the grace period — in *stream time*, the greatest
event time its partition has seen, with a wall-clock bound so that an idle
stream still lets them go. These are the pure decisions; the agent keeps the
waiting connects in a changelog-backed table and finds expired ones through a
time-ordered index (:func:`index_key`), so expiry never scans the table.

Table-tested in tests/unit/test_grace.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

#: unmatched_reason of a connect whose process did not appear within the grace.
AFTER_GRACE: Final = "process_unknown_after_grace"
#: unmatched_reason of a connect turned away because its process already has
#: ``max_per_process`` connects waiting, or the partition ``max_total``.
OVERFLOW: Final = "pending_overflow"

#: Fields a waiting connect carries besides the connect's own.
EVENT_TIME_MS: Final = "_event_time_ms"
BUFFERED_AT_MS: Final = "_buffered_at_ms"


@dataclass(frozen=True, slots=True)
class GraceLimits:
    grace_ms: int
    max_per_process: int
    max_total: int


def admit(waiting: list[dict[str, Any]], total_waiting: int, limits: GraceLimits) -> bool:
    """Whether one more connect may wait beside ``waiting`` (else it overflows, never grows)."""
    return len(waiting) < limits.max_per_process and total_waiting < limits.max_total


def release_order(waiting: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The connects to join when their process's creation arrives: in event-time order."""
    return sorted(waiting, key=lambda connect: connect[EVENT_TIME_MS])


def is_expired(
    connect: dict[str, Any], stream_time_ms: int, wall_time_ms: int, limits: GraceLimits
) -> bool:
    """Expired once the stream or the wall clock has moved a grace past it.

    Stream time decides normally (a replay of old data expires at the data's
    pace, not the clock's). The wall clock bounds the wait when the partition
    goes quiet: no event, no stream time.
    """
    return (
        stream_time_ms >= connect[EVENT_TIME_MS] + limits.grace_ms
        or wall_time_ms >= connect[BUFFERED_AT_MS] + limits.grace_ms
    )


# --- the expiry index --------------------------------------------------------
#
# Keys sort by (kind, deadline): RocksDB keeps a partition's keys in byte
# order, so the due entries of one kind are a prefix of an ordered scan.

#: A waiting connect's process_guid, due at its event time + grace (stream time).
PENDING_BY_EVENT_TIME: Final = b"E"
#: The same, due at the time it was buffered + grace (wall clock).
PENDING_BY_WALL_TIME: Final = b"W"

_DEADLINE = struct.Struct(">q")


def index_key(kind: bytes, deadline_ms: int, guid: str) -> bytes:
    """``kind`` + big-endian deadline + GUID: sorts by deadline within a kind."""
    return kind + _DEADLINE.pack(deadline_ms) + guid.encode()


def parse_index_key(key: bytes) -> tuple[bytes, int, str]:
    """(kind, deadline_ms, guid) of an :func:`index_key`."""
    if len(key) < 1 + _DEADLINE.size:
        raise ValueError(f"not an expiry index key: {key!r}")
    (deadline,) = _DEADLINE.unpack_from(key, 1)
    return key[:1], deadline, key[1 + _DEADLINE.size :].decode()
