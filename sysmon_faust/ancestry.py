"""Walk a process's ancestry through ``parent_process_guid``, hop by hop.

The walk is pure: it is given an async ``fetch(guid) -> row | None`` (the
HTTP view fetches each hop from the worker that owns it), so its stopping
rules are unit-tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

MAX_HOPS: Final = 64

#: Why the walk stopped.
ROOT_REACHED: Final = "no_parent"  # the oldest row has no parent GUID
UNKNOWN_PARENT: Final = "unknown_parent"  # the parent started before we saw it
CYCLE: Final = "cycle"  # a GUID came back (corrupt or forged data)
MAX_HOPS_REACHED: Final = "max_hops"

Row = dict[str, Any]


async def walk(
    guid: str, fetch: Callable[[str], Awaitable[Row | None]], max_hops: int = MAX_HOPS
) -> dict[str, Any] | None:
    """The chain from ``guid`` up to its oldest known ancestor; ``None`` if ``guid`` is unknown."""
    chain: list[Row] = []
    seen: set[str] = set()
    current = guid
    missing: str | None = None
    while True:
        row = await fetch(current)
        if row is None:
            if not chain:
                return None
            stopped, missing = UNKNOWN_PARENT, current
            break
        chain.append(row)
        seen.add(current)
        parent = row.get("parent_process_guid")
        if not parent:
            stopped, missing = ROOT_REACHED, None
            break
        if parent in seen:
            stopped, missing = CYCLE, None
            break
        if len(chain) > max_hops:
            stopped, missing = MAX_HOPS_REACHED, None
            break
        current = parent
    return {
        "process_guid": guid,
        "hops": len(chain) - 1,
        "stopped": stopped,
        "unknown_parent_guid": missing,
        "ancestry": chain,
    }
