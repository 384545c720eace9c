"""``GET /process/{guid}/ancestry``'s answer: the walk every alert's ancestry comes from.

Pure: rows and parent links as the process-tree copy holds them
(process_tree.encode_link of each creation seen).
"""

from __future__ import annotations

from typing import Any

import pytest

from sysmon_faust.core.ancestry import (
    CYCLE,
    DEPTH_REACHED,
    NO_PARENT,
    UNKNOWN_PARENT,
    ancestry,
    answer,
    encode_link,
)


def row(guid: str, parent: str | None, image: str | None = None) -> dict[str, Any]:
    return {
        "process_guid": guid,
        "process_path": f"C:\\{guid}.exe",
        "parent_process_guid": parent,
        "parent_process_path": image or (f"C:\\{parent}.exe" if parent else None),
        "parent_process_command_line": f"{parent} /run" if parent else None,
    }


def links_of(*rows: dict[str, Any]) -> dict[str, bytes]:
    """The links the intake writes: one per creation seen."""
    return {r["process_guid"]: encode_link(r) for r in rows}


@pytest.mark.parametrize(
    ("rows", "start", "hops", "stopped", "unknown"),
    [
        # c started by b started by a, which names no parent: the whole chain.
        ([row("c", "b"), row("b", "a"), row("a", None)], "c", "ba", NO_PARENT, None),
        # b's parent x was never seen created: x is still named (from b's
        # creation), and the hop above it is unknown.
        ([row("c", "b"), row("b", "x")], "c", "bx", UNKNOWN_PARENT, "x"),
        # The WMI child: its parent WmiPrvSE started at boot, before the recording.
        ([row("ps", "wmiprvse")], "ps", ["wmiprvse"], UNKNOWN_PARENT, "wmiprvse"),
        ([row("c", "b"), row("b", "c")], "c", "b", CYCLE, None),
        ([row("c", "c")], "c", "", CYCLE, None),
        ([row("c", None)], "c", "", NO_PARENT, None),
        # A parent named by its image alone (no GUID): listed, the last hop.
        ([row("c", None, image="C:\\boot.exe")], "c", [None], NO_PARENT, None),
    ],
)  # fmt: skip
def test_the_answer_says_where_and_why_the_walk_stopped(
    rows: list[dict[str, Any]], start: str, hops: Any, stopped: str, unknown: str | None
) -> None:
    links = links_of(*rows)
    process = next(r for r in rows if r["process_guid"] == start)
    result = answer(process, links.get)
    assert [hop["process_guid"] for hop in result["ancestry"]] == list(hops)
    assert (result["stopped"], result["unknown_parent_guid"]) == (stopped, unknown)
    assert result["hops"] == len(hops)
    assert result["process"] == process and result["process_guid"] == start


def test_each_hop_says_whether_its_own_creation_was_seen() -> None:
    rows = [row("c", "b"), row("b", "x")]
    result = answer(rows[0], links_of(*rows).get)
    seen = {hop["process_guid"]: hop["own_creation_seen"] for hop in result["ancestry"]}
    assert seen == {"b": True, "x": False}
    # Named from its child's creation: image and command line are b's ParentImage/-CommandLine.
    assert result["ancestry"][1]["process_path"] == "C:\\x.exe"
    assert result["ancestry"][1]["process_command_line"] == "x /run"


def test_the_alert_and_the_answer_list_the_same_ancestors() -> None:
    # The first SYSMON_ANCESTRY_DEPTH hops of the answer are the alert's process_ancestry.
    chain = [row(f"p{n}", f"p{n + 1}") for n in range(10)] + [row("p10", None)]
    links = links_of(*chain)
    full = answer(chain[0], links.get)
    for depth in (0, 1, 4, 10, 11):
        alert = ancestry(chain[0], links.get, depth)
        hops = [
            {k: v for k, v in hop.items() if k != "own_creation_seen"} for hop in full["ancestry"]
        ]
        assert alert.ancestors == hops[:depth]
    assert ancestry(chain[0], links.get, 4).stopped == DEPTH_REACHED
    assert answer(chain[0], links.get, max_hops=3)["stopped"] == DEPTH_REACHED
