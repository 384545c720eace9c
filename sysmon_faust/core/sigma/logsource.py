"""Which Sysmon events a Sigma rule's logsource means.

Sigma's logsource taxonomy (``product: windows`` + ``category``) names event
kinds, not event ids; the mapping to Sysmon's event ids is the one of
pySigma-pipeline-sysmon (``sysmon_generic_logsource_eventid_mapping``), with
the event ids Sysmon added since (Sysmon 13: 25 ProcessTampering and 26
FileDeleteDetected; 14: 27 FileBlockExecutable; 14.1: 28 FileBlockShredding;
15: 29 FileExecutableDetected). ``service: sysmon`` means every Sysmon event:
such rules name the EventID themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Sigma category → the Sysmon event ids it covers.
CATEGORY_EVENT_IDS: Final[Mapping[str, tuple[int, ...]]] = {
    "process_creation": (1,),
    "file_change": (2,),
    "network_connection": (3,),
    "sysmon_status": (4, 16),
    "process_termination": (5,),
    "driver_load": (6,),
    "image_load": (7,),
    "create_remote_thread": (8,),
    "raw_access_thread": (9,),
    "process_access": (10,),
    "file_event": (11,),
    "registry_add": (12,),
    "registry_delete": (12,),
    "registry_set": (13,),
    "registry_rename": (14,),
    "registry_event": (12, 13, 14),
    "create_stream_hash": (15,),
    "pipe_created": (17, 18),
    "wmi_event": (19, 20, 21),
    "dns_query": (22,),
    "file_delete": (23, 26),
    "file_delete_detected": (26,),
    "clipboard_capture": (24,),
    "process_tampering": (25,),
    "file_block_executable": (27,),
    "file_block_shredding": (28,),
    "file_executable_detected": (29,),
    "sysmon_error": (255,),
}

#: Every Sysmon event id (Sysmon 15.15 schema 4.90), for ``service: sysmon``.
SYSMON_EVENT_IDS: Final[tuple[int, ...]] = (*range(1, 30), 255)

#: The category an alert names for an event id (the one category of its own,
#: or the umbrella one where Sigma splits an id: 12 is registry_add or _delete).
EVENT_CATEGORY: Final[Mapping[int, str]] = {
    1: "process_creation", 2: "file_change", 3: "network_connection", 4: "sysmon_status",
    5: "process_termination", 6: "driver_load", 7: "image_load", 8: "create_remote_thread",
    9: "raw_access_thread", 10: "process_access", 11: "file_event", 12: "registry_event",
    13: "registry_set", 14: "registry_rename", 15: "create_stream_hash", 16: "sysmon_status",
    17: "pipe_created", 18: "pipe_created", 19: "wmi_event", 20: "wmi_event", 21: "wmi_event",
    22: "dns_query", 23: "file_delete", 24: "clipboard_capture", 25: "process_tampering",
    26: "file_delete_detected", 27: "file_block_executable", 28: "file_block_shredding",
    29: "file_executable_detected", 255: "sysmon_error",
}  # fmt: skip


def event_ids(product: str | None, category: str | None, service: str | None) -> tuple[int, ...]:
    """The Sysmon event ids a logsource covers; ``()`` when it is not Sysmon's.

    ``product: windows`` with a category of :data:`CATEGORY_EVENT_IDS` (and no
    other service than ``sysmon``), or ``service: sysmon`` (every event id).
    """
    if product != "windows":
        return ()
    ids = CATEGORY_EVENT_IDS.get(category) if category is not None else None
    if service is None and ids is not None:
        return ids
    if service == "sysmon":
        return ids or SYSMON_EVENT_IDS
    return ()
