"""Sigma's value matching, modifier by modifier, on one event (Sigma specification 2.0).

Each case is a rule's detection and an event's fields; the expectation is
what the specification says (encodings computed here with the standard
library, not with pySigma).
"""

from __future__ import annotations

import base64
import textwrap
from typing import Any

import pytest

from sysmon_faust.core.sigma import fields, ruleset


def rule(detection: str, category: str = "process_creation") -> ruleset.RuleSet:
    text = textwrap.dedent(
        f"""\
        title: test
        id: 9a1f6a52-0000-4000-8000-000000000001
        logsource: {{product: windows, category: {category}}}
        detection:
        """
    ) + textwrap.indent(textwrap.dedent(detection), "    ")
    rules = ruleset.parse(text)
    assert not rules.refused, rules.refused
    assert len(rules) == 1
    return rules


def matches(detection: str, event: dict[str, Any], event_id: int = 1) -> bool:
    rules = rule(detection)
    view = {"EventID": str(event_id), **event}
    low = fields.lowered(view)
    # The index must never hide a match: compare with the rule tried alone.
    alone = rules.rules[0].matches(view, low)
    assert bool(rules.match(event_id, view, low)) is alone
    return alone


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


TEN = "sel: {DestinationIp|cidr: '10.0.0.0/8'}\ncondition: sel"
CASES = [
    # (detection, event, expected)
    ("sel: {Image: 'C:\\Windows\\System32\\cmd.exe'}\ncondition: sel",
     {"Image": "c:\\windows\\system32\\CMD.EXE"}, True),
    ("sel: {Image: 'C:\\Windows\\System32\\cmd.exe'}\ncondition: sel",
     {"Image": "C:\\Windows\\System32\\cmd.exe.bak"}, False),
    ("sel: {Image|endswith: '\\cmd.exe'}\ncondition: sel", {"Image": "C:\\x\\CMD.exe"}, True),
    ("sel: {Image|endswith: '\\cmd.exe'}\ncondition: sel", {"Image": "C:\\x\\notcmd.exe"}, False),
    ("sel: {Image|startswith: 'C:\\Users\\'}\ncondition: sel", {"Image": "c:\\users\\a.exe"}, True),
    ("sel: {CommandLine|contains: 'IEX'}\ncondition: sel", {"CommandLine": "ps iex(x)"}, True),
    ("sel: {CommandLine|contains: 'IEX'}\ncondition: sel", {"Image": "iex"}, False),
    # wildcards, and an escaped one that is a literal star
    ("sel: {CommandLine: '*a?c*'}\ncondition: sel", {"CommandLine": "xxaZcyy"}, True),
    ("sel: {CommandLine: '*a?c*'}\ncondition: sel", {"CommandLine": "xxacyy"}, False),
    ("sel: {CommandLine: 'a\\*b'}\ncondition: sel", {"CommandLine": "a*b"}, True),
    ("sel: {CommandLine: 'a\\*b'}\ncondition: sel", {"CommandLine": "axxb"}, False),
    # lists are OR, |all makes them AND
    ("sel: {Image|endswith: ['\\a.exe', '\\b.exe']}\ncondition: sel", {"Image": "C:\\b.exe"}, True),
    ("sel: {CommandLine|contains|all: ['-nop', '-enc']}\ncondition: sel",
     {"CommandLine": "ps -enc x"}, False),
    ("sel: {CommandLine|contains|all: ['-nop', '-enc']}\ncondition: sel",
     {"CommandLine": "ps -NOP -enc x"}, True),
    # re: case-sensitive unless i; m and s
    ("sel: {CommandLine|re: 'foo.+bar'}\ncondition: sel", {"CommandLine": "x FOO1BAR"}, False),
    ("sel: {CommandLine|re|i: 'foo.+bar'}\ncondition: sel", {"CommandLine": "x FOO1BAR"}, True),
    ("sel: {CommandLine|re: '^b$'}\ncondition: sel", {"CommandLine": "a\nb"}, False),
    ("sel: {CommandLine|re|m: '^b$'}\ncondition: sel", {"CommandLine": "a\nb"}, True),
    ("sel: {CommandLine|re: 'a.b'}\ncondition: sel", {"CommandLine": "a\nb"}, False),
    ("sel: {CommandLine|re|s: 'a.b'}\ncondition: sel", {"CommandLine": "a\nb"}, True),
    # cased
    ("sel: {CommandLine|cased: 'ABC'}\ncondition: sel", {"CommandLine": "abc"}, False),
    ("sel: {CommandLine|cased: 'ABC'}\ncondition: sel", {"CommandLine": "ABC"}, True),
    # base64 and base64offset (the three alignments), utf16le/wide for PowerShell's -enc
    ("sel: {CommandLine|base64|contains: 'http://'}\ncondition: sel",
     {"CommandLine": "x " + b64(b"http://") + " y"}, True),
    *[
        ("sel: {CommandLine|base64offset|contains: 'IEX ('}\ncondition: sel",
         {"CommandLine": "-e " + b64(prefix + b"IEX (New-Object Net.WebClient)")}, True)
        for prefix in (b"", b"a", b"ab")
    ],
    ("sel: {CommandLine|base64offset|contains: 'IEX ('}\ncondition: sel",
     {"CommandLine": "-e " + b64(b"Write-Host hello")}, False),
    ("sel: {CommandLine|wide|base64offset|contains: 'IEX'}\ncondition: sel",
     {"CommandLine": "-enc " + b64("$a; IEX $b".encode("utf-16-le"))}, True),
    ("sel: {CommandLine|utf16le|base64offset|contains: 'IEX'}\ncondition: sel",
     {"CommandLine": "-enc " + b64("x IEX $b".encode("utf-16-le"))}, True),
    ("sel: {CommandLine|utf16be|base64offset|contains: 'IEX'}\ncondition: sel",
     {"CommandLine": b64("xy IEX".encode("utf-16-be"))}, True),
    # windash: -, /, en dash, em dash, horizontal bar
    *[
        ("sel: {CommandLine|windash|contains: ' -enc '}\ncondition: sel",
         {"CommandLine": f"powershell {dash}enc abc"}, True)
        for dash in ("-", "/", "\u2013", "\u2014", "\u2015")
    ],
    ("sel: {CommandLine|windash|contains: ' -enc '}\ncondition: sel",
     {"CommandLine": "powershell +enc abc"}, False),
    # cidr
    (TEN, {"DestinationIp": "10.1.2.3"}, True),
    (TEN, {"DestinationIp": "11.1.2.3"}, False),
    (TEN, {"DestinationIp": "::ffff:10.1.2.3"}, True),  # IPv4-mapped: that IPv4 address
    (TEN, {"DestinationIp": "not-an-ip"}, False),
    ("sel: {DestinationIp|cidr: 'fe80::/10'}\ncondition: sel", {"DestinationIp": "fe80::1"}, True),
    # exists, null
    ("sel: {OriginalFileName|exists: true}\ncondition: sel", {"OriginalFileName": "x.exe"}, True),
    ("sel: {OriginalFileName|exists: true}\ncondition: sel", {}, False),
    ("sel: {OriginalFileName|exists: false}\ncondition: sel", {}, True),
    ("sel: {OriginalFileName: null}\ncondition: sel", {}, True),
    ("sel: {OriginalFileName: null}\ncondition: sel", {"OriginalFileName": ""}, True),
    ("sel: {OriginalFileName: null}\ncondition: sel", {"OriginalFileName": "a"}, False),
    # numbers: text or value (hex), and comparisons on values
    ("sel: {TerminalSessionId: 1}\ncondition: sel", {"TerminalSessionId": "1"}, True),
    ("sel: {GrantedAccess: 5136}\ncondition: sel", {"GrantedAccess": "0x1410"}, True),
    ("sel: {TerminalSessionId|gt: 1}\ncondition: sel", {"TerminalSessionId": "2"}, True),
    ("sel: {TerminalSessionId|gt: 1}\ncondition: sel", {"TerminalSessionId": "1"}, False),
    ("sel: {TerminalSessionId|gte: 1}\ncondition: sel", {"TerminalSessionId": "1"}, True),
    ("sel: {TerminalSessionId|lt: 1}\ncondition: sel", {"TerminalSessionId": "0"}, True),
    ("sel: {TerminalSessionId|lte: 1}\ncondition: sel", {"TerminalSessionId": "x"}, False),
    # fieldref
    ("sel: {ParentImage|fieldref: Image}\ncondition: sel",
     {"Image": "C:\\a.exe", "ParentImage": "c:\\A.exe"}, True),
    ("sel: {ParentImage|fieldref: Image}\ncondition: sel",
     {"Image": "C:\\a.exe", "ParentImage": "C:\\b.exe"}, False),
    ("sel: {ParentImage|fieldref: Image}\ncondition: sel", {"Image": "C:\\a.exe"}, False),
    # a missing field matches no value; `not` of it holds
    ("sel: {CommandLine|contains: 'x'}\ncondition: not sel", {}, True),
    # conditions
    ("sel_a: {Image|endswith: '\\a.exe'}\nsel_b: {Image|endswith: '\\b.exe'}\n"
     "condition: 1 of sel_*", {"Image": "C:\\b.exe"}, True),
    ("sel_a: {Image|endswith: '.exe'}\nsel_b: {CommandLine|contains: 'x'}\n"
     "condition: all of sel_*", {"Image": "C:\\b.exe", "CommandLine": "y"}, False),
    ("sel_a: {Image|endswith: '.exe'}\nsel_b: {CommandLine|contains: 'x'}\n"
     "condition: all of them", {"Image": "C:\\b.exe", "CommandLine": "x"}, True),
    ("a: {Image|endswith: '.exe'}\nb: {CommandLine|contains: 'x'}\nc: {User: 'SYSTEM'}\n"
     "condition: a and (b or c) and not c", {"Image": "q.exe", "CommandLine": "x"}, True),
    ("a: {Image|endswith: '.exe'}\nb: {CommandLine|contains: 'x'}\nc: {User: 'SYSTEM'}\n"
     "condition: a and (b or c) and not c",
     {"Image": "q.exe", "CommandLine": "x", "User": "system"}, False),
    # keywords: a value without a field, contained in one of the event's own fields
    ("keywords: ['*mimikatz*']\ncondition: keywords", {"CommandLine": "run MimiKatz.exe"}, True),
    ("keywords: ['*mimikatz*']\ncondition: keywords", {"CommandLine": "notepad"}, False),
    ("keywords: ['lsadump::']\ncondition: keywords", {"CommandLine": "m.exe lsadump::sam"}, True),
    ("keywords: ['lsadump::']\ncondition: keywords",
     {"AncestorCommandLine": ["m.exe lsadump::sam"]}, False),  # context, not the event
    # numbers are what Sysmon writes (decimal or hex), not whatever float() takes
    ("sel: {DestinationPort|gt: 1000}\ncondition: sel", {"DestinationPort": "infinity"}, False),
    ("sel: {DestinationPort: 1000}\ncondition: sel", {"DestinationPort": "1e3"}, False),
    ("sel: {DestinationPort: 1000}\ncondition: sel", {"DestinationPort": "1_000"}, False),
    ("sel: {DestinationPort|lt: 1000}\ncondition: sel", {"DestinationPort": "0x10"}, True),
    # lists of numbers, networks and non-ASCII strings (each merged into one test)
    *[
        ("sel: {DestinationPort: [8080, 8888, 4444]}\ncondition: sel",
         {"DestinationPort": port}, hit)
        for port, hit in (("8888", True), ("0x22b8", True), ("80", False), ("x", False))
    ],
    *[
        ("sel: {DestinationIp|cidr: ['10.0.0.0/8', 'fe80::/10']}\ncondition: sel",
         {"DestinationIp": ip}, hit)
        for ip, hit in (("fe80::2", True), ("::ffff:10.0.0.1", True), ("8.8.8.8", False))
    ],
    *[
        ("sel: {CommandLine|contains: ['\U0001f986', '\U0001f985', '\U0001f989', '\u0430', "
         "'\U0001f43a', 'zz']}\ncondition: sel", {"CommandLine": text}, hit)
        for text, hit in (("run \U0001f986 x", True), ("p\u0430th", True), ("run x", False),
                          ("azzb", True), ("\u00e9t\u00e9", False))
    ],
    *[
        ("sel: {CommandLine|contains: ['\U0001f986', '\U0001f985', '\U0001f989', '\u0430', "
         "'\U0001f43a']}\ncondition: sel", {"CommandLine": text}, hit)
        for text, hit in (("run \U0001f43a", True), ("run x", False), ("\u00e9t\u00e9", False))
    ],
    # fieldref with a list on one side: one element compares; exists needs a value
    ("sel: {ParentImage|fieldref: AncestorImage}\ncondition: sel",
     {"ParentImage": "C:\\b.exe", "AncestorImage": ["C:\\a.exe", "c:\\B.exe"]}, True),
    ("sel: {AncestorImage|exists: true}\ncondition: sel", {"AncestorImage": [None]}, False),
    # a list-valued field (the ancestry) matches when one element does
    ("sel: {AncestorImage|endswith: '\\wmiprvse.exe'}\ncondition: sel",
     {"AncestorImage": ["C:\\Windows\\cmd.exe", "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"]},
     True),
    ("sel: {AncestorImage|endswith: '\\wmiprvse.exe'}\ncondition: sel",
     {"AncestorImage": ["C:\\Windows\\explorer.exe"]}, False),
]  # fmt: skip


@pytest.mark.parametrize(("detection", "event", "expected"), CASES)
def test_value_matching(detection: str, event: dict[str, Any], expected: bool) -> None:
    assert matches(detection, event) is expected


def test_a_rule_matches_only_events_of_its_category() -> None:
    rules = rule("sel: {Image|endswith: '\\cmd.exe'}\ncondition: sel", "network_connection")
    view = {"Image": "C:\\cmd.exe"}
    low = fields.lowered(view)
    assert [r.title for r in rules.match(3, view, low)] == ["test"]
    assert rules.match(1, view, low) == []
