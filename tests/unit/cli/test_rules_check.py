"""``rules check PATH...``: rules loaded and refused by category, one line per refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from sysmon_faust.cli import rules_check, rules_test
from sysmon_faust.settings import DEFAULT_RULES

REFUSED = """\
title: Needs a placeholder
id: 1b0e1c52-2222-4333-8444-555566667777
logsource: {product: windows, category: image_load}
detection:
    sel: {ImageLoaded|expand: '%dll_folders%'}
    condition: sel
"""


def test_the_shipped_rules_all_load(capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_check.main([str(DEFAULT_RULES), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== Sigma rules: 7 loaded, 0 refused, 0 of other logsources")
    assert "  network_connection       7        0" in out
    listed = [line for line in out.split("loaded:\n")[1].splitlines() if line.strip()]
    assert len(listed) == 7 and all("(by sysmon-faust" in line for line in listed)


def test_refused_rules_are_listed_with_why_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "refused.yml").write_text(REFUSED)
    # through `rules`, as `python -m sysmon_faust rules check` runs it
    # `default` names the shipped rules, as in SYSMON_RULES
    assert rules_test.main(["check", "default", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "7 loaded, 1 refused" in out
    assert "  image_load               0        1" in out
    (line,) = [x for x in out.splitlines() if "refused.yml" in x]
    assert "rule 1b0e1c52-2222-4333-8444-555566667777: " in line and "placeholder" in line


def test_a_missing_path_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rules_check.main([str(tmp_path / "none")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "no such file or folder" in err
