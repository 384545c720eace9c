"""What the join means: a NetworkConnect plus the ProcessCreate row of its process.

Pure functions over rows — the JSON objects of :mod:`sysmon_faust.core.records`'
records as plain dicts, because the join agent reads and writes JSON and a
``faust.Record`` round trip per event costs more than the join itself
(``make bench``). The models stay the schema: the field lists below come
from them, and unit tests hold the two together. The agent that runs these is
:func:`sysmon_faust.stream.agents.join_by_process_guid`.

Semantics, as in HELK's ``SYSMON_JOIN`` (a ksqlDB stream-table INNER join):
the join fires from the network side only, with the table's latest row for
the process; a connect whose process is unknown at that moment is not joined
but written to ``sysmon-network-unmatched`` with the reason, never dropped.
"""

from __future__ import annotations

from typing import Any, Final

from sysmon_faust.core.records import (
    EnrichedNetworkConnect,
    NetworkConnect,
    ProcessCreate,
    record_fields,
)

#: One record's fields by name: a ProcessCreate row, a NetworkConnect, ...
Row = dict[str, Any]

#: The connect's process has no ProcessCreate in the table (it started before
#: the pipeline saw it, or its creation has not arrived).
PROCESS_UNKNOWN: Final = "process_unknown"
#: The connect carries the zero GUID (no process identity): it can never join.
NO_PROCESS_GUID: Final = "no_process_guid"

_NETWORK_SIDE: Final = tuple(record_fields(NetworkConnect))
# Fields that come from the process's creation rather than from the connect.
_PROCESS_SIDE: Final = tuple(
    name
    for name in record_fields(EnrichedNetworkConnect)
    if name not in _NETWORK_SIDE and name != "process_ancestry"
)


def enrich(connect: Row, process: Row, ancestry: list[Row]) -> Row:
    """The ``sysmon-join`` record: network fields from the connect, process fields from the row.

    ``ancestry`` is the process's ancestors, nearest first
    (:func:`sysmon_faust.core.ancestry.ancestry`).
    """
    joined = {name: connect.get(name) for name in _NETWORK_SIDE}
    for name in _PROCESS_SIDE:
        joined[name] = process.get(name)
    joined["process_ancestry"] = ancestry
    return joined


#: The creation fields an enriched event of another kind gets from its process.
_CREATION_SIDE: Final = tuple(
    name for name in record_fields(ProcessCreate) if name not in ("event_date_creation",)
)


def enrich_event(
    event_id: int, event: Row, process: Row | None, ancestry: list[Row],
    unmatched_reason: str | None = None,
) -> Row:  # fmt: skip
    """Any Sysmon event with its process: a ``sysmon-enriched`` record (and an alert's ``event``).

    The event's own fields (HELK names and ``event_data``, its EventData as
    written less what has a HELK name), ``event_id``, then its process's
    creation fields under ``process`` and the ancestry, nearest first;
    ``unmatched_reason`` says why the process is missing (``process`` is then
    ``None`` and the ancestry ``[]``), and is ``None`` when it is there.
    """
    enriched = dict(event)
    enriched["event_id"] = event_id
    enriched["process"] = (
        {name: process.get(name) for name in _CREATION_SIDE} if process is not None else None
    )
    enriched["process_ancestry"] = ancestry
    enriched["unmatched_reason"] = unmatched_reason
    return enriched


def with_target(
    record: Row, target: Row | None, ancestry: list[Row], unmatched_reason: str | None
) -> Row:
    """A Sysmon 8/10 ``sysmon-enriched`` record with its target process's side:
    ``target_process`` (the target's creation fields, or None),
    ``target_process_ancestry`` (nearest first) and ``target_unmatched_reason``
    (why the target is missing; None when it is there)."""
    record["target_process"] = (
        {name: target.get(name) for name in _CREATION_SIDE} if target is not None else None
    )
    record["target_process_ancestry"] = ancestry
    record["target_unmatched_reason"] = unmatched_reason
    return record


def unmatched(connect: Row, reason: str) -> Row:
    """The ``sysmon-network-unmatched`` record: the connect as it came, and why."""
    record = {name: connect.get(name) for name in _NETWORK_SIDE}
    record["unmatched_reason"] = reason
    return record
