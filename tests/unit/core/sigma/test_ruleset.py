"""Loading Sigma rules: what loads, what is refused and why, and an index that hides nothing."""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
import yaml

from sysmon_faust.core.normalize import NormalizedEvent, normalize, normalize_document
from sysmon_faust.core.sigma import fields, logsource, ruleset
from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from tests.support import SHARED, SIGMA_CORPUS, sigmahq_corpus

REGRESSION = SHARED / "sigma" / "regression_data" / "rules" / "windows"

RULE = """\
title: {title}
id: {rule_id}
status: test
author: Someone (@someone)
references: [https://example.org/a]
tags: [attack.execution, attack.t1059.001, attack.t1047]
logsource: {{product: windows, category: {category}}}
detection:
    sel: {{{field}|endswith: '\\\\powershell.exe'}}
    condition: sel
level: high
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_folder_loads_by_category_and_refuses_with_one_line(tmp_path: Path) -> None:
    good = "0d6a1c1e-0000-4000-8000-000000000001"
    ps = RULE.format(title="ps", rule_id=good, category="process_creation", field="Image")
    write(tmp_path, "a/good.yml", ps)
    ctx_id = "0d6a1c1e-0000-4000-8000-000000000002"
    write(tmp_path, "a/ctx.yaml", RULE.format(title="ctx", rule_id=ctx_id,
                                              category="network_connection",
                                              field="ParentImage"))  # fmt: skip
    write(tmp_path, "b/dup.yml", RULE.format(title="dup", rule_id=good,
                                             category="image_load", field="Image"))  # fmt: skip
    expand = RULE.format(title="exp", rule_id="0d6a1c1e-0000-4000-8000-000000000003",
                         category="file_event", field="TargetFilename")  # fmt: skip
    write(tmp_path, "b/expand.yml",
          expand.replace("|endswith: '\\\\powershell.exe'", "|expand: '%folders%'"))  # fmt: skip
    write(tmp_path, "b/broken.yml", "title: [unclosed\n")
    write(tmp_path, "c/security.yml", RULE.format(
        title="sec", rule_id="0d6a1c1e-0000-4000-8000-000000000004", category="x",
        field="Image").replace("category: x", "service: security"))  # fmt: skip
    write(tmp_path, "c/notes.txt", "not a rule")

    rules = ruleset.load([tmp_path])

    assert [r.title for r in rules.rules] == ["ctx", "ps"]
    reasons = {Path(r.source).name: r.line() for r in rules.refused}
    assert set(reasons) == {"dup.yml", "expand.yml", "broken.yml"}
    assert "duplicate id" in reasons["dup.yml"] and good in reasons["dup.yml"]
    assert "placeholder" in reasons["expand.yml"]
    assert "0d6a1c1e-0000-4000-8000-000000000003" in reasons["expand.yml"]
    assert "YAML" in reasons["broken.yml"]
    assert rules.not_for_sysmon == 1
    assert rules.by_category() == {
        "(unknown)": (0, 1), "file_event": (0, 1), "image_load": (0, 1),
        "network_connection": (1, 0), "process_creation": (1, 0),
    }  # fmt: skip
    ps = next(r for r in rules.rules if r.title == "ps")
    assert (ps.level, ps.status, ps.attack_technique) == ("high", "test", "T1059.001")
    assert ps.author == "Someone (@someone)" and ps.references == ("https://example.org/a",)
    assert ps.event_ids == (1,) and not ps.uses_context(1)
    ctx = next(r for r in rules.rules if r.title == "ctx")
    assert ctx.uses_context(3) and rules.needs_context(3) and not rules.needs_context(1)


def test_a_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ruleset.RuleLoadError, match="nothere"):
        ruleset.load([tmp_path / "nothere"])


def _corpus() -> ruleset.RuleSet:
    corpus: ruleset.RuleSet = sigmahq_corpus()
    return corpus


def test_every_sysmon_rule_of_sigmahq_loads_or_is_refused() -> None:
    rules = _corpus()
    # Independently: the rule files' own logsource, read with PyYAML.
    expected: Counter[str] = Counter()
    for path in SIGMA_CORPUS.rglob("*.yml"):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            source = (document or {}).get("logsource") or {}
            if logsource.event_ids(source.get("product"), source.get("category"),
                                   source.get("service")):  # fmt: skip
                expected[source.get("category") or source.get("service")] += 1
    got = {
        category: loaded + refused for category, (loaded, refused) in rules.by_category().items()
    }
    assert got == dict(expected)
    assert len(rules.rules) >= 0.97 * sum(expected.values())


def _regression_events() -> list[NormalizedEvent]:
    events = []
    for path in sorted(REGRESSION.rglob("*.json")):
        for document in _json_documents(path.read_text(encoding="utf-8-sig")):
            outcome = normalize_document(document, logsource.SYSMON_EVENT_IDS)
            if isinstance(outcome, NormalizedEvent):
                events.append(outcome)
    return events


def _json_documents(text: str) -> list[dict]:
    decoder, position, documents = json.JSONDecoder(), 0, []
    while (position := len(text) - len(text[position:].lstrip())) < len(text):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents


def test_the_index_finds_what_trying_every_rule_finds() -> None:
    rules = _corpus()
    events = _regression_events()
    assert len(events) > 100
    matched = 0
    for event in events:
        view = fields.event_fields(event.event_id, {**event.fields, "event_data": event.event_data})
        low = fields.lowered(view)
        every = [r for r in rules.rules if event.event_id in r.event_ids and r.matches(view, low)]
        assert rules.match(event.event_id, view, low) == every
        # and on the view of just the fields the rules of its id test
        only = fields.event_fields(
            event.event_id, {**event.fields, "event_data": event.event_data},
            rules.fields_of(event.event_id),
        )  # fmt: skip
        assert rules.match(event.event_id, only, fields.lowered(only)) == every
        matched += bool(every)
    assert matched > 100


def test_the_index_finds_what_trying_every_rule_finds_on_generated_events() -> None:
    # make bench's events: ports, hex access masks, registry paths the regression
    # events lack; each with the ancestry of the creations before it as context
    rules = _corpus()
    creations: list[dict] = []
    matched = 0
    for generated in islice(Workload(WorkloadConfig(events=6_000, hosts=20)), 0, None, 4):
        event = normalize(generated.value, logsource.SYSMON_EVENT_IDS)
        if not isinstance(event, NormalizedEvent) or not rules.covers(event.event_id):
            continue
        row = {**event.fields, "event_data": event.event_data}
        view = fields.event_fields(event.event_id, row)
        if creations:
            view = fields.with_context(view, event.event_id, creations[-1], creations[-3:])
        low = fields.lowered(view)
        every = [r for r in rules.rules if event.event_id in r.event_ids and r.matches(view, low)]
        assert rules.match(event.event_id, view, low) == every
        matched += bool(every)
        if event.event_id == 1:
            creations.append(row)
    assert matched > 10


CONTEXT_RULES = """\
title: dll written by a shell
id: 2c7d1e0a-0000-4000-8000-000000000011
logsource: {product: windows, category: file_event}
detection:
    sel: {TargetFilename|endswith: '.dll', CommandLine|contains: 'cmd'}
    condition: sel
---
title: anything by a WMI child
id: 2c7d1e0a-0000-4000-8000-000000000012
logsource: {product: windows, category: registry_set}
detection:
    sel: {ParentImage|endswith: '\\\\wmiprvse.exe'}
    condition: sel
"""


def test_what_the_event_alone_must_hold_for_a_context_rule() -> None:
    rules = ruleset.parse(CONTEXT_RULES)
    assert not rules.refused

    def may(event_id: int, **view: str) -> bool:
        return rules.context_may_match(event_id, fields.lowered(view))

    # the file rule needs a .dll in the event itself; its command line comes from context
    assert may(11, TargetFilename="C:\\x\\a.DLL")
    assert not may(11, TargetFilename="C:\\x\\a.txt")
    # the registry rule tests context only: every event of its id may match
    assert may(13, TargetObject="HKLM\\x")
    # no rule that uses context on this id
    assert not may(1, CommandLine="cmd")


def test_an_event_the_intake_drops_matches_no_rule_whatever_its_process() -> None:
    # RuleSet.wanted decides, on the event alone, whether it goes to the join:
    # no rule may match it with any process's context added. Tried with every
    # rule, on SigmaHQ's regression events, under the processes those hold.
    rules = _corpus()
    events = _regression_events()
    processes = [e.fields | {"event_data": e.event_data} for e in events if e.event_id == 1]
    assert len(processes) > 20
    others = [e for e in events if e.event_id not in (1, 5) and rules.covers(e.event_id)]
    assert len(others) > 20
    kept = 0
    for event in others:
        view = fields.event_fields(event.event_id, {**event.fields, "event_data": event.event_data})
        wanted = rules.wanted(event.event_id, view, fields.lowered(view))
        kept += wanted
        if wanted:
            continue
        mine = [r for r in rules.rules if event.event_id in r.event_ids]
        for process in processes[::3]:
            context = fields.with_context(view, event.event_id, process, [process])
            low = fields.lowered(context)
            assert not [r.title for r in mine if r.matches(context, low)], event.event_id
    assert 0 < kept < len(others)  # it drops some and keeps some


def test_the_intake_keeps_an_event_a_context_rule_may_match() -> None:
    rules = ruleset.parse(CONTEXT_RULES)

    def wanted(event_id: int, **view: str) -> bool:
        return rules.wanted(event_id, view, fields.lowered(view))

    # no rule matches the event alone, but the file rule may with its process
    assert wanted(11, EventID="11", TargetFilename="C:\\x\\a.dll")
    assert not wanted(11, EventID="11", TargetFilename="C:\\x\\a.txt")
    assert wanted(13, EventID="13", TargetObject="HKLM\\x")
    assert not wanted(12, EventID="12", TargetObject="HKLM\\x")  # no rule on 12


def test_a_regular_expression_python_cannot_compile_refuses_its_rule_alone() -> None:
    # pySigma checks expressions with RE2, which takes \pL; Python's re does not
    text = """\
title: letters
id: 5e1f0c2a-0000-4000-8000-0000000000aa
logsource: {product: windows, category: process_creation}
detection:
    selection: {CommandLine|re: '\\pLabc'}
    condition: selection
---
title: fine
id: 5e1f0c2a-0000-4000-8000-0000000000ab
logsource: {product: windows, category: process_creation}
detection:
    selection: {CommandLine|re: 'abc'}
    condition: selection
"""
    rules = ruleset.parse(text)
    assert [rule.title for rule in rules.rules] == ["fine"]
    assert [refusal.line() for refusal in rules.refused] == [
        "<text>: rule 5e1f0c2a-0000-4000-8000-0000000000aa: bad escape \\p at position 0"
    ]
