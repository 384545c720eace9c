"""Stream time, and the index of what falls due in it: pure parts of expiry.

Three things in the join's state end by time: a connect waiting for its
process (``SYSMON_JOIN_GRACE``), the row of a process that ended
(``SYSMON_TABLE_RETENTION``) and a row that never ended (``SYSMON_TABLE_TTL``).
Each gets an entry in a time-ordered index when it starts to count; expiry
reads the due prefix of that index and never scans a table.

Every deadline is *stream time* when the clock starts + the duration. Stream
time (:class:`StreamClock`) is per partition: the greatest event time seen,
and it moves on with the wall clock in between. So a replay of old data
expires at the data's pace, a quiet partition still lets go after the
duration on the wall clock, and a host whose clock is days behind its
partition-mates (empire_invoke_psremoting has one) still gets the whole
duration instead of being expired on arrival.

Table-tested in tests/unit/core/join/test_expiry.py.
"""

from __future__ import annotations

import struct
from typing import Final

#: A waiting connect (the reference is its key in the pending table).
CONNECT_GRACE: Final = b"G"
#: The row of a terminated process, a retention after termination (reference: the GUID).
ROW_RETENTION: Final = b"R"
#: A row that was never terminated, a TTL after it was written (reference: the GUID).
ROW_TTL: Final = b"T"
#: An alert group whose window closes (reference: its key in the pending table).
ALERT_GROUP: Final = b"A"
#: A process's DNS answers, a TTL after one was written (reference: their key in
#: the pending table; sysmon_faust.core.dns_answers).
DNS_ANSWERS: Final = b"D"
#: A process's activity summary, a TTL after its last event (reference: its key
#: in the pending table; sysmon_faust.core.activity).
ACTIVITY: Final = b"P"
KINDS: Final = (ALERT_GROUP, CONNECT_GRACE, DNS_ANSWERS, ACTIVITY, ROW_RETENTION, ROW_TTL)

#: Where a partition's stream time is kept in the index table, so a restarted
#: worker goes on from it (the kinds above sort apart from it).
STREAM_TIME_KEY: Final = b"S"

#: Event times further than this ahead of the wall clock count as the wall
#: clock + this: one endpoint with its clock years ahead must not expire
#: every buffered connect and every row of its partition.
MAX_CLOCK_AHEAD_MS: Final = 5 * 60 * 1000

_DEADLINE = struct.Struct(">Q")


def index_key(kind: bytes, deadline_ms: int, reference: bytes) -> bytes:
    """``kind`` + big-endian deadline + reference: sorts by deadline within a kind."""
    return kind + _DEADLINE.pack(max(deadline_ms, 0)) + reference


def parse_index_key(key: bytes) -> tuple[bytes, int, bytes]:
    """(kind, deadline_ms, reference) of an :func:`index_key`."""
    if len(key) < 1 + _DEADLINE.size or key[:1] not in KINDS:
        raise ValueError(f"not an expiry index key: {key!r}")
    (deadline,) = _DEADLINE.unpack_from(key, 1)
    return key[:1], deadline, key[1 + _DEADLINE.size :]


def encode_stream_time(stream_time_ms: int) -> bytes:
    return _DEADLINE.pack(max(stream_time_ms, 0))


def decode_stream_time(value: bytes) -> int:
    return int(_DEADLINE.unpack(value)[0])


class StreamClock:
    """Stream time per partition: the greatest event time seen, moving with the wall clock.

    ``observe`` an event's time, ``now`` for the current value. Between two
    calls stream time grows by at least the wall-clock time that passed, so
    every deadline is also a bound in wall-clock time.
    """

    def __init__(self) -> None:
        self._time: dict[int, int] = {}
        self._wall: dict[int, int] = {}

    def knows(self, partition: int) -> bool:
        return partition in self._time

    def start(self, partition: int, stream_time_ms: int, wall_ms: int) -> None:
        """Go on from a stream time kept earlier (a restart or a partition taken over)."""
        self._time[partition] = stream_time_ms
        self._wall[partition] = wall_ms

    def forget(self, partition: int) -> None:
        self._time.pop(partition, None)
        self._wall.pop(partition, None)

    def last(self, partition: int) -> int:
        """The stream time last computed (no wall-clock reading); -1 if none yet."""
        return self._time.get(partition, -1)

    def now(self, partition: int, wall_ms: int) -> int:
        if partition not in self._time:
            raise KeyError(f"stream time of partition {partition} is not known yet")
        elapsed = max(wall_ms - self._wall[partition], 0)
        self._wall[partition] = wall_ms
        self._time[partition] += elapsed
        return self._time[partition]

    def observe(self, partition: int, event_time_ms: int, wall_ms: int) -> int:
        """Stream time after an event of ``event_time_ms``."""
        event_time_ms = min(event_time_ms, wall_ms + MAX_CLOCK_AHEAD_MS)
        if partition not in self._time:
            self.start(partition, event_time_ms, wall_ms)
            return event_time_ms
        current = self.now(partition, wall_ms)
        if event_time_ms > current:
            self._time[partition] = current = event_time_ms
        return current
