"""What the join means: a NetworkConnect plus the ProcessCreate row of its process.

Pure functions over records; the agent that runs them is
:func:`sysmon_faust.agents.join_by_process_guid`.

Semantics, as in HELK's ``SYSMON_JOIN`` (a ksqlDB stream-table INNER join):
the join fires from the network side only, with the table's latest row for
the process; a connect whose process is unknown at that moment is not joined
but written to ``sysmon-network-unmatched`` with the reason, never dropped.
"""

from __future__ import annotations

from typing import Final

from sysmon_faust.models import (
    EnrichedNetworkConnect,
    NetworkConnect,
    ProcessCreate,
    UnmatchedNetworkConnect,
    record_fields,
)

#: The connect's process has no ProcessCreate in the table (it started before
#: the pipeline saw it, or its creation has not arrived).
PROCESS_UNKNOWN: Final = "process_unknown"
#: The connect carries the zero GUID (no process identity): it can never join.
NO_PROCESS_GUID: Final = "no_process_guid"

# Fields that come from the process's creation rather than from the connect.
_PROCESS_SIDE: Final = tuple(
    name for name in record_fields(EnrichedNetworkConnect)
    if name not in record_fields(NetworkConnect)
)  # fmt: skip
_NETWORK_SIDE: Final = tuple(record_fields(NetworkConnect))


def enrich(connect: NetworkConnect, process: ProcessCreate) -> EnrichedNetworkConnect:
    """The ``sysmon-join`` record: network fields from the connect, process fields from the row."""
    values = {name: getattr(connect, name) for name in _NETWORK_SIDE}
    for name in _PROCESS_SIDE:
        values[name] = getattr(process, name)
    return EnrichedNetworkConnect(**values)


def unmatched(connect: NetworkConnect, reason: str) -> UnmatchedNetworkConnect:
    values = {name: getattr(connect, name) for name in _NETWORK_SIDE}
    return UnmatchedNetworkConnect(**values, unmatched_reason=reason)
