"""The records sysmon-faust writes to Kafka and keeps in its table: their fields and types.

Every field name is HELK's (../shared/docs/CONTRACT.md). Values are JSON
objects serialized with orjson, so any Kafka consumer can read them. A field
that the source lacks is ``None``. The pipeline itself reads and writes them
as plain dicts (a record object per event costs more than the join:
``make bench``); these dataclasses are their schema — the field lists the
join writes (:mod:`sysmon_faust.core.join.semantics`), the fields a rule may
test and their types (:mod:`sysmon_faust.core.rules`), what ``describe``
shows — and unit tests hold the dicts to them.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson


@dataclass
class _Record:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> bytes:
        """The record as Kafka carries it: a JSON object (orjson, UTF-8)."""
        return orjson.dumps(self)  # as asdict() would, without its deep copy


@dataclass
class _ProcessEvent(_Record):
    """What Sysmon 1 and 5 say first: which process, when, where."""

    process_guid: str
    event_date_creation: str
    host_name: str | None = None
    process_id: int | None = None
    process_path: str | None = None
    process_name: str | None = None


@dataclass
class ProcessCreate(_ProcessEvent):
    """Sysmon event 1, normalized: one row of the process table, keyed by process_guid."""

    process_command_line: str | None = None
    process_current_directory: str | None = None
    process_integrity_level: str | None = None
    user_account: str | None = None
    user_logon_guid: str | None = None
    user_logon_id: str | None = None
    user_session_id: int | None = None
    hashes: str | None = None
    file_version: str | None = None
    file_description: str | None = None
    file_company: str | None = None
    parent_process_guid: str | None = None
    parent_process_id: int | None = None
    parent_process_path: str | None = None
    parent_process_command_line: str | None = None


@dataclass
class ProcessRow(ProcessCreate):
    """A row of the process table: the creation, and when the process ended if it has."""

    process_terminated_at: str | None = None


@dataclass
class ProcessTerminate(_ProcessEvent):
    """Sysmon event 5, normalized: marks the process's row as ended (it is not published)."""

    user_account: str | None = None


@dataclass
class NetworkConnect(_Record):
    """Sysmon event 3, normalized. ``process_guid`` is ``None`` for the zero GUID."""

    event_date_creation: str
    host_name: str | None = None
    process_guid: str | None = None
    process_id: int | None = None
    process_path: str | None = None
    process_name: str | None = None
    user_account: str | None = None
    network_protocol: str | None = None
    network_connection_initiated: bool | None = None
    src_is_ipv6: bool | None = None
    src_ip_addr: str | None = None
    src_host_name: str | None = None
    src_port: int | None = None
    src_port_name: str | None = None
    dst_is_ipv6: bool | None = None
    dst_ip_addr: str | None = None
    dst_host_name: str | None = None
    dst_port: int | None = None
    dst_port_name: str | None = None


@dataclass
class UnmatchedNetworkConnect(NetworkConnect):
    """A NetworkConnect the join could not enrich, and why (``sysmon-network-unmatched``)."""

    unmatched_reason: str = "process_unknown"


@dataclass
class EnrichedNetworkConnect(NetworkConnect):
    """One ``sysmon-join`` record: the connect plus its process's creation fields.

    The network side comes from the connect (its own ``process_path``,
    ``user_account``...); the process side from the ProcessCreate row.
    """

    process_command_line: str | None = None
    process_current_directory: str | None = None
    process_integrity_level: str | None = None
    hashes: str | None = None
    user_logon_guid: str | None = None
    user_logon_id: str | None = None
    user_session_id: int | None = None
    parent_process_guid: str | None = None
    parent_process_id: int | None = None
    parent_process_path: str | None = None
    parent_process_command_line: str | None = None
    #: The process's ancestors, nearest first (parent, grandparent, ...), up to
    #: SYSMON_ANCESTRY_DEPTH; each ``{process_guid, process_path,
    #: process_command_line}`` (sysmon_faust.core.ancestry).
    process_ancestry: list[dict[str, Any]] | None = None


@dataclass
class Alert(_Record):
    """A Sigma rule's detection on an event with its process context (``sysmon-alerts``).

    ``rule_id`` is the Sigma rule's id, ``rule_name`` its title, ``severity``
    its level (informational, low, medium, high, critical),
    ``attack_technique`` its first ``attack.tNNNN`` tag (``None`` without
    one); ``event`` the matched event: a ``sysmon-join`` record for a
    connect, an event with its ``process`` and ``process_ancestry`` otherwise
    (sysmon_faust.core.join.semantics.enrich_event).
    """

    rule_id: str
    rule_name: str
    attack_technique: str | None
    severity: str
    detected_at: str
    event: dict[str, Any]
    #: The rule's matches on this process within SYSMON_ALERT_WINDOW
    #: (sysmon_faust.core.alert_groups): ``state`` (open: the first match, more
    #: may come; closed: the final count), ``count``, ``first_seen``,
    #: ``last_seen``, ``destinations``, ``destinations_not_listed``,
    #: ``window_seconds``.
    alert_group: dict[str, Any] | None = None
    rule_status: str | None = None
    rule_tags: list[str] | None = None
    #: Kept as the Detection Rule License asks.
    rule_author: str | None = None
    rule_references: list[str] | None = None
    #: The Sigma logsource category the event was matched as (``network_connection``...).
    logsource_category: str | None = None
    #: The matched event's Sysmon event id.
    event_id: int | None = None


@dataclass
class DeadLetter(_Record):
    """An input value the pipeline could not process (``sysmon-dlq``), with the reason.

    ``raw`` holds the value as text when it is UTF-8, ``raw_base64`` otherwise:
    the original bytes can always be recovered.
    """

    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    received_at: str
    raw: str | None = None
    raw_base64: str | None = None


def record_fields(model: type[_Record]) -> list[str]:
    """Field names of a record class in declaration order (base classes' first)."""
    return [declared.name for declared in fields(model)]


def field_types(model: type[_Record]) -> dict[str, Any]:
    """Each field's type (``str | None``, ``int``...), in declaration order."""
    hints = typing.get_type_hints(model)
    return {name: hints[name] for name in record_fields(model)}
