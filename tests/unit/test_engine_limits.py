"""One Settings, one engine: the worker's and ``rules test``'s lifetimes and limits agree.

Each variable below is set to a value none of the defaults has, and the
engine's field it must reach is named here, apart from the module's code.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sysmon_faust import engine_limits
from sysmon_faust.cli.rules_test import check_file, parse_options
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.normalize import PROCESS_EVENT_IDS
from sysmon_faust.core.sigma.ruleset import RuleSet
from sysmon_faust.settings import Settings
from tests.events import guid, winlogbeat
from tests.timeline import at, connect, create

#: variable, value, (where in the engine, the value it must hold there)
CHOSEN = (
    ("SYSMON_JOIN_GRACE", "7", ("lifetimes.grace.grace_ms", 7_000)),
    ("SYSMON_PENDING_PER_PROCESS", "17", ("lifetimes.grace.max_per_process", 17)),
    ("SYSMON_PENDING_MAX", "1717", ("lifetimes.grace.max_total", 1717)),
    ("SYSMON_TABLE_RETENTION", "11", ("lifetimes.retention_ms", 11_000)),
    ("SYSMON_TABLE_TTL", "613", ("lifetimes.ttl_ms", 613_000)),
    ("SYSMON_DNS_ANSWER_TTL", "0", ("lifetimes.dns_ttl_ms", 0)),
    ("SYSMON_ACTIVITY_TTL", "3600", ("lifetimes.activity_ttl_ms", 3_600_000)),
    ("SYSMON_ANCESTRY_DEPTH", "9", ("limits.ancestry_depth", 9)),
    ("SYSMON_ANCESTRY_WAIT", "2", ("limits.ancestry_wait_ms", 2_000)),
    ("SYSMON_ALERT_WINDOW", "42", ("limits.alert_window_ms", 42_000)),
    ("SYSMON_ENRICH_EVENTS", "10,8", ("limits.enrich_events", frozenset({8, 10}))),
    ("SYSMON_PARTITIONS", "6", ("limits.partitions", 6)),
    ("SYSMON_DNS_ANSWERS_PER_PROCESS", "3", ("limits.dns_answers_per_process", 3)),
    ("SYSMON_ACTIVITY_RECENT", "2", ("limits.activity_recent", 2)),
)


def _at(built: dict[str, object], where: str) -> object:
    value = built[where.split(".")[0]]
    for name in where.split(".")[1:]:
        value = getattr(value, name)
    return value


def test_every_setting_reaches_the_engine() -> None:
    settings = Settings.from_env({variable: raw for variable, raw, _ in CHOSEN})
    built = {
        "lifetimes": engine_limits.lifetimes(settings),
        "limits": engine_limits.limits(settings),
    }
    defaults = {
        "lifetimes": engine_limits.lifetimes(Settings()),
        "limits": engine_limits.limits(Settings()),
    }
    for variable, _, (where, expected) in CHOSEN:
        assert _at(built, where) == expected, variable
        assert _at(defaults, where) != expected, f"{variable}: pick a value the default is not"


def test_the_tests_engine_is_the_settings_defaults() -> None:
    # LocalJoin.with_defaults restates the defaults for tests that build no Settings.
    enrich = frozenset({1, 3, 11})
    by_tests = LocalJoin.with_defaults(
        RuleSet(()), 5_000, 3, 60_000, retention_ms=120_000, ttl_ms=86_400_000,
        enrich_events=enrich,
    )  # fmt: skip
    settings = replace(
        Settings(), join_grace=5.0, ancestry_depth=3, alert_window=60.0,
        table_retention=120.0, table_ttl=86_400.0, enrich_events=enrich,
    )  # fmt: skip
    by_settings = LocalJoin(
        RuleSet(()), engine_limits.lifetimes(settings), engine_limits.limits(settings)
    )
    assert by_tests.state.lifetimes == by_settings.state.lifetimes
    assert by_tests.engine.limits == by_settings.engine.limits


def test_one_file_is_one_partition_that_never_waits_for_an_ancestor() -> None:
    settings = Settings.from_env({"SYSMON_PARTITIONS": "6", "SYSMON_ANCESTRY_WAIT": "3"})
    join = LocalJoin(RuleSet(()), engine_limits.lifetimes(settings), engine_limits.limits(settings))
    assert (join.engine.limits.partitions, join.engine.limits.ancestry_wait_ms) == (1, 0)


def _names_of_connects(path: Path, settings: Settings) -> list[object]:
    names: list[object] = []
    check_file(
        path, RuleSet(()), 0, 4, lambda _: None, window_ms=0,
        enrich_events=frozenset(PROCESS_EVENT_IDS),
        on_enriched=lambda row: names.append(row.get("dst_query_name"))
        if row["event_id"] == 3 else None,
        settings=settings,
    )  # fmt: skip
    return names


def test_rules_test_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = guid(1)
    answer = winlogbeat(
        22, at(1), process, QueryName="updates.example.com", QueryStatus="0",
        QueryResults="::ffff:10.0.10.106;", Image="C:\\Program Files\\App\\app.exe",
    )  # fmt: skip
    recording = tmp_path / "dns.jsonl"
    recording.write_bytes(b"\n".join([create(0, process), answer, connect(2, process, 443)]))

    default = parse_options([str(recording)], "sysmon-faust rules")
    assert _names_of_connects(recording, default.settings) == ["updates.example.com"]

    monkeypatch.setenv("SYSMON_DNS_ANSWER_TTL", "0")
    no_names = parse_options([str(recording)], "sysmon-faust rules")
    assert _names_of_connects(recording, no_names.settings) == [None]
