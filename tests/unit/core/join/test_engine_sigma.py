"""Sigma rules in the join engine, event by event: what fires when, with which context.

Rules on the event alone fire as it arrives, joined or not; rules that use
process context (creation fields, ``Ancestor*``) wait for the process's
creation and are not tried when it never comes. Every Sysmon event type
is matched, not only connects.
"""

from __future__ import annotations

import textwrap
from typing import Any

from sysmon_faust.core.join.engine import ALERTS, Output
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.sigma import logsource, ruleset
from tests.events import guid, winlogbeat
from tests.timeline import CMD, POWERSHELL, WMIPRVSE, A, at, connect, create

EXPLORER = "C:\\Windows\\explorer.exe"


def rule(name: str, category: str, detection: str) -> str:
    number = sum(map(ord, name)) % 10**12
    return textwrap.dedent(
        f"""\
        title: {name}
        id: 00000000-0000-4000-8000-{number:012d}
        author: test
        tags: [attack.t1105]
        logsource: {{product: windows, category: {category}}}
        detection:
        """
    ) + textwrap.indent(textwrap.dedent(detection), "    ")


RULES = "\n---\n".join(
    [
        rule("dropped by cmd, by command line", "file_event",
             "sel: {TargetFilename|endswith: '.dll', CommandLine|contains: '/run'}\n"
             "condition: sel"),
        rule("dll dropped", "file_event",
             "sel: {TargetFilename|endswith: '.dll'}\ncondition: sel"),
        rule("connect under WMI, by parent", "network_connection",
             "sel: {ParentImage|endswith: '\\wmiprvse.exe'}\ncondition: sel"),
        rule("connect under WMI, by ancestor", "network_connection",
             "sel: {AncestorImage|endswith: '\\wmiprvse.exe'}\ncondition: sel"),
        rule("connect to 8080", "network_connection",
             "sel: {DestinationPort: 8080}\ncondition: sel"),
        rule("creation two levels under WMI", "process_creation",
             "sel: {AncestorImage|endswith: '\\wmiprvse.exe'}\n"
             "filter: {ParentImage|endswith: '\\wmiprvse.exe'}\ncondition: sel and not filter"),
        rule("driver loaded from temp", "driver_load",
             "sel: {ImageLoaded|contains: '\\temp\\'}\ncondition: sel"),
    ]
)  # fmt: skip


def sysmon(raw: bytes) -> NormalizedEvent:
    outcome = normalize(raw, logsource.SYSMON_EVENT_IDS)
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def file_created(seconds: float, process: str, target: str) -> bytes:
    return winlogbeat(11, at(seconds), process, Image=CMD, TargetFilename=target)


def driver_loaded(seconds: float, image: str) -> bytes:
    raw = winlogbeat(6, at(seconds), "", ImageLoaded=image, Hashes="SHA1=00")
    return raw.replace(b'"ProcessGuid": "", ', b"")


def alerts(raws: list[bytes], grace_s: int = 60) -> list[tuple[Any, str, dict[str, Any]]]:
    """(index of the event that made it, or "end"; rule title; the alert record)."""
    rules = ruleset.parse(RULES)
    assert not rules.refused and len(rules) == 7
    titles = {r.rule_id: r.title for r in rules.rules}
    join = LocalJoin.with_defaults(rules, grace_s * 1000, depth=4, window_ms=0)
    steps: list[tuple[Any, list[Output]]] = [
        (index, join.feed(sysmon(raw))) for index, raw in enumerate(raws)
    ]
    steps.append(("end", join.finish()))
    return [
        (step, titles[o.row["rule_id"]], o.row)
        for step, made in steps
        for o in made
        if o.topic == ALERTS
    ]


def test_a_rule_on_the_event_alone_fires_as_it_arrives_without_its_process() -> None:
    made = alerts([file_created(1, A, "C:\\Temp\\x.dll")])
    assert [(step, title) for step, title, _ in made] == [(0, "dll dropped")]
    alert = made[0][2]
    assert alert["event"]["process"] is None and alert["event_id"] == 11
    assert alert["logsource_category"] == "file_event"
    assert alert["event"]["event_data"]["TargetFilename"] == "C:\\Temp\\x.dll"


def test_a_context_rule_waits_for_the_creation_and_carries_the_process() -> None:
    made = alerts([file_created(1, A, "C:\\Temp\\x.dll"), create(2, A)])
    assert [(step, title) for step, title, _ in made] == [
        (0, "dll dropped"),
        (1, "dropped by cmd, by command line"),
    ]
    context = made[1][2]["event"]
    assert context["process"]["process_command_line"] == f"{CMD} /run"
    assert context["process_guid"] == A


def test_a_context_rule_is_not_tried_when_the_process_never_comes() -> None:
    rules = ruleset.parse(RULES)
    join = LocalJoin.with_defaults(rules, 60_000, depth=4, window_ms=0)
    join.feed(sysmon(file_created(1, A, "C:\\Temp\\x.dll")))
    join.finish()
    assert join.engine.stats.context_rules_skipped == 1
    assert sum(join.engine.stats.alerts_by_rule.values()) == 1  # the rule on the event alone


def test_with_the_process_known_every_rule_fires_at_once() -> None:
    made = alerts([create(0, A), file_created(1, A, "C:\\Temp\\x.dll")])
    assert sorted((step, title) for step, title, _ in made) == [
        (1, "dll dropped"),
        (1, "dropped by cmd, by command line"),
    ]


def test_helk_parent_and_our_ancestor_rules_on_connects() -> None:
    child = guid(0x21)
    made = alerts(
        [
            create(0, A, image=CMD, parent=guid(0x20), parent_image=WMIPRVSE),
            create(1, child, image=POWERSHELL, parent=A, parent_image=CMD),
            connect(2, A, 443),
            connect(3, child, 443, image=POWERSHELL),
        ]
    )
    fired = [(step, title) for step, title, _ in made]
    assert (2, "connect under WMI, by parent") in fired
    assert (2, "connect under WMI, by ancestor") in fired
    # powershell's parent is cmd: only the ancestry says WMI
    assert (3, "connect under WMI, by ancestor") in fired
    assert (3, "connect under WMI, by parent") not in fired
    # and the creation of powershell, two levels under WmiPrvSE
    assert (1, "creation two levels under WMI") in fired
    joined = next(a for s, t, a in made if s == 3)["event"]
    assert [hop["process_path"] for hop in joined["process_ancestry"]] == [CMD, WMIPRVSE]


def test_a_connect_read_before_its_creation_alerts_once_per_rule() -> None:
    made = alerts([connect(1, A, 8080), create(2, A, parent_image=WMIPRVSE)])
    # the rule on the connect alone at once; the context rules when it joins
    assert [(step, title) for step, title, _ in made] == [
        (0, "connect to 8080"),
        (1, "connect under WMI, by parent"),
        (1, "connect under WMI, by ancestor"),
    ]


def test_an_event_without_a_process_alerts_on_its_own() -> None:
    made = alerts([driver_loaded(1, "C:\\Users\\x\\AppData\\Local\\Temp\\evil.sys")])
    assert [(step, title) for step, title, _ in made] == [(0, "driver loaded from temp")]
    assert made[0][2]["event"]["process_guid"] is None
    assert made[0][2]["alert_group"]["state"] == "closed"
