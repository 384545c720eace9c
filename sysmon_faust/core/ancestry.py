"""A process's ancestry: parent links, the walk up them, and when a link may still come.

Every ProcessCreate names its parent: GUID, image path and command line
(Sysmon's ``ParentProcessGuid``, ``ParentImage``, ``ParentCommandLine``).
That *parent link*, kept per process, is all a walk up the tree needs: the
ancestry of a process is its row's own link, then the link stored for that
parent, then the one stored for the grandparent... Because each link comes
from the child's creation, an ancestor is named even when its own creation
was never seen (WmiPrvSE.exe started at boot, long before the pipeline): it
is only the hop *above* it that is then unknown.

One walk (:func:`ancestry`) serves everything: the join's
``process_ancestry`` (depth ``SYSMON_ANCESTRY_DEPTH``) and the answer of
``GET /process/{guid}/ancestry`` (:func:`answer`, up to :data:`MAX_HOPS`).
Its first hops are the alert's. Each hop's GUID, image and command line are
what its child's creation recorded; ``own_creation_seen`` says whether the
ancestor's own ProcessCreate was read too. (The HTTP answer used to walk
table rows instead, and stopped at the first ancestor whose own creation was
not seen: "hops: 0" for the WMI child whose alert named WmiPrvSE.exe.)

Whether a missing link may still come is decided here too
(:func:`creation_may_come`), from the watermarks the intakes write: how far
each input partition has been written. Where the links live while the
pipeline runs is :mod:`sysmon_faust.stream.tree_replica`.

Pure functions over rows and links; table-tested in
tests/unit/core/test_ancestry.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

#: An ancestor in ``process_ancestry``: the fields every hop carries.
Ancestor = dict[str, Any]
Row = dict[str, Any]

ANCESTOR_FIELDS: Final = ("process_guid", "process_path", "process_command_line")


def parent_link(row: Row) -> Ancestor | None:
    """The parent a ProcessCreate row names, as an ancestor; ``None`` when it names none.

    A parent named by its image alone (no GUID, or Sysmon's zero GUID) is an
    ancestor too — a detection on the parent's image still applies — but the
    walk cannot go above it.
    """
    guid = row.get("parent_process_guid")
    if not guid and not row.get("parent_process_path"):
        return None
    return {
        "process_guid": guid or None,
        "process_path": row.get("parent_process_path"),
        "process_command_line": row.get("parent_process_command_line"),
    }


def encode_link(row: Row) -> bytes:
    """The value stored for a process: its parent link, or ``{}`` for a process with no parent.

    ``{}`` is not nothing: it says the process's creation was seen and names
    no parent, so a walk that reaches it is complete rather than cut short.
    """
    link = parent_link(row)
    return orjson.dumps(link if link is not None else {})


def decode_link(value: bytes) -> Ancestor | None:
    link: dict[str, Any] = orjson.loads(value)
    return link or None


#: Why a walk stopped (the HTTP answer's ``stopped``, sysmon_faust.core.ancestry).
NO_PARENT: Final = "no_parent"  # the last one names no parent GUID (a root, or an image only)
UNKNOWN_PARENT: Final = "unknown_parent"  # the last ancestor's own creation was not seen
CYCLE: Final = "cycle"  # a GUID came back: forged or corrupt data, never a real tree
DEPTH_REACHED: Final = "max_hops"  # as many ancestors as asked for


# Not frozen (as shapes.Envelope): one per walk, and nothing changes it.
@dataclass(slots=True)
class Walk:
    """A process's ancestors, nearest first, and why the walk stopped where it did."""

    ancestors: list[Ancestor]
    #: The ancestor whose own creation is not known (so the hop above it is
    #: missing); ``None`` when the walk reached a root, the depth or a cycle.
    unknown: str | None = None
    #: One of NO_PARENT, UNKNOWN_PARENT, CYCLE, DEPTH_REACHED.
    stopped: str = NO_PARENT


#: ``links(guid)``: the stored value for ``guid`` (see :func:`encode_link`), or ``None``.
LinkLookup = Callable[[str], bytes | None]


def ancestry(row: Row, links: LinkLookup, depth: int) -> Walk:
    """Up to ``depth`` ancestors of the process of ``row`` (a ProcessCreate row).

    The one walk of the project: the join's ``process_ancestry`` (depth
    ``SYSMON_ANCESTRY_DEPTH``) and ``GET /process/{guid}/ancestry`` (depth 64)
    both come from it, over the same links.
    """
    ancestors: list[Ancestor] = []
    seen = {row.get("process_guid")}
    link = parent_link(row)
    while link is not None:
        if len(ancestors) == depth:
            return Walk(ancestors, stopped=DEPTH_REACHED)
        guid = link["process_guid"]
        if guid in seen:
            return Walk(ancestors, stopped=CYCLE)
        seen.add(guid)
        ancestors.append(link)
        if guid is None:
            return Walk(ancestors)  # named by its image alone: nothing to look up
        if len(ancestors) == depth:
            # Not looked up: whether the hop above is known does not matter.
            return Walk(ancestors, stopped=DEPTH_REACHED)
        stored = links(guid)
        if stored is None:
            return Walk(ancestors, unknown=guid, stopped=UNKNOWN_PARENT)
        link = decode_link(stored)
    return Walk(ancestors)


# --- watermarks: whether a missing link may still come ---------------------------------

#: Watermark keys of the process-tree topic: this prefix and the input
#: partition's number (never a GUID: GUIDs start with "{").
WATERMARK_PREFIX: Final = b"\x00watermark:"
_MILLIS = struct.Struct(">q")
#: A creation's event time is 0-1 s after the start time in its GUID
#: (guid_time.process_start_ms); a little more for the stream's own disorder.
START_TO_CREATION_MS: Final = 2_000


def encode_watermark(stream_time_ms: int) -> bytes:
    return _MILLIS.pack(stream_time_ms)


def decode_watermark(value: bytes) -> int:
    millis: int = _MILLIS.unpack(value)[0]
    return millis


def watermark_key(input_partition: int) -> bytes:
    return WATERMARK_PREFIX + b"%d" % input_partition


def creation_may_come(start_ms: int | None, watermarks: Iterable[int]) -> bool:
    """Whether the link of a process that started at ``start_ms`` may still be written.

    ``start_ms``: its plausible start time (Unix ms,
    :func:`sysmon_faust.core.guid_time.plausible_start_ms`), None when unknown —
    then there is no way to tell, and it is not waited for.
    ``watermarks``: how far each input partition has been written (Unix ms),
    as read in the process's partition of the topic (none read: no intake
    has written anything yet).
    """
    if start_ms is None:
        return False
    lowest = min(watermarks, default=None)
    return lowest is None or lowest < start_ms + START_TO_CREATION_MS


# --- GET /process/{guid}/ancestry --------------------------------------------------------

#: Ancestors in the HTTP answer at most.
MAX_HOPS: Final = 64


def answer(row: Row, links: LinkLookup, max_hops: int = MAX_HOPS) -> dict[str, Any]:
    """The ancestry answer of the process of ``row`` (its ProcessCreate row).

    ``{"process_guid", "process" (the row), "hops" (ancestors listed),
    "stopped" (NO_PARENT, UNKNOWN_PARENT, CYCLE or DEPTH_REACHED),
    "unknown_parent_guid" (with UNKNOWN_PARENT: the ancestor whose own
    creation was not seen, so who started it is unknown), "ancestry": [each
    ancestor nearest first: process_guid, process_path, process_command_line,
    own_creation_seen]}``.
    """
    walk = ancestry(row, links, max_hops)
    return {
        "process_guid": row.get("process_guid"),
        "process": row,
        "hops": len(walk.ancestors),
        "stopped": walk.stopped,
        "unknown_parent_guid": walk.unknown,
        "ancestry": [
            ancestor | {"own_creation_seen": _seen(ancestor["process_guid"], links)}
            for ancestor in walk.ancestors
        ],
    }


def _seen(guid: str | None, links: LinkLookup) -> bool:
    return guid is not None and links(guid) is not None
