"""An event as Sigma sees it: its own Sysmon fields, then its process's context.

Rules test Sysmon's own field names (``Image``, ``CommandLine``,
``TargetObject``...). A normalized event (:mod:`sysmon_faust.core.normalize`)
holds the fields the join uses under HELK's names plus ``event_data``: the
rest of its EventData as written. :func:`event_fields` puts the two back
together; :func:`with_context` adds the process's creation fields that
events of its id never carry (``CommandLine``, ``ParentImage``,
``IntegrityLevel``, ``OriginalFileName`` for a connection, ...) and its
ancestry as lists, nearest first (``AncestorImage``, ``AncestorCommandLine``,
``AncestorProcessGuid``).

Every value is text (``"true"``, ``"443"``), as Sysmon writes it and as
Sigma compares; :func:`lowered` makes the lower-case copy rules compare
against, once per event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from sysmon_faust.core.normalize import FIELD_MAPS, PROCESS_CREATE

#: The normalized event's key for its other EventData fields (Sysmon names).
EVENT_DATA: Final = "event_data"

# HELK name → Sysmon name, per event id (the inverse of the normalizer's maps).
_SYSMON_NAMES: Final[Mapping[int, tuple[tuple[str, str], ...]]] = {
    event_id: (("process_guid", "ProcessGuid"), *((helk, sysmon) for sysmon, helk, _ in mapping))
    for event_id, mapping in FIELD_MAPS.items()
}

#: Context a creation gives every event of its process (Sysmon 1's fields
#: that describe the process, not the creation event itself).
CREATION_CONTEXT: Final = (
    "Image", "ProcessId", "CommandLine", "CurrentDirectory", "User", "LogonGuid", "LogonId",
    "TerminalSessionId", "IntegrityLevel", "Hashes", "FileVersion", "Description", "Product",
    "Company", "OriginalFileName", "ParentProcessGuid", "ParentProcessId", "ParentImage",
    "ParentCommandLine", "ParentUser",
)  # fmt: skip
#: The ancestry as list fields: each ancestor's value, nearest first.
ANCESTRY_FIELDS: Final = (
    ("AncestorImage", "process_path"),
    ("AncestorCommandLine", "process_command_line"),
    ("AncestorProcessGuid", "process_guid"),
)


#: Every name :func:`with_context` may add.
CONTEXT_NAMES: Final = frozenset(CREATION_CONTEXT) | {name for name, _ in ANCESTRY_FIELDS}

# The creation fields an event of each id carries itself (Sysmon schema 4.90,
# per event id): its own, never filled from its process — an image load's
# Hashes are the DLL's, not the process's, and a User its schema has but an
# older Sysmon left out stays out (as a SIEM would see the event).
_OWN: Final = frozenset({"Image", "ProcessId", "User"})
_NATIVE: Final[Mapping[int, frozenset[str]]] = {
    1: frozenset(CREATION_CONTEXT),
    7: _OWN | {"Hashes", "FileVersion", "Description", "Product", "Company", "OriginalFileName"},
    # Source and target processes: SourceImage, SourceUser... The process is the source.
    8: frozenset(),
    10: frozenset(),
    # No process: Sysmon's own state (4, 16), errors (255), drivers (6), WMI
    # (19-21). Their rules are on the event alone: there is no context to add.
    **{event_id: CONTEXT_NAMES for event_id in (4, 6, 16, 19, 20, 21, 255)},
    **{event_id: _OWN | {"Hashes"} for event_id in (23, 24, 26, 27, 28, 29)},
}
_CONTEXT_ONLY: dict[int, frozenset[str]] = {}


def context_only(event_id: int) -> frozenset[str]:
    """The fields events of ``event_id`` get only from their process (creation, ancestry).

    A rule naming one of them uses context; :func:`with_context` adds only these.
    """
    found = _CONTEXT_ONLY.get(event_id)
    if found is None:
        found = _CONTEXT_ONLY[event_id] = CONTEXT_NAMES - _NATIVE.get(event_id, _OWN)
    return found


def text(value: Any) -> str | None:
    """A value as Sigma compares it: text; booleans as Sysmon writes them; None stays."""
    if value is None or type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None  # an object or a list in EventData: no Sysmon field is one


def event_fields(
    event_id: int, fields: Mapping[str, Any], only: Collection[str] | None = None
) -> dict[str, Any]:
    """A normalized event's Sysmon fields (``EventID`` included), text values, no None;
    with ``only``, just those (what the rules of the event id test:
    :meth:`~sysmon_faust.core.sigma.ruleset.RuleSet.fields_of`)."""
    view: dict[str, Any] = {"EventID": str(event_id)}
    event_data = fields.get(EVENT_DATA)
    if event_data:
        for name, value in event_data.items():
            if (only is None or name in only) and (value := text(value)) is not None:
                view[name] = value
    for helk, sysmon in _SYSMON_NAMES.get(event_id, ()):
        if (only is None or sysmon in only) and (value := text(fields.get(helk))) is not None:
            view[sysmon] = value
    return view


def with_context(
    view: dict[str, Any],
    event_id: int,
    process: Mapping[str, Any] | None,
    ancestry: Sequence[Mapping[str, Any]],
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """``view`` (an event of ``event_id``) plus its process's creation fields that events
    of that id never carry (:func:`context_only`), plus the ancestry as lists; with
    ``only``, just those of them (what the rules of the event id test:
    :meth:`~sysmon_faust.core.sigma.ruleset.RuleSet.fields_of`).

    ``process``: the process's row (a normalized Sysmon 1, HELK names and
    ``event_data``) or None; ``ancestry``: its ancestors, nearest first
    (:func:`sysmon_faust.core.ancestry.ancestry` rows). Only what the event
    cannot hold is added, so a rule on the event's own fields sees the same
    whether its process was known yet or not.
    """
    context = dict(view)
    wanted = context_only(event_id)
    if only is not None:
        # Measured (SigmaHQ's corpus, every type enriched, 100,000 generated
        # events in process): the context no rule of the id tests — ancestors'
        # command lines above all — made the index scan longer and hand out
        # more candidates; matching cost 7 µs per input event with it.
        wanted = wanted.intersection(only)
    if process is not None and not wanted.isdisjoint(CREATION_CONTEXT):
        # Only the fields it adds (none for a creation, whose own they are).
        creation = event_fields(PROCESS_CREATE, process, wanted)
        for name in CREATION_CONTEXT:
            if name in wanted and (value := creation.get(name)) is not None:
                context[name] = value
    if ancestry:
        for name, key in ANCESTRY_FIELDS:
            if name in wanted:
                context[name] = [text(ancestor.get(key)) for ancestor in ancestry]
    return context


def lowered(view: Mapping[str, Any]) -> dict[str, Any]:
    """The lower-case copy rules compare against (lists element by element)."""
    low: dict[str, Any] = {}
    for name, value in view.items():
        if type(value) is str:
            low[name] = value.lower()
        elif type(value) is list:
            low[name] = [v.lower() if v is not None else None for v in value]
    return low


def searchable_text(low: Mapping[str, Any]) -> str:
    """Every lower-case value in one string, NUL between them: what keywords and the
    intake's question about context rules (:meth:`~.ruleset.RuleSet.wanted`) scan."""
    parts: list[str] = []
    for value in low.values():
        if type(value) is str:
            parts.append(value)
        elif type(value) is list:
            parts.extend(v for v in value if v is not None)
    return "\x00".join(parts)
