"""``dst_query_name``: a generated stream of DNS answers and connects, against a reference.

Processes ask for names (Sysmon 22, answers in ``QueryResults`` as Sysmon
writes them) and connect to addresses, some answered, some answered too long
ago, some never. The reference here, written apart from
:mod:`sysmon_faust.core.dns_answers`, replays each process's queries: a
connect carries the name of the newest query of its own process that
answered its address at most the TTL before it, and no name otherwise.
"""

from __future__ import annotations

import random
from typing import Any

from sysmon_faust.core.join.engine import ENRICHED, Limits
from sysmon_faust.core.join.grace import GraceLimits
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.join.state import Lifetimes
from sysmon_faust.core.normalize import PROCESS_EVENT_IDS, NormalizedEvent, normalize
from sysmon_faust.core.sigma.ruleset import RuleSet
from tests.events import guid, winlogbeat
from tests.timeline import at, connect, create

TTL_S = 300


def dns_query(seconds: float, process: str, name: str, answered: list[str]) -> bytes:
    results = "type:  5 cdn.example.net;" + "".join(f"::ffff:{a};" for a in answered)
    return winlogbeat(22, at(seconds), process, QueryName=name, QueryStatus="0",
                      QueryResults=results, Image="C:\\Program Files\\App\\app.exe")  # fmt: skip


def _join(ttl_s: int, per_process: int) -> LocalJoin:
    grace = GraceLimits(grace_ms=60_000, max_per_process=1_000, max_total=10_000)
    return LocalJoin(
        RuleSet(()),
        Lifetimes(grace=grace, retention_ms=3600_000, ttl_ms=86400_000, dns_ttl_ms=ttl_s * 1000),
        Limits(
            ancestry_wait_ms=0,
            enrich_events=frozenset(PROCESS_EVENT_IDS),
            dns_answers_per_process=per_process,
        ),
    )


def _names(join: LocalJoin, raws: list[bytes]) -> list[Any]:
    """dst_query_name of each enriched connect, in order."""
    names = []
    for raw in raws:
        event = normalize(raw, PROCESS_EVENT_IDS)
        assert isinstance(event, NormalizedEvent), event
        for output in join.feed(event):
            if output.topic == ENRICHED and output.row["event_id"] == 3:
                names.append(output.row["dst_query_name"])
    return names


def test_every_connect_to_an_answered_address_carries_the_right_name() -> None:
    rng = random.Random(11)
    processes = [guid(n) for n in range(1, 6)]
    pool = [f"198.51.100.{n}" for n in range(1, 31)]
    raws = [create(0, process) for process in processes]
    history: dict[str, list[tuple[float, str, list[str]]]] = {p: [] for p in processes}
    expected: list[str | None] = []
    clock = 1.0
    stale = 0
    for _ in range(3000):
        clock += rng.uniform(0.5, 20)
        process = rng.choice(processes)
        if rng.random() < 0.4:
            name = f"host{rng.randrange(60)}.example.com"
            answered = rng.sample(pool, rng.randint(1, 3))
            raws.append(dns_query(clock, process, name, answered))
            history[process].append((clock, name, answered))
            continue
        address = rng.choice(pool)
        raws.append(connect(clock, process, 443).replace(b"10.0.10.106", address.encode()))
        named = None
        for when, name, answered in reversed(history[process]):
            if address in answered:
                if clock - when <= TTL_S:
                    named = name
                else:
                    stale += 1
                break
        expected.append(named)
    names = _names(_join(TTL_S, 10_000), raws)
    assert names == expected
    # Not vacuous: named, and answered only too long ago, both occur often.
    assert sum(n is not None for n in expected) > 200
    assert stale > 200


def test_a_name_is_not_given_after_the_ttl_nor_by_another_process() -> None:
    a, b = guid(1), guid(2)
    raws = [create(0, a), create(0, b), dns_query(1, a, "c2.example.org", ["203.0.113.9"]),
            connect(2, a, 443), connect(3, b, 443), connect(1 + TTL_S + 1, a, 443)]  # fmt: skip
    raws = [raw.replace(b"10.0.10.106", b"203.0.113.9") for raw in raws]
    assert _names(_join(TTL_S, 10), raws) == ["c2.example.org", None, None]
    # With a TTL of 0 no answer is kept.
    assert _names(_join(0, 10), raws) == [None, None, None]
