from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sysmon_faust.ancestry import (
    CYCLE,
    MAX_HOPS_REACHED,
    ROOT_REACHED,
    UNKNOWN_PARENT,
    walk,
)


def run_walk(rows: dict[str, dict[str, Any]], guid: str, max_hops: int = 64) -> Any:
    async def fetch(g: str) -> dict[str, Any] | None:
        return rows.get(g)

    return asyncio.run(walk(guid, fetch, max_hops))


def row(guid: str, parent: str | None) -> dict[str, Any]:
    return {"process_guid": guid, "parent_process_guid": parent}


THREE_LEVELS = {"c": row("c", "b"), "b": row("b", "a"), "a": row("a", None)}


@pytest.mark.parametrize(
    ("rows", "start", "chain", "stopped", "missing"),
    [
        (THREE_LEVELS, "c", "cba", ROOT_REACHED, None),
        ({"c": row("c", "b"), "b": row("b", "x")}, "c", "cb", UNKNOWN_PARENT, "x"),
        ({"c": row("c", "b"), "b": row("b", "c")}, "c", "cb", CYCLE, None),
        ({"c": row("c", "c")}, "c", "c", CYCLE, None),
        ({"c": row("c", None)}, "c", "c", ROOT_REACHED, None),
    ],
)  # fmt: skip
def test_walk_stops_where_it_must(
    rows: dict[str, dict[str, Any]], start: str, chain: str, stopped: str, missing: str | None
) -> None:
    result = run_walk(rows, start)
    assert "".join(r["process_guid"] for r in result["ancestry"]) == chain
    assert result["stopped"] == stopped
    assert result["unknown_parent_guid"] == missing
    assert result["hops"] == len(chain) - 1


def test_unknown_process_has_no_ancestry() -> None:
    assert run_walk({}, "nope") is None


def test_walk_is_bounded() -> None:
    rows = {str(n): row(str(n), str(n + 1)) for n in range(200)}
    result = run_walk(rows, "0", max_hops=64)
    assert result["stopped"] == MAX_HOPS_REACHED
    assert result["hops"] == 64
