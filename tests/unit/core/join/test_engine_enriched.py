"""``sysmon-enriched``, event by event: every enabled Sysmon event once, with its process.

The same ladder as a connect's (tests/unit/core/join/test_engine.py): the row
there → enriched at once; unknown → waits in the grace buffer and leaves
with its process, or without it and with the reason. In memory, through the
real normalizer and the worker's engine (:class:`LocalJoin`).
"""

from __future__ import annotations

from typing import Any

import orjson

from sysmon_faust.core import activity
from sysmon_faust.core.join import expiry
from sysmon_faust.core.join.engine import (
    ENRICHED,
    JOINED,
    REKEYED,
    UNMATCHED,
    JoinEngine,
    Limits,
    Output,
)
from sysmon_faust.core.join.grace import AFTER_GRACE, STARTED_BEFORE_GRACE, GraceLimits
from sysmon_faust.core.join.local import InMemoryTree, LocalJoin
from sysmon_faust.core.join.semantics import NO_PROCESS_GUID, Row
from sysmon_faust.core.join.state import JoinState, Lifetimes
from sysmon_faust.core.join.store import InMemoryStore
from sysmon_faust.core.normalize import (
    PROCESS_EVENT_IDS,
    ZERO_GUID,
    NormalizedEvent,
    normalize,
)
from sysmon_faust.core.rekey import EVENT_ID_FIELD, EVENT_TIME_FIELD, TARGET_LOOKUP, key_partition
from sysmon_faust.core.sigma.fields import EVENT_DATA
from sysmon_faust.core.sigma.ruleset import RuleSet
from tests.events import guid, guids_in_partition, winlogbeat
from tests.timeline import CMD, SVCHOST, A, B, at, connect, create, hop

REGISTRY_KEY = "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\updater"


def registry_set(seconds: float, process: str) -> bytes:
    return winlogbeat(13, at(seconds), process, Image=CMD, EventType="SetValue",
                      TargetObject=REGISTRY_KEY, Details="C:\\Users\\Public\\u.exe")  # fmt: skip


def process_access(seconds: float, source: str, target: str) -> bytes:
    """Sysmon 10 as schema 4.90 spells it: SourceProcessGUID, TargetProcessGUID."""
    raw = winlogbeat(10, at(seconds), source, SourceImage=CMD, SourceProcessGUID=source,
                     TargetProcessGUID=target, TargetImage="C:\\Windows\\System32\\lsass.exe",
                     GrantedAccess="0x1010")  # fmt: skip
    return raw.replace(b'"ProcessGuid": "' + source.encode() + b'", ', b"")


def terminate(seconds: float, process: str) -> bytes:
    return winlogbeat(5, at(seconds), process, Image=CMD)


def _event(raw: bytes) -> NormalizedEvent:
    outcome = normalize(raw, PROCESS_EVENT_IDS)
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def run(
    raws: list[bytes], enrich: frozenset[int] = frozenset(PROCESS_EVENT_IDS), grace_s: int = 60
) -> tuple[LocalJoin, list[tuple[Any, Output]]]:
    """(the join, [(index of the event or "end", an output)...])."""
    join = LocalJoin.with_defaults(RuleSet(()), grace_s * 1000, 4, 0, enrich_events=enrich)
    made: list[tuple[Any, Output]] = []
    for index, raw in enumerate(raws):
        made += [(index, output) for output in join.feed(_event(raw))]
    made += [("end", output) for output in join.finish()]
    return join, made


def enriched(made: list[tuple[Any, Output]]) -> list[tuple[Any, int, str | None]]:
    """(when, event id, unmatched reason) of each sysmon-enriched record."""
    return [(step, o.row["event_id"], o.row["unmatched_reason"])
            for step, o in made if o.topic == ENRICHED]  # fmt: skip


def test_an_event_of_a_known_process_has_its_creation_and_ancestry() -> None:
    _, made = run([create(0, A), registry_set(1, A)])
    assert enriched(made) == [(0, 1, None), (1, 13, None)]
    record = next(o for step, o in made if step == 1).row
    assert record["event_data"]["TargetObject"] == REGISTRY_KEY
    assert record["process"]["process_command_line"] == f"{CMD} /run"
    assert record["process"]["parent_process_path"] == SVCHOST
    assert record["process_ancestry"] == [hop(record["process"]["parent_process_guid"], SVCHOST)]
    assert next(o for step, o in made if step == 1).key == A.encode()


def test_an_event_before_its_creation_waits_and_leaves_with_it() -> None:
    _, made = run([registry_set(1, A), registry_set(2, A), create(3, A)])
    assert enriched(made) == [(2, 1, None), (2, 13, None), (2, 13, None)]


def test_an_event_whose_creation_never_comes_leaves_after_the_grace() -> None:
    _, made = run([registry_set(1, A), create(100, B)])
    assert enriched(made) == [(1, 1, None), (1, 13, AFTER_GRACE)]
    record = next(o for _, o in made if o.row.get("unmatched_reason")).row
    assert record["process"] is None and record["process_ancestry"] == []


def test_an_event_of_a_process_started_long_before_leaves_at_once() -> None:
    # The GUIDs of tests/events.py say their process started at T0 - 4 s.
    assert enriched(run([registry_set(3600, A)])[1]) == [(0, 13, STARTED_BEFORE_GRACE)]


def test_an_event_with_the_zero_guid_leaves_at_once_unkeyed() -> None:
    _, made = run([registry_set(1, ZERO_GUID)])
    assert enriched(made) == [(0, 13, NO_PROCESS_GUID)]
    assert made[0][1].key is None


def test_connects_are_enriched_with_their_join_or_their_reason() -> None:
    _, made = run([create(0, A), connect(1, A, 443), connect(3600, B, 80)])
    topics = [(step, o.topic) for step, o in made if step != 0]
    assert topics == [(1, JOINED), (1, ENRICHED), (2, UNMATCHED), (2, ENRICHED)]
    joined = next(o.row for step, o in made if step == 1 and o.topic == JOINED)
    record = next(o.row for step, o in made if step == 1 and o.topic == ENRICHED)
    assert record["process_ancestry"] == joined["process_ancestry"]
    assert record["dst_port"] == 443 and record["process"]["process_path"] == CMD
    assert enriched(made)[-1] == (2, 3, STARTED_BEFORE_GRACE)


def test_process_access_is_its_sources() -> None:
    _, made = run([create(0, A), create(0, B), process_access(1, A, B)])
    record = next(o for step, o in made if step == 2 and o.topic == ENRICHED)
    assert record.key == A.encode() and record.row["process"]["process_guid"] == A
    assert record.row["target_process"]["process_guid"] == B


def test_a_termination_before_its_creation_waits_and_ends_the_row() -> None:
    join, made = run([terminate(2, A), create(1, A)])
    assert enriched(made) == [(1, 1, None), (1, 5, None)]
    # At the end of the file the row went after its retention, not its TTL: it was ended.
    assert join.engine.stats.rows_expired_after_termination == 1
    assert join.engine.stats.rows_expired_after_ttl == 0


def test_only_the_enabled_ids() -> None:
    _, made = run([create(0, A), registry_set(1, A), connect(2, A, 443)], enrich=frozenset({3}))
    assert enriched(made) == [(2, 3, None)]
    _, made = run([registry_set(1, A), create(2, A)], enrich=frozenset())
    assert enriched(made) == []


# --- Sysmon 8/10: the target's side, from the target's partition --------------------


def _engine(partitions: int) -> tuple[JoinEngine, InMemoryTree]:
    tree = InMemoryTree()
    grace = GraceLimits(grace_ms=60_000, max_per_process=100, max_total=1_000)
    state = JoinState(InMemoryStore(), InMemoryStore(), InMemoryStore(),
                      Lifetimes(grace=grace, retention_ms=3600_000, ttl_ms=86400_000))  # fmt: skip
    limits = Limits(ancestry_wait_ms=0, enrich_events=frozenset(PROCESS_EVENT_IDS),
                    partitions=partitions)  # fmt: skip
    return JoinEngine(state, tree, RuleSet(()), limits), tree


def _feed(engine: JoinEngine, tree: InMemoryTree, raw: bytes, partitions: int) -> list[Output]:
    """One event as the intake writes it: to its process's partition (the tree first)."""
    outcome = _event(raw)
    if outcome.event_id == 1:
        tree.record(outcome.fields)
    fields: Row = {EVENT_ID_FIELD: outcome.event_id, EVENT_TIME_FIELD: outcome.timestamp_ms}
    fields |= outcome.fields
    fields[EVENT_DATA] = outcome.event_data
    partition = key_partition(outcome.process_guid.encode(), partitions)
    return engine.handle(fields, partition, (0, 0), 0)


def test_process_access_across_partitions_has_both_sides_after_one_hop() -> None:
    source, target = guids_in_partition(0, 4, 1)[0], guids_in_partition(3, 4, 1)[0]
    engine, tree = _engine(4)
    _feed(engine, tree, create(0, target, image="C:\\Windows\\System32\\lsass.exe"), 4)
    _feed(engine, tree, create(1, source), 4)
    made = _feed(engine, tree, process_access(2, source, target), 4)
    # The source side is done in the source's partition; the record goes on
    # to the target's, through the re-keying topic.
    assert [(o.topic, o.key, o.partition) for o in made] == [(REKEYED, target.encode(), 3)]
    hop = dict(made[0].row)
    assert hop[EVENT_ID_FIELD] == TARGET_LOOKUP
    done = engine.handle(orjson.loads(orjson.dumps(hop)), 3, (1, 0), 0)
    assert [(o.topic, o.key) for o in done] == [(ENRICHED, source.encode())]
    record = done[0].row
    assert record["process"]["process_command_line"] == f"{CMD} /run"
    assert record["target_process"]["process_path"] == "C:\\Windows\\System32\\lsass.exe"
    assert record["target_process_ancestry"] == [hop_of(SVCHOST)]
    assert record["unmatched_reason"] is None and record["target_unmatched_reason"] is None
    assert engine.stats.enriched_by_event_id[10] == 1 and engine.stats.target_lookups_routed == 1


def test_a_target_created_after_the_access_is_waited_for_in_its_partition() -> None:
    # Real: Defender's MsMpEng.exe opens a process 3 ms before its ProcessCreate
    # is logged (empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod).
    source, target = guids_in_partition(0, 4, 1)[0], guids_in_partition(3, 4, 1)[0]
    engine, tree = _engine(4)
    _feed(engine, tree, create(1, source), 4)
    (made,) = _feed(engine, tree, process_access(2, source, target), 4)
    assert engine.handle(dict(made.row), 3, (1, 0), 0) == []  # waits for the target
    released = _feed(engine, tree, create(3, target), 4)
    done = [o for o in released if o.topic == ENRICHED and o.row["event_id"] == 10]
    assert len(done) == 1 and done[0].key == source.encode()
    assert done[0].row["target_process"]["process_guid"] == target
    assert done[0].row["target_unmatched_reason"] is None


def test_a_target_the_table_cannot_get_is_unmatched_with_the_reason() -> None:
    source, target = guids_in_partition(0, 4, 1)[0], guids_in_partition(3, 4, 1)[0]
    engine, tree = _engine(4)
    _feed(engine, tree, create(3600, source), 4)
    # The target's GUID says it started an hour before: its creation is not coming.
    (made,) = _feed(engine, tree, process_access(3601, source, target), 4)
    (done,) = engine.handle(dict(made.row), 3, (1, 0), 0)
    assert done.row["target_process"] is None
    assert done.row["target_unmatched_reason"] == STARTED_BEFORE_GRACE
    (local,) = _feed(engine, tree, process_access(3602, source, ZERO_GUID), 4)
    assert local.topic == ENRICHED and local.row["target_unmatched_reason"] == NO_PROCESS_GUID


def hop_of(image: str) -> dict[str, Any]:
    """The ancestor tests/timeline.py's creations name (their parent)."""
    return hop(guid(0xFFF), image)


# --- what a process did: its activity summary ------------------------------------------


def test_a_process_summary_counts_its_events_and_goes_a_ttl_after_the_last() -> None:
    join = LocalJoin.with_defaults(
        RuleSet(()), 60_000, 4, 0, enrich_events=frozenset(PROCESS_EVENT_IDS)
    )
    for raw in (create(0, A), registry_set(1, A), registry_set(2, A), connect(3, A, 443)):
        join.feed(_event(raw))
    summary, _ = join.state.activity_of(0, A)
    assert summary is not None
    # The creation is counted from the process's row, when asked (activity.answer).
    assert summary["counts"] == {"13": 2, "3": 1}
    assert [item["event_id"] for item in summary["recent"]["registry"]] == [13, 13]
    ttl_s = join.state.lifetimes.activity_ttl_ms // 1000
    # Another process's events move stream time on: A's summary stays at
    # least 0.9 of the TTL after its last event, and is gone after the TTL.
    join.feed(_event(registry_set(3 + ttl_s * 0.9, B)))
    assert join.state.activity_of(0, A)[0] is not None
    join.feed(_event(registry_set(3 + ttl_s + 1, B)))
    assert join.state.activity_of(0, A)[0] is None
    assert join.state.activity_of(0, B)[0] is not None


def test_a_summary_whose_ttl_passes_before_its_flush_goes_and_no_flush_brings_it_back() -> None:
    # Stream time jumps by most of the TTL between a process's last event and
    # the next flush (a worker writes summaries before each commit): a host
    # whose clock was a day ahead, a backlog read after live events. The
    # summary's last expiry entry comes due while it is only kept in memory.
    join = LocalJoin.with_defaults(
        RuleSet(()), 60_000, 4, 0, enrich_events=frozenset(PROCESS_EVENT_IDS)
    )
    ttl_s = join.state.lifetimes.activity_ttl_ms // 1000
    join.feed(_event(create(0, A)), settle=False)
    join.feed(_event(registry_set(1, A)), settle=False)  # its expiry entry: 1 s + TTL
    join.feed(_event(registry_set(1 + ttl_s * 0.05, A)), settle=False)  # no new entry
    join.feed(_event(registry_set(1 + ttl_s + 1, B)), settle=False)  # A's entry comes due
    join.settle()
    assert join.state.activity_of(0, A) == (None, 0)
    assert join.state.pending.get(0, activity.key(A)) is None
    assert join.state.activity_of(0, B)[0] is not None


def test_a_creation_alone_keeps_no_summary() -> None:
    join = LocalJoin.with_defaults(
        RuleSet(()), 60_000, 4, 0, enrich_events=frozenset(PROCESS_EVENT_IDS)
    )
    join.feed(_event(create(0, A)))
    join.state.flush_activity()
    assert join.state.activity_of(0, A) == (None, 0)
    assert not [key for key in join.state.index.keys(0) if key.startswith(expiry.ACTIVITY)]


def test_a_flush_of_some_partitions_writes_their_summaries_and_keeps_the_others() -> None:
    # Under exactly_once each partition's summaries are written in its own
    # transaction, as Faust commits it (faust_fixes 13).
    first, second = guids_in_partition(0, 4, 1)[0], guids_in_partition(3, 4, 1)[0]
    engine, tree = _engine(4)
    for process in (first, second):
        _feed(engine, tree, create(0, process), 4)
    for n, process in enumerate((first, second, first), 1):
        _feed(engine, tree, registry_set(n, process), 4)
    state = engine.state
    assert state.pending.get(0, activity.key(first)) is None, "written before any flush"
    state.flush_activity({0})
    written = state.pending.get(0, activity.key(first))
    assert written is not None and activity.decode(written)[0]["counts"] == {"13": 2}
    assert state.pending.get(3, activity.key(second)) is None
    kept, _ = state.activity_of(3, second)
    assert kept is not None and kept["counts"] == {"13": 1}
    state.flush_activity()
    assert state.pending.get(3, activity.key(second)) is not None


def test_no_summaries_with_activity_recent_zero() -> None:
    grace = GraceLimits(grace_ms=60_000, max_per_process=100, max_total=1_000)
    join = LocalJoin(
        RuleSet(()),
        Lifetimes(grace=grace, retention_ms=3600_000, ttl_ms=86400_000),
        Limits(enrich_events=frozenset(PROCESS_EVENT_IDS), activity_recent=0),
    )
    join.feed(_event(create(0, A)))
    join.feed(_event(registry_set(1, A)))
    assert join.state.activity_of(0, A) == (None, 0)
