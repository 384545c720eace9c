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
