"""``rules test`` on hand-made recordings (the join itself: tests/unit/core/join/test_engine.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sysmon_faust.cli import rules_test
from sysmon_faust.core.normalize import ZERO_GUID
from tests.events import guid
from tests.timeline import POWERSHELL, WMI_RULE, WMIPRVSE, A, connect, create, hop

W = guid(0x11)


# --- the command line ---------------------------------------------------------------------


def write_recording(path: Path, raws: list[bytes]) -> Path:
    path.write_bytes(b"".join(raw + b"\n" for raw in raws))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (
        "SYSMON_RULES", "SYSMON_JOIN_GRACE", "SYSMON_ANCESTRY_DEPTH", "SYSMON_ALERT_WINDOW"
    ):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def wmi_recording(tmp_path: Path) -> Path:
    """PowerShell started by WmiPrvSE connects twice (once before its creation is read)."""
    return write_recording(
        tmp_path / "wmi.jsonl",
        [
            b"not json at all",
            connect(1, A, 8080, image=POWERSHELL),
            create(2, A, image=POWERSHELL, parent=W, parent_image=WMIPRVSE),
            connect(3, A, 443, image=POWERSHELL),
            connect(4, ZERO_GUID, 53),
        ],
    )


@pytest.mark.usefixtures("clean_env")
def test_cli_json_lines(wmi_recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --window 0: every match alerts on its own.
    assert rules_test.main(["test", "--json", "--window", "0", str(wmi_recording)]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    wmi = [line for line in lines if line["rule_id"] == WMI_RULE]
    # Released first (the connect read before the creation), then the later one.
    assert [line["alert"]["event"]["dst_port"] for line in wmi] == [8080, 443]
    for line in wmi:
        assert line["file"] == str(wmi_recording)
        assert line["process_guid"] == A
        assert line["attack_technique"] == "T1047"
        alert = line["alert"]
        assert set(alert) == {
            "rule_id", "rule_name", "attack_technique", "severity", "detected_at", "event",
            "alert_group", "rule_status", "rule_tags", "rule_author", "rule_references",
            "logsource_category", "event_id",
        }  # fmt: skip
        assert (alert["logsource_category"], alert["event_id"]) == ("network_connection", 3)
        assert (alert["alert_group"]["state"], alert["alert_group"]["count"]) == ("closed", 1)
        assert alert["rule_id"] == WMI_RULE
        assert alert["event"]["process_ancestry"] == [hop(W, WMIPRVSE)]
    assert "joined 2, unmatched 1 (no_process_guid 1)" in err
    assert "invalid 1" in err


@pytest.mark.usefixtures("clean_env")
def test_cli_human_output(wmi_recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_test.main(["test", str(wmi_recording)]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress when stderr is not a terminal
    line = next(line for line in out.splitlines() if WMI_RULE in line)
    assert line.startswith("wmi.jsonl  ")
    assert "T1047 high" in line
    # Both connects are one group (the default window): one line, with both.
    assert [x for x in out.splitlines() if x.startswith("wmi.jsonl")] == [line]
    assert f"powershell.exe {A} -> 10.0.10.106:8080, 10.0.10.106:443 (2 matches, " in line
    assert line.endswith("ancestry: WmiPrvSE.exe")
    assert "alerts: 2 matches in 1 group(s)" in out
    assert "== total: 1 file(s)" in out


@pytest.mark.usefixtures("clean_env")
def test_cli_json_lines_are_what_the_worker_writes_a_first_alert_then_the_update(
    wmi_recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rules_test.main(["test", "--json", str(wmi_recording)]) == 0
    out, _ = capsys.readouterr()
    wmi = [json.loads(x)["alert"] for x in out.splitlines() if WMI_RULE in x]
    first, update = wmi
    assert first["alert_group"]["state"] == "open" and first["alert_group"]["count"] == 1
    assert update["alert_group"]["state"] == "closed" and update["alert_group"]["count"] == 2
    assert update["alert_group"]["destinations"] == ["10.0.10.106:8080", "10.0.10.106:443"]
    assert update["alert_group"]["window_seconds"] == rules_test.DEFAULT_WINDOW_S
    assert update["event"] == first["event"]  # the match that alerted


@pytest.mark.usefixtures("clean_env")
def test_cli_grace_zero_and_depth_options(
    wmi_recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        rules_test.main(["test", "--json", "--grace", "0", "--depth", "0", str(wmi_recording)]) == 0
    )
    out, err = capsys.readouterr()
    # Without a grace the early connect is unmatched; without ancestry no
    # any-ancestor rule can fire.
    assert out == ""
    assert "joined 1, unmatched 2" in err


def test_cli_takes_defaults_from_the_environment(
    wmi_recording: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYSMON_JOIN_GRACE", "0")
    monkeypatch.delenv("SYSMON_RULES", raising=False)
    monkeypatch.delenv("SYSMON_ANCESTRY_DEPTH", raising=False)
    assert rules_test.main(["test", "--json", str(wmi_recording)]) == 0
    assert "joined 1, unmatched 2" in capsys.readouterr().err


REFUSED_RULE = """\
title: A rule with an unexpanded placeholder
id: 5f0e2a8c-1111-4222-8333-444455556666
author: Someone
logsource: {product: windows, category: network_connection}
detection:
    sel: {Image|expand: '%admin_tools%'}
    condition: sel
level: high
"""


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("how", ["--rules", "SYSMON_RULES"])
def test_cli_a_refused_rule_is_a_note_and_the_others_run(
    how: str,
    wmi_recording: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "refused.yml").write_text(REFUSED_RULE)
    args = ["test", "--json", str(wmi_recording)]
    if how == "--rules":
        args += ["--rules", "sysmon_faust/core/default_rules", "--rules", str(mine)]
    else:
        monkeypatch.setenv("SYSMON_RULES", f"default,{mine}")
    assert rules_test.main(args) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["rule_id"] for line in out.splitlines()] == [WMI_RULE, WMI_RULE]
    (note,) = [line for line in err.splitlines() if line.startswith("note:")]
    assert "refused.yml: rule 5f0e2a8c-1111-4222-8333-444455556666: " in note
    assert "placeholder" in note


@pytest.mark.usefixtures("clean_env")
def test_cli_missing_rules_path(
    wmi_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rules_test.main(["test", str(wmi_recording), "--rules", str(tmp_path / "no")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert f"rules path {tmp_path / 'no'}: no such file or folder" in err


@pytest.mark.usefixtures("clean_env")
def test_cli_missing_input_file(
    wmi_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl.gz"
    assert rules_test.main(["test", str(wmi_recording), str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # checked before any file is read
    assert err.strip() == f"rules test: no such file: {missing}"


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    "args",
    [
        ["test"],
        ["test", "--grace", "soon", "x.jsonl"],
        ["test", "--grace", "-1", "x.jsonl"],
        ["test", "--depth", "65", "x.jsonl"],
        ["test", "--bogus", "x.jsonl"],
        ["check", "x.jsonl"],
        [],
    ],
)
def test_cli_bad_options(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_test.main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err


def test_cli_bad_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYSMON_ANCESTRY_DEPTH", "deep")
    assert rules_test.main(["test", "x.jsonl"]) == 2
    assert "SYSMON_ANCESTRY_DEPTH='deep' is not an integer" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_test.main(["test", "--help"], prog="python -m sysmon_faust rules") == 0
    out = capsys.readouterr().out
    assert "usage: python -m sysmon_faust rules test" in out
    assert "--grace" in out and "--depth" in out and "--json" in out
    assert "retention" in out


@pytest.mark.usefixtures("clean_env")
def test_cli_file_of_no_kind_read_here(
    wmi_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "events.txt"
    notes.write_bytes(wmi_recording.read_bytes())
    assert rules_test.main(["test", str(wmi_recording), str(notes)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before any file is read
    assert err.startswith(f"rules test: {notes}: not a recording this reads")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.usefixtures("clean_env")
def test_cli_reads_an_archive_as_its_members(
    wmi_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rules_test.main(["test", "--json", str(wmi_recording)]) == 0
    from_file, _ = capsys.readouterr()
    archive = tmp_path / "wmi.zip"
    with zipfile.ZipFile(archive, "w") as packed:
        packed.write(wmi_recording, "wmi/events.json")
        packed.writestr("wmi/notes.md", "how it was recorded")
    assert rules_test.main(["test", "--json", str(archive)]) == 0
    from_archive, err = capsys.readouterr()

    def alerts(out: str) -> list[Any]:
        return [{**json.loads(line)["alert"], "detected_at": None} for line in out.splitlines()]

    assert alerts(from_archive) == alerts(from_file) != []
    assert f"note: {archive}: 1 member(s) of no recording kind skipped (wmi/notes.md)" in err
