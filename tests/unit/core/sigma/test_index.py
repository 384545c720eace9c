"""The index: what every match of a rule holds, and the candidates it hands out (never too few)."""

from __future__ import annotations

from sysmon_faust.core.sigma import fields, ruleset
from sysmon_faust.core.sigma.index import (
    LOW_CARDINALITY,
    MEMO_ENTRIES,
    MEMO_LONGEST,
    Requirement,
    RuleIndex,
    number_key,
)

PORTS = """\
title: uncommon port
id: 0a2c9a3e-0000-4000-8000-000000000001
logsource: {product: windows, category: network_connection}
detection:
    selection:
        Initiated: 'true'
        DestinationPort: [4444, 8443]
    condition: selection
"""

IMAGES = """\
title: a shell, by its image or its original name
id: 0a2c9a3e-0000-4000-8000-000000000002
logsource: {product: windows, category: process_creation}
detection:
    image: {Image|endswith: '\\\\cmd.exe'}
    original: {OriginalFileName: 'Cmd.Exe'}
    args: {CommandLine|contains: ' /c '}
    condition: (image or original) and args
---
title: under a WMI host, at any depth
id: 0a2c9a3e-0000-4000-8000-000000000003
logsource: {product: windows, category: process_creation}
detection:
    sel: {AncestorImage: 'C:\\Windows\\System32\\wbem\\WmiPrvSE.exe'}
    condition: sel
---
title: signed by Microsoft, named csi
id: 0a2c9a3e-0000-4000-8000-000000000004
logsource: {product: windows, category: process_creation}
detection:
    sel: {Company: 'Microsoft Corporation', Description: 'csi'}
    condition: sel
---
title: a regular expression alone
id: 0a2c9a3e-0000-4000-8000-000000000005
logsource: {product: windows, category: process_creation}
detection:
    sel: {CommandLine|re: 'a+b'}
    condition: sel
"""


ENDINGS = """\
title: an ending
id: 0a2c9a3e-0000-4000-8000-000000000011
logsource: {{product: windows, category: process_creation}}
detection:
    sel: {{Image|endswith: '{ending}'}}
    condition: sel
"""


def _rule(rules: ruleset.RuleSet, suffix: str) -> ruleset.SigmaRule:
    return next(rule for rule in rules.rules if rule.rule_id.endswith(suffix))


def _candidates(rules: ruleset.RuleSet, event_id: int, **view: object) -> set[str]:
    low = fields.lowered(view)
    return {rules.rules[index].rule_id[-2:] for index in rules.candidates(event_id, low)}


def test_a_whole_value_beats_a_piece_of_text_of_a_field_of_two_values() -> None:
    rules = ruleset.parse(PORTS)
    assert "Initiated" in LOW_CARDINALITY
    # ``true`` is in nearly every connect: the port list narrows, by text and by value
    assert _rule(rules, "01").required == Requirement(
        equals=frozenset({
            ("DestinationPort", "4444"), ("DestinationPort", number_key(4444)),
            ("DestinationPort", "8443"), ("DestinationPort", number_key(8443)),
        }),
        numbers=frozenset({"DestinationPort"}),
    )  # fmt: skip


def test_a_connect_is_a_candidate_only_on_a_listed_port_written_either_way() -> None:
    rules = ruleset.parse(PORTS)
    assert _candidates(rules, 3, Initiated="true", DestinationPort="4444") == {"01"}
    assert _candidates(rules, 3, Initiated="true", DestinationPort="0x115c") == {"01"}  # 4444
    assert _candidates(rules, 3, Initiated="true", DestinationPort="443") == set()
    assert _candidates(rules, 3, Initiated="true") == set()


def test_an_or_needs_all_of_its_parts_an_and_its_strongest() -> None:
    rules = ruleset.parse(IMAGES)
    # (image or original) and args: the or's two parts together, being stronger than ' /c ';
    # an image ending in \cmd.exe has cmd.exe after its last backslash
    assert _rule(rules, "02").required == Requirement(
        equals=frozenset({("OriginalFileName", "cmd.exe")}), names=frozenset({("Image", "cmd.exe")})
    )
    # a field of one dominant value (Company) yields to the other field's whole value
    assert _rule(rules, "04").required == Requirement(equals=frozenset({("Description", "csi")}))
    assert _rule(rules, "05").required is None  # tried on every creation


def test_candidates_by_text_by_whole_value_and_by_a_list_element() -> None:
    rules = ruleset.parse(IMAGES)
    always = {"05"}
    assert _candidates(rules, 1, Image="C:\\x\\CMD.EXE") == always | {"02"}
    assert _candidates(rules, 1, Image="C:\\x\\c.exe", OriginalFileName="Cmd.Exe") == always | {
        "02"
    }
    assert _candidates(rules, 1, Image="C:\\x\\c.exe", Description="CSI") == always | {"04"}
    ancestry = ["C:\\a.exe", None, "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"]
    assert _candidates(rules, 1, AncestorImage=ancestry) == always | {"03"}
    assert _candidates(rules, 1, Image="C:\\x\\c.exe") == always
    assert _candidates(rules, 1, Image="C:\\cmd.exe\\c.exe") == always  # not the last part
    assert _candidates(rules, 1, Image="cmd.exe") == always | {"02"}  # a candidate, not a match


def test_a_path_ending_is_indexed_by_its_last_part_only_when_it_has_one() -> None:
    rules = ruleset.parse(
        ENDINGS.format(ending="\\\\windows\\\\system32\\\\cmd.exe")
        + "---\n" + ENDINGS.format(ending="\\\\temp\\\\").replace("-000000000011", "-000000000012")
        + "---\n" + ENDINGS.format(ending=".exe").replace("-000000000011", "-000000000013")
    )  # fmt: skip
    assert _rule(rules, "11").required == Requirement(names=frozenset({("Image", "cmd.exe")}))
    assert _rule(rules, "12").required == Requirement(contains=frozenset({("Image", "\\temp\\")}))
    assert _rule(rules, "13").required == Requirement(contains=frozenset({("Image", ".exe")}))
    image = "C:\\Windows\\System32\\CMD.EXE"
    assert _candidates(rules, 1, Image=image) == {"11", "13"}
    assert [
        r.rule_id[-2:] for r in rules.match(1, {"Image": image}, fields.lowered({"Image": image}))
    ] == ["11", "13"]


def test_candidates_come_in_rule_order() -> None:
    rules = ruleset.parse(IMAGES)
    view = {"Image": "C:\\cmd.exe", "Description": "csi", "Company": "Microsoft Corporation",
            "CommandLine": "ab /c "}  # fmt: skip
    low = fields.lowered(view)
    found = rules.candidates(1, low)
    assert found == sorted(found)
    assert [rule.rule_id[-2:] for rule in rules.match(1, view, low)] == ["02", "04", "05"]


def test_a_piece_of_text_is_looked_for_in_its_own_field_a_keyword_in_any() -> None:
    index = RuleIndex()
    index.add(0, Requirement(contains=frozenset({("CommandLine", "mimikatz")})))
    index.add(1, Requirement(contains=frozenset({(None, "sekurlsa")})))
    index.finish()
    assert list(index.candidates({"Image": "c:\\mimikatz.exe"})) == []
    assert list(index.candidates({"CommandLine": "mimikatz.exe coffee"})) == [0]
    assert list(index.candidates({"Image": "x", "TargetFilename": "c:\\sekurlsa.txt"})) == [1]
    assert list(index.candidates({"CommandLine": "mimikatz sekurlsa::logonpasswords"})) == [0, 1]


def test_what_a_value_reaches_is_remembered_within_bounds() -> None:
    index = RuleIndex()
    index.add(0, Requirement(contains=frozenset({("CommandLine", "mimikatz")})))
    index.add(1, Requirement(equals=frozenset({("CommandLine", "whoami")})))
    index.finish()
    memo = index._by_name["CommandLine"].memo  # the one field's memo
    for n in range(3 * MEMO_ENTRIES):
        assert list(index.candidates({"CommandLine": f"run {n} mimikatz"})) == [0]
        assert len(memo) <= MEMO_ENTRIES
    # after it started over, a remembered value still reaches what it reaches
    assert list(index.candidates({"CommandLine": "whoami"})) == [1]
    assert list(index.candidates({"CommandLine": "whoami"})) == [1]
    assert memo["whoami"] == (1,)
    long_value = "mimikatz " + "x" * MEMO_LONGEST
    assert list(index.candidates({"CommandLine": long_value})) == [0]
    assert long_value not in memo  # scanned each time, never kept


REGEXES = """\
title: {title}
id: 5e1f0c2a-0000-4000-8000-0000000000{n:02d}
logsource: {{product: windows, category: process_creation}}
detection:
    selection: {{CommandLine|re: '{regex}'}}
    condition: selection
"""


def _regex_rule(n: int, regex: str) -> ruleset.SigmaRule:
    rules = ruleset.parse(REGEXES.format(title=f"regex {n}", n=n, regex=regex))
    assert not rules.refused
    return rules.rules[0]


def test_a_regular_expression_gives_the_plain_text_every_match_holds() -> None:
    def pieces(regex: str) -> frozenset[tuple[str | None, str]] | None:
        required = _regex_rule(1, regex).required
        return None if required is None else required.contains

    # SigmaHQ's Impacket and wmiexec file names, Invoke-Obfuscation's launcher
    assert pieces(r"\\sessionresume_[a-zA-Z]{8}$") == {("CommandLine", "\\sessionresume_")}
    assert pieces(r"cmd.{0,5}(?:/c|/r).+powershell.+") == {("CommandLine", "powershell")}
    # an alternation: a piece of each alternative, or nothing
    assert pieces(r"(?:mimikatz|rubeus)\.exe") == {
        ("CommandLine", "mimikatz"),
        ("CommandLine", "rubeus"),
    }
    assert pieces(r"(?:mimikatz|ru)\.exe") == {("CommandLine", ".exe")}
    assert pieces(r"(?:abc)+defg") == {("CommandLine", "defg")}
    assert pieces(r"(?:abcdef)*gh") is None  # may repeat zero times; 'gh' is too short
    assert pieces(r"\w+`(?:\w+|-|.)`[\w+|\s]") is None  # SigmaHQ's token obfuscation
    # case-insensitive: no i or s, which characters outside ASCII match there
    assert pieces(r"(?i)powershell") == {("CommandLine", "power")}
    assert pieces(r"IPCONFIG") == {("CommandLine", "ipconfig")}  # cased: its own letters


def test_a_case_insensitive_expression_is_found_whatever_the_letters_fold_from() -> None:
    for n, (regex, command_line) in enumerate([
        ("(?i)ipconfig /all", "\u0130PCONF\u0130G /ALL"),  # U+0130: i + U+0307 lower-cased
        ("(?i)ipconfig /all", "\u0131pconf\u0131g /all"),  # dotless i matches i
        ("(?i)net1? use", "NET USE"),
        ("(?i)lsass", "L\u017fA\u017f\u017f"),  # long s matches s
    ]):  # fmt: skip
        rule = _regex_rule(n, regex)
        rules = ruleset.RuleSet([rule])
        view = {"EventID": "1", "CommandLine": command_line}
        assert rule.matches(view, fields.lowered(view)), regex
        assert rules.match(1, view) == [rule], (regex, command_line)


def test_a_character_outside_ascii_is_a_piece_of_text_on_its_own() -> None:
    rules = ruleset.parse(
        ENDINGS.format(ending="x")
        # a Cyrillic A, a Greek E
        .replace("Image|endswith: 'x'", "TargetFilename|contains: ['\u0410', '\u0395']")
        .replace("process_creation", "file_event")
    )  # fmt: skip
    rule = _rule(rules, "11")
    assert rule.required == Requirement(
        contains=frozenset({("TargetFilename", "\u0430"), ("TargetFilename", "\u03b5")})
    )
    assert _candidates(rules, 11, TargetFilename="C:\\Users\\x\\report.pdf") == set()
    assert (
        _candidates(rules, 11, TargetFilename="C:\\Users\\x\\r\u0435port.pdf") == set()
    )  # Cyrillic e
    assert _candidates(rules, 11, TargetFilename="C:\\Users\\x\\\u0395XPLORER.EXE") == {"11"}


def test_a_number_is_found_by_value_whatever_its_sign_of_zero_or_size() -> None:
    rules = ruleset.parse(PORTS.replace("[4444, 8443]", "[0, 4444]"))
    rule = _rule(rules, "01")
    for port in ("0", "-0", "-0.0", "0x0"):
        view = {"EventID": "3", "Initiated": "true", "DestinationPort": port}
        assert rule.matches(view, fields.lowered(view)), port
        assert rules.match(3, view) == [rule], port
    # beyond a float, not a number: neither an error nor a match
    view = {"EventID": "3", "Initiated": "true", "DestinationPort": "0x" + "f" * 300}
    assert rules.match(3, view) == []


def test_a_value_of_no_text_is_passed_over() -> None:
    rules = ruleset.parse(IMAGES)
    assert _candidates(rules, 1, Image=5) == {"05"}  # "05" is tried on every creation
