"""The rule language (sysmon_faust.core.rules) and the rules shipped with the package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sysmon_faust.core.join.semantics import Row
from sysmon_faust.core.records import EnrichedNetworkConnect
from sysmon_faust.core.rules import (
    DEFAULT_RULES_PATH,
    Rule,
    RuleError,
    load_rules,
    matching_rules,
    parse_rules,
)

SYSTEM32 = "C:\\Windows\\System32\\"
WMIPRVSE = SYSTEM32 + "wbem\\WmiPrvSE.exe"
SERVICES = SYSTEM32 + "services.exe"
SVCHOST = SYSTEM32 + "svchost.exe"
CMD = SYSTEM32 + "cmd.exe"
POWERSHELL = SYSTEM32 + "WindowsPowerShell\\v1.0\\powershell.exe"
EXPLORER = "C:\\Windows\\explorer.exe"
OFFICE = "C:\\Program Files\\Microsoft Office\\root\\Office16\\"


def event(
    process_path: str | None = "C:\\Users\\Public\\beacon.exe",
    ancestry: list[str | None] | None = None,
    **fields: Any,
) -> Row:
    """A sysmon-join row; ``ancestry`` lists the ancestors' paths, nearest first."""
    record = EnrichedNetworkConnect(
        event_date_creation="2019-03-19T15:28:13.000Z",
        process_guid="{905cc552-43ac-5c91-0000-0010b44bb703}",
        process_path=process_path,
        process_ancestry=None if ancestry is None else [ancestor(path) for path in ancestry],
        **fields,
    )
    return dict(record.as_dict())


def ancestor(path: str | None) -> Row:
    return {
        "process_guid": f"{{905cc552-0000-0000-0000-{abs(hash(path)) % 10**12:012d}}}",
        "process_path": path,
        "process_command_line": None if path is None else f'"{path}"',
    }


# --- the default rules -------------------------------------------------------

WMI = "sysmon-wmi-child-network-connect"
REMOTING = "sysmon-psremoting-network-connect"
SERVICE_SHELL = "sysmon-service-shell-network-connect"
OFFICE_CHILD = "sysmon-office-descendant-network-connect"
SCRIPT_CHILD = "sysmon-script-host-descendant-network-connect"
MSBUILD = "sysmon-msbuild-network-connect"
PROXY = "sysmon-signed-binary-proxy-network-connect"

DEFAULTS = load_rules()


def test_default_rules_load_from_the_package() -> None:
    assert DEFAULT_RULES_PATH.name == "default_rules.yaml"
    assert load_rules(DEFAULT_RULES_PATH) is not DEFAULTS
    assert [(r.rule_id, r.attack_technique, r.severity) for r in DEFAULTS] == [
        (WMI, "T1047", "high"),
        (REMOTING, "T1021.006", "high"),
        (SERVICE_SHELL, "T1569.002", "high"),
        (OFFICE_CHILD, "T1204.002", "high"),
        (SCRIPT_CHILD, "T1059", "high"),
        (MSBUILD, "T1127.001", "high"),
        (PROXY, "T1218", "medium"),
    ]
    assert all(rule.rule_name for rule in DEFAULTS)


@pytest.mark.parametrize(
    ("process_path", "ancestry", "fired"),
    [
        # WMI: parent, deeper, any case, bare name; look-alikes do not fire.
        (POWERSHELL, [WMIPRVSE], {WMI}),
        ("C:\\Users\\Public\\beacon.exe", [CMD, POWERSHELL, WMIPRVSE], {WMI}),
        (POWERSHELL, ["c:\\windows\\system32\\wbem\\wmiprvse.exe"], {WMI}),
        (POWERSHELL, ["C:\\WINDOWS\\SYSWOW64\\WBEM\\WMIPRVSE.EXE"], {WMI}),
        (POWERSHELL, ["WmiPrvSE.exe"], {WMI}),
        (POWERSHELL, ["C:\\tools\\WmiPrvSE.exe.bak"], set()),
        (POWERSHELL, ["C:\\tools\\NotWmiPrvSE.exe"], set()),
        (POWERSHELL, ["NotWmiPrvSE.exe"], set()),
        (POWERSHELL, [None, EXPLORER], set()),
        (POWERSHELL, [], set()),
        (POWERSHELL, None, set()),
        (WMIPRVSE, [SVCHOST], set()),  # the provider host itself is not its own ancestor
        # The whole WMI chain seen up to services.exe: through svchost.exe, so
        # not the service-shell rule (WMI's own rule has it).
        (POWERSHELL, [WMIPRVSE, SVCHOST, SERVICES], {WMI}),
        (CMD, [SVCHOST, SERVICES], set()),  # a scheduled task's shell
        # PowerShell remoting.
        (CMD, [SYSTEM32 + "wsmprovhost.exe"], {REMOTING}),
        ("C:\\Users\\Public\\x.exe", [POWERSHELL, "WSMPROVHOST.EXE"], {REMOTING}),
        (CMD, ["C:\\tools\\mywsmprovhost.exe"], set()),
        # Service shells: a shell under services.exe, not an ordinary service.
        (CMD, [SERVICES], {SERVICE_SHELL}),
        (POWERSHELL, [SYSTEM32 + "PSEXESVC.exe", SERVICES], {SERVICE_SHELL}),
        ("pwsh.exe", ["services.exe"], {SERVICE_SHELL}),
        ("C:\\Program Files\\PowerShell\\7\\PWSH.EXE", [CMD, SERVICES], {SERVICE_SHELL}),
        (SVCHOST, [SERVICES], set()),
        (SYSTEM32 + "spoolsv.exe", [SERVICES], set()),
        (CMD, [EXPLORER], set()),
        (CMD, ["C:\\tools\\notservices.exe"], set()),
        ("C:\\tools\\mycmd.exe", [SERVICES], set()),
        # Office descendants; Office itself connecting is normal.
        (POWERSHELL, [CMD, OFFICE + "WINWORD.EXE"], {OFFICE_CHILD}),
        ("C:\\Users\\Public\\a.exe", [OFFICE + "excel.exe"], {OFFICE_CHILD}),
        (CMD, [OFFICE + "POWERPNT.EXE", EXPLORER], {OFFICE_CHILD}),
        ("C:\\Program Files\\Google\\Chrome\\chrome.exe", [OFFICE + "OUTLOOK.EXE"], {OFFICE_CHILD}),
        (OFFICE + "WINWORD.EXE", [EXPLORER], set()),
        # Script hosts.
        (POWERSHELL, [SYSTEM32 + "mshta.exe"], {SCRIPT_CHILD}),
        (SYSTEM32 + "mshta.exe", [SYSTEM32 + "cscript.exe"], {SCRIPT_CHILD}),
        (CMD, ["WScript.exe", EXPLORER], {SCRIPT_CHILD}),
        (SYSTEM32 + "wscript.exe", [EXPLORER], set()),
        # MSBuild.
        ("C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\MSBuild.exe", [CMD], {MSBUILD}),
        ("msbuild.exe", None, {MSBUILD}),
        ("C:\\tools\\notmsbuild.exe", None, set()),
        # Signed binary proxies.
        ("C:\\Windows\\Microsoft.NET\\Framework\\v4.0.30319\\InstallUtil.exe", [CMD], {PROXY}),
        (SYSTEM32 + "regsvr32.exe", [EXPLORER], {PROXY}),
        (SYSTEM32 + "rundll32.exe", None, {PROXY}),
        ("RUNDLL32.EXE", None, {PROXY}),
        (SYSTEM32 + "rundll32.exe", [WMIPRVSE], {PROXY, WMI}),
        # Ordinary traffic.
        ("C:\\Program Files\\Mozilla Firefox\\firefox.exe", [EXPLORER], set()),
        (None, None, set()),
        (None, [None], set()),
    ],
)
def test_default_rules(
    process_path: str | None, ancestry: list[str | None] | None, fired: set[str]
) -> None:
    rules = matching_rules(event(process_path, ancestry), DEFAULTS)
    assert {rule.rule_id for rule in rules} == fired


def test_matching_rules_keeps_the_order_of_the_rules() -> None:
    fired = matching_rules(event(SYSTEM32 + "rundll32.exe", [WMIPRVSE]), DEFAULTS)
    assert [rule.rule_id for rule in fired] == [WMI, PROXY]
    assert matching_rules(event(), []) == []


# --- operators and combinators -----------------------------------------------


def compiled(when: object) -> Rule:
    (rule,) = parse_rules({"rules": [rule_spec(when=when)]}, "test.yaml")
    return rule


def rule_spec(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "id": "test-rule",
        "name": "A rule under test",
        "technique": "T1047",
        "severity": "high",
        "when": {"field": "process_path", "ends_with": "\\cmd.exe"},
    }
    spec.update(overrides)
    return spec


def field_test(field: str, operator: str, value: object, **options: object) -> dict[str, object]:
    return {"field": field, operator: value, **options}


PATH = "C:\\Windows\\System32\\cmd.exe"


@pytest.mark.parametrize(
    ("when", "fields", "fires"),
    [
        # equals: text ignores case unless asked; lists; ints and booleans by type.
        (field_test("process_path", "equals", PATH.upper()), {}, True),
        (field_test("process_path", "equals", PATH.upper(), case_sensitive=True), {}, False),
        (field_test("process_path", "equals", PATH, case_sensitive=True), {}, True),
        (field_test("process_path", "equals", ["a.exe", PATH.lower()]), {}, True),
        (field_test("process_path", "equals", ["a.exe", "b.exe"]), {}, False),
        (field_test("process_path", "equals", "cmd.exe"), {}, False),
        (field_test("dst_port", "equals", 443), {"dst_port": 443}, True),
        (field_test("dst_port", "equals", [80, 443]), {"dst_port": 443}, True),
        (field_test("dst_port", "equals", 443), {"dst_port": 4443}, False),
        (field_test("dst_port", "equals", 443), {"dst_port": None}, False),
        (field_test("dst_port", "equals", 1), {"dst_port": True}, False),
        (field_test("dst_port", "equals", 443), {"dst_port": "443"}, False),
        (
            field_test("network_connection_initiated", "equals", True),
            {"network_connection_initiated": True},
            True,
        ),
        (
            field_test("network_connection_initiated", "equals", True),
            {"network_connection_initiated": 1},
            False,
        ),
        (
            field_test("network_connection_initiated", "equals", False),
            {"network_connection_initiated": None},
            False,
        ),
        (field_test("user_session_id", "equals", 0), {"user_session_id": 0}, True),
        # ends_with / starts_with / contains.
        (field_test("process_path", "ends_with", "\\CMD.EXE"), {}, True),
        (field_test("process_path", "ends_with", "\\CMD.EXE", case_sensitive=True), {}, False),
        (
            field_test("process_path", "ends_with", ["\\x.exe", "\\cmd.exe"], case_sensitive=True),
            {},
            True,
        ),
        (field_test("process_path", "ends_with", "cmd"), {}, False),
        (field_test("process_path", "starts_with", "c:\\windows\\"), {}, True),
        (
            field_test("process_path", "starts_with", "c:\\windows\\", case_sensitive=True),
            {},
            False,
        ),
        (field_test("process_path", "starts_with", ["D:\\", "C:\\Win"]), {}, True),
        (field_test("process_path", "contains", "SYSTEM32"), {}, True),
        (field_test("process_path", "contains", "SYSTEM32", case_sensitive=True), {}, False),
        (field_test("process_path", "contains", ["temp", "system32"]), {}, True),
        (field_test("process_path", "contains", ["temp", "appdata"]), {}, False),
        # regex: re.search, ignoring case by default.
        (field_test("process_path", "regex", r"\\cmd\.exe$"), {}, True),
        (field_test("process_path", "regex", r"\\CMD\.EXE$"), {}, True),
        (field_test("process_path", "regex", r"\\CMD\.EXE$", case_sensitive=True), {}, False),
        (field_test("process_path", "regex", r"^cmd"), {}, False),
        (field_test("process_path", "regex", [r"^D:", r"system\d\d"]), {}, True),
        # cidr: v4, v6, mapped, non-addresses.
        (field_test("dst_ip_addr", "cidr", "10.0.0.0/8"), {"dst_ip_addr": "10.1.2.3"}, True),
        (field_test("dst_ip_addr", "cidr", "10.0.0.0/8"), {"dst_ip_addr": "11.1.2.3"}, False),
        (field_test("dst_ip_addr", "cidr", "10.1.2.3/8"), {"dst_ip_addr": "10.200.0.1"}, True),
        (
            field_test("dst_ip_addr", "cidr", ["192.168.0.0/16", "10.0.0.0/8"]),
            {"dst_ip_addr": "10.0.0.1"},
            True,
        ),
        (field_test("dst_ip_addr", "cidr", "203.0.113.7"), {"dst_ip_addr": "203.0.113.7"}, True),
        (
            field_test("dst_ip_addr", "cidr", "fe80::/10"),
            {"dst_ip_addr": "fe80::1c3a:2b4f:9d1e:7a10"},
            True,
        ),
        (field_test("dst_ip_addr", "cidr", "fe80::/10"), {"dst_ip_addr": "fe80::1%12"}, True),
        (field_test("dst_ip_addr", "cidr", "FE80::/10"), {"dst_ip_addr": "2001:db8::1"}, False),
        (field_test("dst_ip_addr", "cidr", "::/0"), {"dst_ip_addr": "10.1.2.3"}, False),
        (field_test("dst_ip_addr", "cidr", "::/64"), {"dst_ip_addr": "0.0.0.1"}, False),
        (field_test("dst_ip_addr", "cidr", "0.0.0.0/0"), {"dst_ip_addr": "::1"}, False),
        (field_test("dst_ip_addr", "cidr", "10.0.0.0/8"), {"dst_ip_addr": "::ffff:10.1.2.3"}, True),
        (
            field_test("dst_ip_addr", "cidr", "::ffff:0:0/96"),
            {"dst_ip_addr": "::ffff:10.1.2.3"},
            True,
        ),
        (field_test("dst_ip_addr", "cidr", "0.0.0.0/0"), {"dst_ip_addr": "localhost"}, False),
        (field_test("dst_ip_addr", "cidr", "0.0.0.0/0"), {"dst_ip_addr": ""}, False),
        (field_test("dst_ip_addr", "cidr", "0.0.0.0/0"), {"dst_ip_addr": None}, False),
        (
            field_test("dst_host_name", "cidr", "0.0.0.0/0"),
            {"dst_host_name": "dc01.contoso.local"},
            False,
        ),
        # None (or missing) never matches, so its negation holds.
        (field_test("dst_host_name", "equals", ""), {"dst_host_name": None}, False),
        (field_test("dst_host_name", "contains", ""), {"dst_host_name": None}, False),
        (field_test("dst_host_name", "regex", ".*"), {"dst_host_name": None}, False),
        (field_test("dst_host_name", "regex", ".*"), {"dst_host_name": ""}, True),
        ({"not": field_test("dst_host_name", "regex", ".*")}, {"dst_host_name": None}, True),
        ({"not": field_test("process_path", "ends_with", "\\cmd.exe")}, {}, False),
        # all / any / not.
        (
            {
                "all": [
                    field_test("process_path", "ends_with", "\\cmd.exe"),
                    field_test("dst_port", "equals", 443),
                ]
            },
            {"dst_port": 443},
            True,
        ),
        (
            {
                "all": [
                    field_test("process_path", "ends_with", "\\cmd.exe"),
                    field_test("dst_port", "equals", 443),
                ]
            },
            {"dst_port": 80},
            False,
        ),
        (
            {
                "any": [
                    field_test("process_path", "ends_with", "\\x.exe"),
                    field_test("dst_port", "equals", 443),
                ]
            },
            {"dst_port": 443},
            True,
        ),
        (
            {
                "any": [
                    field_test("process_path", "ends_with", "\\x.exe"),
                    field_test("dst_port", "equals", 443),
                ]
            },
            {"dst_port": 80},
            False,
        ),
        ({"not": {"not": field_test("dst_port", "equals", 443)}}, {"dst_port": 443}, True),
    ],
)
def test_operators(when: object, fields: dict[str, Any], fires: bool) -> None:
    row = event(**{"process_path": PATH, **fields})
    assert compiled(when).matches(row) is fires


@pytest.mark.parametrize(
    ("when", "ancestry", "fires"),
    [
        (field_test("process_path", "ends_with", "\\explorer.exe"), [CMD, EXPLORER], True),
        (field_test("process_path", "ends_with", "\\explorer.exe"), [CMD], False),
        (field_test("process_path", "ends_with", "\\explorer.exe"), [], False),
        (field_test("process_path", "ends_with", "\\explorer.exe"), None, False),
        (field_test("process_command_line", "contains", "CMD.EXE"), [CMD], True),
        (field_test("process_guid", "starts_with", "{905cc552-"), [CMD], True),
        # The condition holds for one ancestor: not "two ancestors each match a part".
        (
            {
                "all": [
                    field_test("process_path", "ends_with", "\\cmd.exe"),
                    field_test("process_path", "ends_with", "\\explorer.exe"),
                ]
            },
            [CMD, EXPLORER],
            False,
        ),
        # `not` inside: some ancestor is not cmd.exe.
        ({"not": field_test("process_path", "ends_with", "\\cmd.exe")}, [CMD, EXPLORER], True),
        ({"not": field_test("process_path", "ends_with", "\\cmd.exe")}, [CMD], False),
        ({"not": field_test("process_path", "ends_with", "\\cmd.exe")}, [], False),
        # An ancestor whose path is unknown matches nothing, so its `not` holds.
        ({"not": field_test("process_path", "ends_with", "\\cmd.exe")}, [None], True),
    ],
)
def test_any_ancestor(when: object, ancestry: list[str | None] | None, fires: bool) -> None:
    rule = compiled({"any_ancestor": when})
    assert rule.matches(event(PATH, ancestry)) is fires


def test_not_any_ancestor_holds_without_ancestry() -> None:
    rule = compiled(
        {"not": {"any_ancestor": field_test("process_path", "ends_with", "\\explorer.exe")}}
    )
    assert rule.matches(event(PATH, None))
    assert rule.matches(event(PATH, [CMD]))
    assert not rule.matches(event(PATH, [CMD, EXPLORER]))


def test_a_missing_field_never_matches() -> None:
    rule = compiled(field_test("dst_host_name", "ends_with", ".local"))
    assert not rule.matches({"process_path": PATH})
    assert not compiled({"any_ancestor": field_test("process_path", "contains", "x")}).matches({})


def test_rule_carries_its_description() -> None:
    (rule,) = parse_rules({"rules": [rule_spec(description="why")]}, "test.yaml")
    assert rule.description == "why"
    assert compiled({"field": "process_path", "equals": "x"}).description is None


# --- validation --------------------------------------------------------------


def without(key: str) -> dict[str, object]:
    spec = rule_spec()
    del spec[key]
    return spec


def one_rule(**overrides: object) -> dict[str, object]:
    return {"rules": [rule_spec(**overrides)]}


def with_when(condition: object) -> dict[str, object]:
    return one_rule(when=condition)


PATH_TEST = {"field": "process_path", "ends_with": "\\cmd.exe"}


INVALID: list[tuple[object, list[str]]] = [
    # The document's shape.
    (None, ["top level", "expected a mapping with a 'rules' list", "null"]),
    ([rule_spec()], ["top level", "a list"]),
    ({}, ["rules: missing"]),
    ({"rules": None}, ["rules: expected a list of rules"]),
    ({"rules": rule_spec()}, ["rules: expected a list of rules", "a mapping"]),
    ({"rules": [], "extra": 1}, ["extra: unknown key", "allowed: rules, version"]),
    ({"version": 2, "rules": []}, ["version: unsupported version 2", "allowed: 1"]),
    ({"version": "1", "rules": []}, ["version: unsupported version '1'"]),
    ({"version": True, "rules": []}, ["version: unsupported version True"]),
    ({"rules": ["just text"]}, ["rule #1: expected a rule (a mapping)", "'just text'"]),
    # Required keys and their values.
    ({"rules": [without("id")]}, ["rule #1: id: missing", "id, name, technique"]),
    ({"rules": [without("name")]}, ["rule 'test-rule': name: missing"]),
    ({"rules": [without("technique")]}, ["rule 'test-rule': technique: missing"]),
    ({"rules": [without("severity")]}, ["rule 'test-rule': severity: missing"]),
    ({"rules": [without("when")]}, ["rule 'test-rule': when: missing"]),
    (one_rule(id="Bad ID"), ["rule #1: id: 'Bad ID' is not valid", "lower-case"]),
    (one_rule(id=42), ["rule #1: id: expected non-empty text, got integer 42"]),
    (one_rule(name=""), ["rule 'test-rule': name: expected non-empty text"]),
    (one_rule(name=["a"]), ["rule 'test-rule': name: expected non-empty text, got a list"]),
    (one_rule(technique="1047"), ["technique: '1047' is not valid", "T1047 or T1021.006"]),
    (one_rule(technique="T1021.6"), ["rule 'test-rule': technique: 'T1021.6' is not valid"]),
    (one_rule(severity="High"), ["severity: 'High' is not a severity", "low, medium, high"]),
    (one_rule(severity="severe"), ["rule 'test-rule': severity: 'severe'", "critical"]),
    (one_rule(description=3), ["rule 'test-rule': description: expected text"]),
    (one_rule(tags=["x"]), ["rule 'test-rule': tags: unknown key", "allowed: id, name"]),
    (
        {"rules": [rule_spec(), rule_spec(id="other"), rule_spec()]},
        ["rule 'test-rule': id: duplicate id: rule #1 has it too"],
    ),
    (
        {"rules": [rule_spec(id="first"), rule_spec(id="Bad")]},
        ["rule #2: id: 'Bad' is not valid"],
    ),
    # Conditions.
    (
        with_when(None),
        ["rule 'test-rule': when: expected a condition (a mapping), got nothing"],
    ),
    (with_when({}), ["when: expected a condition"]),
    (with_when("process_path"), ["when: expected a condition", "text 'process_path'"]),
    (with_when({"either": [PATH_TEST]}), ["when: unexpected keys: either", "all: [...]"]),
    (with_when({"all": [PATH_TEST], "any": [PATH_TEST]}), ["when: unexpected keys: all, any"]),
    (with_when({"all": []}), ["when.all: expected a non-empty list of conditions"]),
    (with_when({"any": PATH_TEST}), ["when.any: expected a non-empty list", "a mapping"]),
    (with_when({"all": [PATH_TEST, "x"]}), ["when.all[1]: expected a condition"]),
    (
        with_when({"not": [PATH_TEST]}),
        ["when.not: expected a condition (a mapping), got a list"],
    ),
    (with_when({"not": None}), ["when.not: expected a condition"]),
    (with_when({"any_ancestor": None}), ["when.any_ancestor: expected a condition"]),
    # Field tests.
    (
        with_when({"field": "image", "ends_with": "x"}),
        ["when.field: unknown field 'image'", "allowed: event_date_creation, host_name"],
    ),
    (with_when({"field": None, "ends_with": "x"}), ["when.field: unknown field None"]),
    (
        with_when({"field": "process_ancestry", "contains": "x"}),
        ["when.field: process_ancestry is tested with any_ancestor"],
    ),
    (with_when({"ends_with": "x"}), ["when.field: missing"]),
    (with_when({"case_sensitive": True}), ["when.field: missing"]),
    (
        with_when({"field": "process_path", "ends_with": "x", "regex": "y"}),
        [
            "when: a field test has exactly one operator, got ends_with, regex",
            "allowed: equals",
        ],
    ),
    (
        with_when({"field": "process_path"}),
        ["when: a field test has exactly one operator, got none"],
    ),
    (
        with_when({"field": "process_path", "endswith": "x"}),
        ["when.endswith: unknown key", "allowed: field, equals, ends_with"],
    ),
    (
        with_when({"field": "process_path", "ends_with": "x", "case_sensitive": "yes"}),
        ["when.case_sensitive: expected true or false, got text 'yes'"],
    ),
    (
        with_when({"field": "process_path", "ends_with": "x", "case_sensitive": 1}),
        ["when.case_sensitive: expected true or false, got integer 1"],
    ),
    (with_when({"field": "process_path", "ends_with": []}), ["when.ends_with: empty list"]),
    (with_when({"field": "process_path", "equals": []}), ["when.equals: empty list"]),
    (
        with_when({"field": "process_path", "ends_with": ["a", None]}),
        ["when.ends_with[1]: expected text (the values of process_path), got nothing"],
    ),
    (
        with_when({"field": "process_path", "contains": {"a": 1}}),
        ["when.contains: expected text", "got a mapping"],
    ),
    (
        with_when({"field": "process_path", "equals": 443}),
        ["when.equals: expected text (the values of process_path), got integer 443"],
    ),
    (
        with_when({"field": "dst_port", "equals": "443"}),
        ["when.equals: expected integers (the values of dst_port), got text '443'"],
    ),
    (
        with_when({"field": "dst_port", "equals": [443, True]}),
        ["when.equals[1]: expected integers", "got boolean True"],
    ),
    (
        with_when({"field": "dst_port", "equals": 4.5}),
        ["when.equals: expected integers", "4.5"],
    ),
    (
        with_when({"field": "network_connection_initiated", "equals": 1}),
        ["when.equals: expected true or false", "got integer 1"],
    ),
    (
        with_when({"field": "dst_port", "starts_with": "44"}),
        ["when.starts_with: starts_with applies to text; dst_port holds integers"],
    ),
    (
        with_when({"all": [PATH_TEST, {"field": "process_path", "regex": "([a-z]"}]}),
        [
            "rule 'test-rule': when.all[1].regex: invalid regular expression '([a-z]': "
            "missing ), unterminated subpattern at position 0"
        ],
    ),
    (
        with_when({"field": "process_path", "regex": ["ok", "(?P<x"]}),
        ["when.regex[1]: invalid regular expression '(?P<x'"],
    ),
    (
        with_when({"field": "dst_ip_addr", "cidr": "10.0.0.0/33"}),
        ["when.cidr: invalid network '10.0.0.0/33'", "10.0.0.0/8"],
    ),
    (
        with_when({"field": "dst_ip_addr", "cidr": ["10.0.0.0/8", "intranet"]}),
        ["when.cidr[1]: invalid network 'intranet'"],
    ),
    (
        with_when({"field": "dst_ip_addr", "cidr": 10}),
        ["when.cidr: expected text", "got integer 10"],
    ),
    # any_ancestor's scope.
    (
        with_when({"any_ancestor": {"field": "dst_port", "equals": 443}}),
        [
            "when.any_ancestor.field: unknown field 'dst_port'",
            "an ancestor's: process_guid, process_path, process_command_line",
        ],
    ),
    (
        with_when({"any_ancestor": {"all": [PATH_TEST, {"field": "user_account", "equals": "x"}]}}),
        ["when.any_ancestor.all[1].field: unknown field 'user_account'"],
    ),
    (
        with_when({"any_ancestor": {"not": {"any_ancestor": PATH_TEST}}}),
        ["when.any_ancestor.not.any_ancestor: any_ancestor cannot nest"],
    ),
    (
        with_when({"any_ancestor": {"any_ancestor": PATH_TEST}}),
        ["when.any_ancestor.any_ancestor: any_ancestor cannot nest"],
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"), INVALID, ids=[expected[0] for _, expected in INVALID]
)
def test_invalid_rules(document: object, expected: list[str]) -> None:
    with pytest.raises(RuleError) as raised:
        parse_rules(document, "/etc/rules.yaml")
    message = str(raised.value)
    assert message.startswith("rules file /etc/rules.yaml: ")
    for part in expected:
        assert part in message


def test_empty_rules_list_is_no_rules() -> None:
    assert parse_rules({"version": 1, "rules": []}, "empty.yaml") == ()


# --- files -------------------------------------------------------------------

CUSTOM: dict[str, object] = {
    "version": 1,
    "rules": [
        {
            "id": "explorer-child-outside-4444",
            "name": "Process under explorer.exe connected outside 10/8 on port 4444",
            "technique": "T1571",
            "severity": "critical",
            "description": "Metasploit's default port",
            "when": {
                "all": [
                    {"any_ancestor": {"field": "process_path", "ends_with": "\\explorer.exe"}},
                    {"field": "dst_port", "equals": 4444},
                    {"not": {"field": "dst_ip_addr", "cidr": "10.0.0.0/8"}},
                ]
            },
        }
    ],
}


def summary(rules: tuple[Rule, ...]) -> list[tuple[object, ...]]:
    probes = [
        event(CMD, [EXPLORER], dst_port=4444, dst_ip_addr="203.0.113.7"),
        event(CMD, [EXPLORER], dst_port=4444, dst_ip_addr="10.0.0.7"),
        event(CMD, [SERVICES], dst_port=4444, dst_ip_addr="203.0.113.7"),
    ]
    return [
        (
            r.rule_id,
            r.rule_name,
            r.attack_technique,
            r.severity,
            r.description,
            *(r.matches(probe) for probe in probes),
        )
        for r in rules
    ]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".rules"])
def test_files_load_the_same_rules(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rules{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(CUSTOM))
    else:
        path.write_text(yaml.safe_dump(CUSTOM))
    rules = load_rules(path)
    assert summary(rules) == [
        (
            "explorer-child-outside-4444",
            "Process under explorer.exe connected outside 10/8 on port 4444",
            "T1571",
            "critical",
            "Metasploit's default port",
            True,
            False,
            False,
        )
    ]
    assert summary(load_rules(str(path))) == summary(rules)


def test_yaml_backslashes_in_single_quotes_are_literal(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - id: r\n    name: n\n    technique: T1047\n    severity: low\n"
        "    when: {field: process_path, ends_with: '\\cmd.exe'}\n"
    )
    (rule,) = load_rules(path)
    assert rule.matches(event(CMD))
    assert not rule.matches(event("C:\\tools\\mycmd.exe"))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "bad.yaml",
            "rules: [\n  - id: x\n",
            "not valid YAML: line 2, column 3: expected the node content",
        ),
        ("bad.yaml", "rules:\n\t- id: x\n", "not valid YAML: line 2, column 1: found"),
        ("bad.json", '{"rules": [}', "not valid JSON"),
        ("bad.json", "rules: []", "not valid JSON"),
        (
            "dup.yaml",
            "rules: []\nrules: []\n",
            "line 2, column 1: found duplicate key 'rules' (while constructing a mapping)",
        ),
        (
            "dup.yaml",
            "rules:\n  - id: x\n    when: {field: process_path, ends_with: a, ends_with: b}\n",
            "found duplicate key 'ends_with'",
        ),
        ("dup.json", '{"rules": [], "rules": []}', "duplicate key 'rules'"),
        ("empty.yaml", "", "top level: expected a mapping"),
        ("list.json", "[]", "top level: expected a mapping"),
    ],
)
def test_unparsable_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(RuleError, match=f"^rules file {re.escape(str(path))}: ") as raised:
        load_rules(path)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RuleError, match=f"^rules file {re.escape(str(missing))}: cannot read it"):
        load_rules(missing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00rules")
    with pytest.raises(RuleError, match=f"^rules file {re.escape(str(binary))}: cannot read it"):
        load_rules(binary)


def test_rule_error_is_a_value_error() -> None:
    assert issubclass(RuleError, ValueError)


def test_a_bad_rule_stops_the_worker_naming_the_rule_and_the_field(tmp_path: Path) -> None:
    # The worker itself, as an operator starts it: it must not run with less
    # detection than it was given.
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: my-rule\n"
        "    name: x\n"
        "    technique: T1047\n"
        "    severity: high\n"
        "    when: {field: process_command_line, regex: '([a-z'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "sysmon_faust", "worker"],
        env={"SYSMON_RULES": str(rules), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sysmon-faust: bad detection rule: rules file ")
    assert "rule 'my-rule'" in last and "when.regex" in last
    assert "Traceback" not in result.stderr
