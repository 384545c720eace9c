"""SigmaHQ's own regression data through ``rules test``, with the whole Windows corpus loaded.

Each case of ``../shared/sigma/regression_data/rules/windows/`` names a rule
and how many times it must fire on the case's events (``match_count`` in
its ``info.yml``); the events are given as ``.evtx`` and as evtx-JSON. Every
case whose rule is of a Sysmon category is run both ways; at least 97 %
must match exactly, and each miss must be listed, with why, in
docs/rules.md (section "SigmaHQ's regression data").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sysmon_faust.cli.rules_test import DEFAULT_DEPTH, DEFAULT_GRACE_S, check_file
from sysmon_faust.core.sigma import logsource, ruleset
from tests.support import REPO, SHARED, SIGMA_CORPUS, sigmahq_corpus

REGRESSION = SHARED / "sigma" / "regression_data" / "rules" / "windows"


@pytest.fixture(scope="module")
def corpus() -> ruleset.RuleSet:
    loaded: ruleset.RuleSet = sigmahq_corpus()
    return loaded


def cases() -> list[tuple[str, str, int, Path]]:
    """(case name, rule id, match_count, events file) for every test of every case."""
    found = []
    for info in sorted(REGRESSION.rglob("info.yml")):
        meta = yaml.safe_load(info.read_text(encoding="utf-8"))
        rule_id = str(meta["rule_metadata"][0]["id"])
        for test in meta["regression_tests_info"]:
            evtx = info.parent / Path(test["path"]).name
            for events in (evtx, evtx.with_suffix(".json")):
                found.append((info.parent.name, rule_id, test.get("match_count", 1), events))
    return found


def documented_misses() -> set[str]:
    """The case names listed in docs/rules.md's table of misses."""
    text = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    section = text.split("## SigmaHQ's regression data", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.MULTILINE))


def test_sigmahq_regression_cases_fire_their_rule_exactly(corpus: ruleset.RuleSet) -> None:
    loaded = {rule.rule_id for rule in corpus.rules}
    results: dict[str, bool] = {}
    for name, rule_id, expected, events in cases():
        if rule_id not in loaded:
            continue  # not a Sysmon category (checked below)
        report = check_file(events, corpus, DEFAULT_GRACE_S * 1000, DEFAULT_DEPTH,
                            lambda _: None, window_ms=0)  # fmt: skip
        exact = report.alerts[rule_id] == expected
        results[name] = results.get(name, True) and exact
    passed = sum(results.values())
    misses = {name for name, exact in results.items() if not exact}
    print(f"SigmaHQ regression: {passed}/{len(results)} cases exact; misses: {sorted(misses)}")
    assert len(results) >= 140
    assert passed / len(results) >= 0.97
    assert misses == documented_misses()


def test_the_cases_left_out_are_not_of_a_sysmon_category(corpus: ruleset.RuleSet) -> None:
    loaded = {rule.rule_id for rule in corpus.rules}
    logsources = {}  # rule id → logsource, read with PyYAML
    for path in SIGMA_CORPUS.rglob("*.yml"):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document and "id" in document:
                logsources[str(document["id"])] = document.get("logsource") or {}
    left_out = {rule_id for _, rule_id, _, _ in cases()} - loaded
    assert left_out  # Security-log rules have regression cases too
    for rule_id in left_out:
        source = logsources[rule_id]
        assert not logsource.event_ids(
            source.get("product"), source.get("category"), source.get("service")
        ), rule_id
