"""The process tree as parent links: what a process's ancestry is made of.

Every ProcessCreate names its parent: GUID, image path and command line
(Sysmon's ``ParentProcessGuid``, ``ParentImage``, ``ParentCommandLine``).
That *parent link*, kept per process, is all a walk up the tree needs: the
ancestry of a process is its row's own link, then the link stored for that
parent, then the one stored for the grandparent... Because each link comes
from the child's creation, an ancestor is named even when its own creation
was never seen (WmiPrvSE.exe started at boot, long before the pipeline): it
is only the hop *above* it that is then unknown.

Pure functions over rows and links; table-tested in
tests/unit/test_process_tree.py. Where the links live while the pipeline
runs is :mod:`sysmon_faust.tree_replica`.
"""

from __future__ import annotations

from collections.abc import Callable
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


#: Why a walk stopped (the HTTP answer's ``stopped``, sysmon_faust.ancestry).
NO_PARENT: Final = "no_parent"  # the last one names no parent GUID (a root, or an image only)
UNKNOWN_PARENT: Final = "unknown_parent"  # the last ancestor's own creation was not seen
CYCLE: Final = "cycle"  # a GUID came back: forged or corrupt data, never a real tree
DEPTH_REACHED: Final = "max_hops"  # as many ancestors as asked for


@dataclass(frozen=True, slots=True)
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
