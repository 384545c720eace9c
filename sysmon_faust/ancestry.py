"""``GET /process/{guid}/ancestry``: the answer, from the same walk as every alert's ancestry.

One truth: the join's ``process_ancestry`` and this answer both come from
:func:`sysmon_faust.process_tree.ancestry` over the same parent links (this
worker's copy of the process tree, which holds every link). The answer goes
up to :data:`MAX_HOPS` ancestors instead of ``SYSMON_ANCESTRY_DEPTH``; its
first hops are the alert's. (It used to walk table rows instead, and stopped
at the first ancestor whose own creation was not seen — "hops: 0" for the
WMI child whose alert named WmiPrvSE.exe.)

What each hop is known from: its GUID, image and command line are what its
*child's* ProcessCreate recorded (``ParentProcessGuid``, ``ParentImage``,
``ParentCommandLine``); ``own_creation_seen`` says whether the ancestor's own
ProcessCreate was read too (then ``GET /process/{its guid}`` has its row,
until retention lets it go). Pure; table-tested in tests/unit/test_ancestry.py.
"""

from __future__ import annotations

from typing import Any, Final

from sysmon_faust import process_tree
from sysmon_faust.process_tree import LinkLookup, Row

#: Ancestors in the HTTP answer at most.
MAX_HOPS: Final = 64


def answer(row: Row, links: LinkLookup, max_hops: int = MAX_HOPS) -> dict[str, Any]:
    """The ancestry answer of the process of ``row`` (its ProcessCreate row).

    ``{"process_guid", "process" (the row), "hops" (ancestors listed),
    "stopped" (process_tree.NO_PARENT, UNKNOWN_PARENT, CYCLE or DEPTH_REACHED),
    "unknown_parent_guid" (with UNKNOWN_PARENT: the ancestor whose own
    creation was not seen, so who started it is unknown), "ancestry": [each
    ancestor nearest first: process_guid, process_path, process_command_line,
    own_creation_seen]}``.
    """
    walk = process_tree.ancestry(row, links, max_hops)
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
