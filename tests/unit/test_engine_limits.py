"""One Settings, one engine: the worker's and ``rules test``'s lifetimes and limits agree.

Each variable below is set to a value none of the defaults has, and the
engine's field it must reach is named here, apart from the module's code.
"""

from __future__ import annotations

import os
from dataclasses import fields, is_dataclass, replace
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

#: variable, value, (where in the engine, the value it must hold there): each value one
#: that no default has and no other variable here has, so a setting wired to the wrong
#: field cannot pass.
CHOSEN = (
    ("SYSMON_JOIN_GRACE", "7", (("lifetimes.grace.grace_ms", 7_000),)),
    ("SYSMON_PENDING_PER_PROCESS", "17", (
        ("lifetimes.grace.max_per_process", 17), ("limits.parked_per_process", 17),
    )),
    ("SYSMON_PENDING_MAX", "1717", (("lifetimes.grace.max_total", 1717),)),
    ("SYSMON_TABLE_RETENTION", "11", (("lifetimes.retention_ms", 11_000),)),
    ("SYSMON_TABLE_TTL", "613", (("lifetimes.ttl_ms", 613_000),)),
    ("SYSMON_DNS_ANSWER_TTL", "0", (("lifetimes.dns_ttl_ms", 0),)),
    ("SYSMON_ACTIVITY_TTL", "3600", (("lifetimes.activity_ttl_ms", 3_600_000),)),
    ("SYSMON_ANCESTRY_DEPTH", "9", (("limits.ancestry_depth", 9),)),
    ("SYSMON_ANCESTRY_WAIT", "13", (("limits.ancestry_wait_ms", 13_000),)),
    ("SYSMON_ALERT_WINDOW", "42", (("limits.alert_window_ms", 42_000),)),
    ("SYSMON_ENRICH_EVENTS", "10,8", (("limits.enrich_events", frozenset({8, 10})),)),
    ("SYSMON_PARTITIONS", "6", (("limits.partitions", 6),)),
    ("SYSMON_DNS_ANSWERS_PER_PROCESS", "3", (("limits.dns_answers_per_process", 3),)),
    ("SYSMON_ACTIVITY_RECENT", "4", (("limits.activity_recent", 4),)),
)  # fmt: skip
#: The engine's fields that are not settings: constants of the engine.
NOT_SETTINGS = frozenset({"limits.parked_at_most", "limits.expire_at_most"})


def _fields(value: object, where: str) -> set[str]:
    """Every leaf field of a (nested) dataclass, as dotted paths below ``where``."""
    if not is_dataclass(value):
        return {where}
    return set().union(
        *(_fields(getattr(value, f.name), f"{where}.{f.name}") for f in fields(value))
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
    for variable, _, places in CHOSEN:
        for where, expected in places:
            assert _at(built, where) == expected, variable
            assert _at(defaults, where) != expected, f"{variable}: a value the default is not"


def test_every_field_of_the_engine_is_a_setting_or_a_constant() -> None:
    settings = Settings()
    every = _fields(engine_limits.lifetimes(settings), "lifetimes") | _fields(
        engine_limits.limits(settings), "limits"
    )
    reached = {where for _, _, places in CHOSEN for where, _ in places}
    assert every == reached | NOT_SETTINGS


def test_the_tests_engine_is_the_settings_defaults() -> None:
    # LocalJoin.with_defaults restates the defaults for tests that build no Settings:
    # its own retention and TTL defaults included.
    enrich = frozenset({1, 3, 11})
    by_tests = LocalJoin.with_defaults(RuleSet(()), 5_000, 3, 60_000, enrich_events=enrich)
    settings = replace(
        Settings(), join_grace=5.0, ancestry_depth=3, alert_window=60.0, enrich_events=enrich
    )
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
    for variable in [name for name in os.environ if name.startswith("SYSMON_")]:
        monkeypatch.delenv(variable)  # the defaults, whatever the caller's environment
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
