"""What a process did: a bounded summary of its Sysmon events, for ``GET /process/{guid}/activity``.

Per process (the acting one: the source of a Sysmon 8/10): how many events
of each Sysmon id, the first and last event time, and the most recent
``recent`` events of each kind, newest first, each cut to the few fields a
hunter reads first:

============== ============= ==========================================================
kind           Sysmon ids    fields (besides ``time`` and ``event_id``)
============== ============= ==========================================================
connections    3             ``dst_ip_addr``, ``dst_port``, ``dst_query_name``,
                             ``dst_host_name``, ``network_protocol``
dns_queries    22            ``QueryName``, ``QueryResults``, ``QueryStatus``
files          2, 11, 15,    ``TargetFilename``
               23, 26-29
registry       12, 13, 14    ``EventType``, ``TargetObject``, ``Details``, ``NewName``
image_loads    7             ``ImageLoaded``, ``Signed``, ``Signature``
handles_opened 10            ``target_process_guid``, ``TargetImage``, ``GrantedAccess``
remote_threads 8             ``target_process_guid``, ``TargetImage``, ``StartFunction``
pipes          17, 18        ``PipeName``
other          the rest      ``event_id`` only
============== ============= ==========================================================

Every value is cut to :data:`MAX_VALUE_CHARS` characters, so one summary is
bounded: at most 9 kinds x ``recent`` items x 6 fields of 256 characters.
The process's own creation (1) and end (5) are counted, not listed (its row
has them); the creation is counted from the row itself (:func:`answer`).
Field names are Sysmon's where the event has them, HELK's for what the join
added (``dst_query_name``, ``target_process_guid``).

Pure: the summary is a value (a dict, JSON in the join's pending table
under :data:`ACTIVITY_PREFIX` + GUID, with a changelog); table-tested in
tests/unit/core/test_activity.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

#: Keys of process summaries in the pending table (apart from waiting events,
#: parked joins, alert groups and DNS answers).
ACTIVITY_PREFIX: Final = b"\x01activity\x00"
#: Longest value kept in a summary item (characters); a longer one is cut, with "…".
MAX_VALUE_CHARS: Final = 256

Summary = dict[str, Any]

# kind → (Sysmon ids, (name in the item, where it is read: the record or its event_data))
_EVENT_DATA: Final = "event_data"
_RECORD: Final = "record"
_KINDS: Final[tuple[tuple[str, frozenset[int], tuple[tuple[str, str], ...]], ...]] = (
    ("connections", frozenset({3}), (
        ("dst_ip_addr", _RECORD), ("dst_port", _RECORD), ("dst_query_name", _RECORD),
        ("dst_host_name", _RECORD), ("network_protocol", _RECORD),
    )),
    ("dns_queries", frozenset({22}), (
        ("QueryName", _EVENT_DATA), ("QueryResults", _EVENT_DATA), ("QueryStatus", _EVENT_DATA),
    )),
    ("files", frozenset({2, 11, 15, 23, 26, 27, 28, 29}), (("TargetFilename", _EVENT_DATA),)),
    ("registry", frozenset({12, 13, 14}), (
        ("EventType", _EVENT_DATA), ("TargetObject", _EVENT_DATA), ("Details", _EVENT_DATA),
        ("NewName", _EVENT_DATA),
    )),
    ("image_loads", frozenset({7}), (
        ("ImageLoaded", _EVENT_DATA), ("Signed", _EVENT_DATA), ("Signature", _EVENT_DATA),
    )),
    ("handles_opened", frozenset({10}), (
        ("target_process_guid", _RECORD), ("TargetImage", _EVENT_DATA),
        ("GrantedAccess", _EVENT_DATA),
    )),
    ("remote_threads", frozenset({8}), (
        ("target_process_guid", _RECORD), ("TargetImage", _EVENT_DATA),
        ("StartFunction", _EVENT_DATA),
    )),
    ("pipes", frozenset({17, 18}), (("PipeName", _EVENT_DATA),)),
)  # fmt: skip
#: Every kind a summary may list, in the order answers show them.
KINDS: Final = (*(name for name, _, _ in _KINDS), "other")
_KIND_OF: Final[Mapping[int, tuple[str, tuple[tuple[str, str], ...]]]] = {
    event_id: (name, fields) for name, ids, fields in _KINDS for event_id in ids
}
#: Counted, not listed: the process's own creation and end (its row has them).
_COUNTED_ONLY: Final = frozenset({1, 5})
#: Not in the summary at all: the process's creation, counted from its row by
#: :func:`answer`. A creation is the first event of a process: keeping it
#: made a summary, an expiry entry and two changelog records per process
#: — for every creation of a creation-heavy host (build servers, VDI) — to
#: say what the row says: 22 % of a creation's CPU on a stream of creations
#: (216-220 against 163-178 µs; docs/benchmark.md, "How it got there").
NOT_IN_SUMMARY: Final = frozenset({1})


def _empty() -> Summary:
    return {"counts": {}, "first_seen": None, "last_seen": None, "recent": {}}


def key(process_guid: str) -> bytes:
    """Where one process's summary is kept."""
    return ACTIVITY_PREFIX + process_guid.encode()


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[: MAX_VALUE_CHARS - 1] + "…"
    return value


def item(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(kind, item) of a ``sysmon-enriched`` record; None for one only counted (1, 5)."""
    event_id = record["event_id"]
    if event_id in _COUNTED_ONLY:
        return None
    kind, fields = _KIND_OF.get(event_id, ("other", ()))
    event_data = record.get("event_data") or {}
    made: dict[str, Any] = {"time": record.get("event_date_creation"), "event_id": event_id}
    for name, source in fields:
        value = record.get(name) if source == _RECORD else event_data.get(name)
        if value is not None:
            made[name] = _cut(value)
    return kind, made


def add(summary: Summary | None, record: Mapping[str, Any], recent: int) -> Summary:
    """``summary`` (None: a new one) with one more ``sysmon-enriched`` record of its process.

    Keeps the ``recent`` newest items of each kind (by event time: a late
    event lands where its time puts it, and falls off first if it is the oldest).
    """
    summary = summary or _empty()
    event_id = str(record["event_id"])
    summary["counts"][event_id] = summary["counts"].get(event_id, 0) + 1
    when = record.get("event_date_creation")
    if isinstance(when, str):
        if summary["first_seen"] is None or when < summary["first_seen"]:
            summary["first_seen"] = when
        if summary["last_seen"] is None or when > summary["last_seen"]:
            summary["last_seen"] = when
    made = item(record)
    if made is not None and recent > 0:
        kind, new = made
        items = summary["recent"].get(kind, [])
        # Newest first; ISO 8601 UTC with milliseconds: text order is time
        # order. The new item goes before every item not newer than it — at
        # the front for events in order, without a sort (a sort per event
        # was 2 % of the worker's CPU with every type enriched, py-spy).
        time = new.get("time") or ""
        at = 0
        while at < len(items) and (items[at].get("time") or "") > time:
            at += 1
        if at < recent:
            summary["recent"][kind] = [*items[:at], new, *items[at : recent - 1]]
    return summary


def answer(
    process_guid: str, summary: Summary | None, recent: int, created_at: str | None = None
) -> dict[str, Any]:
    """The HTTP answer: counts by Sysmon id (and their total), the time span, the recent
    items of each kind in :data:`KINDS` order, and the bound they were kept with.

    ``created_at``: the ``event_date_creation`` of the process's row, when the
    table holds it — its creation (Sysmon 1) is counted from the row, not kept
    in the summary (see :data:`NOT_IN_SUMMARY`). A summary written before that
    counts it already, and is left as it is. ``summary`` None: the row alone.
    """
    summary = summary or _empty()
    counts = dict(summary.get("counts", {}))
    first_seen, last_seen = summary.get("first_seen"), summary.get("last_seen")
    if created_at is not None and "1" not in counts:
        counts["1"] = 1
        first_seen = created_at if first_seen is None else min(first_seen, created_at)
        last_seen = created_at if last_seen is None else max(last_seen, created_at)
    return {
        "process_guid": process_guid,
        "events": sum(counts.values()),
        "counts_by_event_id": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
        "first_seen": first_seen,
        "last_seen": last_seen,
        "recent": {kind: summary["recent"][kind] for kind in KINDS if kind in summary["recent"]},
        "recent_per_kind": recent,
    }


def encode(summary: Summary, until_ms: int) -> bytes:
    """The stored value: the summary and when it goes (stream time, ms: the deadline of
    the expiry entry written last, so that only that entry deletes it)."""
    return orjson.dumps({"until_ms": until_ms, "summary": summary})


def decode(value: bytes) -> tuple[Summary, int]:
    """(summary, until_ms); raises ValueError for a value :func:`encode` did not make."""
    try:
        decoded = orjson.loads(value)
        summary, until_ms = decoded["summary"], int(decoded["until_ms"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a process summary: {exc}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("counts"), dict):
        raise ValueError("not a process summary")
    return summary, until_ms
