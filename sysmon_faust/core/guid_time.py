"""The start time a Sysmon ProcessGuid carries, and whether to believe it.

Sysmon builds a ProcessGuid from the machine, the process's creation time
(Unix seconds: low 16 bits in the second group, high 16 in the third) and a
counter: ``{03ba39f5-6e79-5ce0-0000-001032d21002}`` started at 0x5ce06e79 =
2019-05-18 20:43:37 UTC. In every creation of the five OTRF recordings it is
0-1 s before the event's UtcTime.

The join uses that time twice: whether a connect's creation may still come
(the grace decision, :mod:`sysmon_faust.core.join.grace`) and whether an ancestor's
link may still be in flight (the ancestry wait,
:mod:`sysmon_faust.stream.tree_replica`). But any GUID with five groups decodes to
*some* time — GUIDs made by other tools, a host with a broken clock, or
crafted input — and a time in the future keeps "its creation may still
come" true for ever. So a decoded time is only used when it is plausible
for the event at hand; otherwise it is *unknown*, and each decision says
what it does with an unknown time. Table-tested in
tests/unit/core/test_guid_time.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: A process starts before every event it causes; a start time this far
#: after the event (ms) is still believed: a host clock stepped back by NTP
#: between the start and the event.
FUTURE_TOLERANCE_MS: Final = 60_000
#: Sysmon 1.0 was released on 2014-08-08: no Sysmon GUID from a host with a
#: sane clock carries an earlier time (Unix ms).
SYSMON_FIRST_RELEASE_MS: Final = 1_407_456_000_000
#: A start time this much older than the event (ms, about five years) is no
#: running Windows process's: monthly updates reboot hosts far sooner.
MAX_PROCESS_AGE_MS: Final = 5 * 365 * 86_400_000

#: Why a decoded time was not believed (the labels of the /stats counter).
FUTURE: Final = "future"
TOO_OLD: Final = "too_old"


def process_start_ms(guid: str) -> int | None:
    """The start time (Unix ms, to the second) in a Sysmon ProcessGuid; None if it has none.

    ``guid``: the GUID's text with or without braces. Shape only: any
    8-4-4-4-12 GUID decodes; see :func:`plausible_start_ms`.
    """
    groups = guid.strip("{}").split("-")
    if len(groups) != 5 or len(groups[1]) != 4 or len(groups[2]) != 4:
        return None
    try:
        return int(groups[2] + groups[1], 16) * 1000
    except ValueError:
        return None


# Not frozen (as shapes.Envelope): one per event whose process may still come.
@dataclass(slots=True)
class StartTime:
    """A GUID's start time as the join may use it.

    ``ms``: Unix ms, or None when unknown (no time in the GUID, or one not
    believed). ``implausible``: :data:`FUTURE` or :data:`TOO_OLD` when a time
    was decoded and not believed, else None.
    """

    ms: int | None
    implausible: str | None = None


def plausible_start_ms(guid: str, event_time_ms: int) -> StartTime:
    """The start time of ``guid`` if it is plausible for an event at ``event_time_ms`` (Unix ms).

    Not believed: a time more than :data:`FUTURE_TOLERANCE_MS` after the
    event (a process starts before what it does, and an ancestor before its
    descendants), before Sysmon existed, or more than
    :data:`MAX_PROCESS_AGE_MS` before the event.
    """
    start = process_start_ms(guid)
    if start is None:
        return StartTime(None)
    if start > event_time_ms + FUTURE_TOLERANCE_MS:
        return StartTime(None, FUTURE)
    if start < SYSMON_FIRST_RELEASE_MS or start < event_time_ms - MAX_PROCESS_AGE_MS:
        return StartTime(None, TOO_OLD)
    return StartTime(start)
