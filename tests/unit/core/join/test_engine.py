"""The join engine, event by event, in memory: what the worker and ``rules test`` decide.

Every event goes through the real normalizer and the engine
(:class:`sysmon_faust.core.join.local.LocalJoin`: one partition, stream time
the greatest event time read); no broker. The worker's agent runs the same
engine (integration tests: tests/integration/).
"""

from __future__ import annotations

from typing import Any

import pytest

from sysmon_faust.core.join.engine import JOINED, UNMATCHED, Output
from sysmon_faust.core.join.grace import AFTER_GRACE, STARTED_BEFORE_GRACE
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.join.semantics import NO_PROCESS_GUID, PROCESS_UNKNOWN, Row
from sysmon_faust.core.normalize import ZERO_GUID
from sysmon_faust.core.sigma.ruleset import RuleSet
from tests.events import guid, terminate
from tests.timeline import (
    CMD,
    MSBUILD,
    POWERSHELL,
    SVCHOST,
    WMIPRVSE,
    A,
    B,
    C,
    at,
    connect,
    create,
    event,
    hop,
)  # fmt: skip


def local_join(grace_ms: int, depth: int) -> LocalJoin:
    return LocalJoin.with_defaults(RuleSet(()), grace_ms, depth, window_ms=0)


def joined_rows(made: list[Output]) -> list[Row]:
    return [output.row for output in made if output.topic == JOINED]


def run(raws: list[bytes], grace_s: int = 60, depth: int = 4) -> list[tuple[Any, ...]]:
    """What each event (by its index, or "end") made: ("joined", port) / ("unmatched", ...)."""
    join = local_join(grace_s * 1000, depth)
    steps: list[tuple[int | str, list[Output]]] = [
        (index, join.feed(event(raw))) for index, raw in enumerate(raws)
    ]
    steps.append(("end", join.finish()))
    seen: list[tuple[Any, ...]] = []
    for step, made in steps:
        seen += [(step, "joined", row["dst_port"]) for row in joined_rows(made)]
        seen += [
            (step, "unmatched", o.row["dst_port"], o.row["unmatched_reason"])
            for o in made
            if o.topic == UNMATCHED
        ]
    return seen


# --- the join -----------------------------------------------------------------------


CASES = {
    "creation then connect joins at once": (
        [create(0, A), connect(1, A, 1)],
        60,
        [(1, "joined", 1)],
    ),
    "connects before the creation join when it comes, in event-time order": (
        [connect(5, A, 1), connect(2, A, 2), connect(5, A, 3), create(6, A)],
        60,
        [(3, "joined", 2), (3, "joined", 1), (3, "joined", 3)],
    ),
    "a creation releases only its own process's connects": (
        [connect(1, A, 1), connect(1, B, 2), create(2, B)],
        60,
        [(2, "joined", 2), ("end", "unmatched", 1, AFTER_GRACE)],
    ),
    "without a grace an unknown process is unmatched at once, for good": (
        [connect(1, A, 1), create(2, A), connect(3, A, 2)],
        0,
        [(0, "unmatched", 1, PROCESS_UNKNOWN), (2, "joined", 2)],
    ),
    "the zero GUID never joins, with a grace": (
        [connect(1, ZERO_GUID, 1)],
        60,
        [(0, "unmatched", 1, NO_PROCESS_GUID)],
    ),
    "the zero GUID never joins, without a grace": (
        [connect(1, ZERO_GUID, 1)],
        0,
        [(0, "unmatched", 1, NO_PROCESS_GUID)],
    ),
    "a process that started more than the grace before does not wait": (
        [connect(600, A, 1), create(601, A)],
        60,
        [(0, "unmatched", 1, STARTED_BEFORE_GRACE)],
    ),
    "a waiting connect expires when stream time reaches its deadline": (
        [connect(0, A, 1), create(9.999, B), create(10, C), create(11, A)],
        10,
        [(2, "unmatched", 1, AFTER_GRACE)],
    ),
    "a creation at the deadline is joined before expiry runs": (
        [connect(0, A, 1), create(10, A)],
        10,
        [(1, "joined", 1)],
    ),
    "the deadline is stream time (the greatest event time) + the grace, not the event's time": (
        [create(20, B), connect(5, A, 1), create(29.999, C), create(30, C)],
        10,
        [(3, "unmatched", 1, AFTER_GRACE)],
    ),
    "an older event does not move stream time back": (
        [connect(0, A, 1), create(9, B), create(1, C), create(12, A)],
        10,
        [(3, "joined", 1)],
    ),
    "at the end of the file every waiting connect expires": (
        [connect(0, A, 1), connect(1, B, 2)],
        60,
        [("end", "unmatched", 1, AFTER_GRACE), ("end", "unmatched", 2, AFTER_GRACE)],
    ),
    "a termination keeps the row a retention longer (an hour by default)": (
        [create(0, A), terminate(at(1), A), connect(2, A, 1)],
        60,
        [(2, "joined", 1)],
    ),
}


@pytest.mark.parametrize(("raws", "grace_s", "expected"), CASES.values(), ids=CASES.keys())
def test_join(raws: list[bytes], grace_s: int, expected: list[tuple[Any, ...]]) -> None:
    assert run(raws, grace_s) == expected


def test_joined_record_has_both_sides() -> None:
    join = local_join(60_000, 4)
    join.feed(event(create(0, A, image=POWERSHELL, parent_image=WMIPRVSE)))
    (joined,) = joined_rows(join.feed(event(connect(1, A, 443, image=POWERSHELL))))
    assert joined["process_guid"] == A
    assert joined["dst_ip_addr"] == "10.0.10.106"
    assert joined["dst_port"] == 443
    assert joined["process_command_line"] == f"{POWERSHELL} /run"
    assert joined["parent_process_path"] == WMIPRVSE
    assert join.waiting == 0


# --- ancestry ------------------------------------------------------------------------

# svchost (never created in the file) → WmiPrvSE (W) → cmd (C) → MSBuild (M) → connect.
SVC, W, CMD_GUID, M = guid(0x10), guid(0x11), guid(0x12), guid(0x13)
TREE = [
    create(0, W, image=WMIPRVSE, parent=SVC, parent_image=SVCHOST),
    create(1, CMD_GUID, image=CMD, parent=W, parent_image=WMIPRVSE),
    create(2, M, image=MSBUILD, parent=CMD_GUID, parent_image=CMD),
]


def joined_ancestry(raws: list[bytes], depth: int = 4) -> list[list[dict[str, Any]]]:
    join = local_join(60_000, depth)
    rows: list[Row] = []
    for raw in raws:
        rows += joined_rows(join.feed(event(raw)))
    return [row["process_ancestry"] for row in rows]


def test_ancestry_three_levels_nearest_first() -> None:
    # The walk stops at svchost: its own creation was never read, so the hop
    # above it is unknown (the link that names it comes from WmiPrvSE's creation).
    assert joined_ancestry([*TREE, connect(3, M, 443, image=MSBUILD)]) == [
        [hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)]
    ]


@pytest.mark.parametrize(("depth", "hops"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (64, 3)])
def test_ancestry_depth(depth: int, hops: int) -> None:
    full = [hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)]
    raws = [*TREE, connect(3, M, 443, image=MSBUILD)]
    assert joined_ancestry(raws, depth) == [full[:hops]]


def test_ancestry_is_what_was_known_when_the_connect_joined() -> None:
    # MSBuild's creation and a connect come first; cmd's and WmiPrvSE's
    # creations are read later. The first join knows only MSBuild's own link.
    m_create, c_create, w_create = TREE[2], TREE[1], TREE[0]
    raws = [
        m_create,
        connect(3, M, 1, image=MSBUILD),
        c_create,
        connect(4, M, 2, image=MSBUILD),
        w_create,
        connect(5, M, 3, image=MSBUILD),
    ]
    assert joined_ancestry(raws) == [
        [hop(CMD_GUID, CMD)],
        [hop(CMD_GUID, CMD), hop(W, WMIPRVSE)],
        [hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)],
    ]


def test_a_released_connect_gets_the_ancestry_known_at_its_release() -> None:
    raws = [TREE[0], TREE[1], connect(3, M, 1, image=MSBUILD), TREE[2]]
    assert joined_ancestry(raws) == [[hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)]]
