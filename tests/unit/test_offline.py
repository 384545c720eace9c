"""The offline join and ``rules test``, table-tested on hand-made raw Sysmon events.

Every event goes through the real normalizer, as in the tool. The GUIDs of
tests/events.py carry the start time 2019-03-19 19:31:56 UTC, so connects
from T0 (19:32:00) on are within a grace of a minute of their process's
start: their creation may still come, and they wait.
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sysmon_faust.cli import rules_test
from sysmon_faust.cli.rules_test import OfflineJoin, Produced
from sysmon_faust.core.join.grace import AFTER_GRACE, STARTED_BEFORE_GRACE
from sysmon_faust.core.join.semantics import NO_PROCESS_GUID, PROCESS_UNKNOWN, Row
from sysmon_faust.core.normalize import ZERO_GUID, NormalizedEvent, normalize
from sysmon_faust.core.rules import alert_record, load_rules
from tests.events import guid, terminate, winlogbeat

T0 = datetime(2019, 3, 19, 19, 32, tzinfo=UTC)
A, B, C = guid(1), guid(2), guid(3)

SVCHOST = "C:\\Windows\\System32\\svchost.exe"
WMIPRVSE = "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
CMD = "C:\\Windows\\System32\\cmd.exe"
MSBUILD = "C:\\Windows\\Microsoft.NET\\Framework\\v4.0.30319\\MSBuild.exe"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"

WMI_RULE = "sysmon-wmi-child-network-connect"


def at(seconds: float) -> str:
    moment = T0 + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def create(
    seconds: float,
    process: str,
    image: str = CMD,
    parent: str = guid(0xFFF),
    parent_image: str = SVCHOST,
) -> bytes:
    return winlogbeat(
        1, at(seconds), process,
        Image=image, CommandLine=f"{image} /run",
        ParentProcessGuid=parent, ParentImage=parent_image,
        ParentCommandLine=f"{parent_image} -parent",
    )  # fmt: skip


def connect(seconds: float, process: str, port: int, image: str = CMD) -> bytes:
    return winlogbeat(
        3, at(seconds), process,
        Image=image, DestinationIp="10.0.10.106", DestinationPort=str(port),
    )  # fmt: skip


def event(raw: bytes) -> NormalizedEvent:
    outcome = normalize(raw)
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def run(raws: list[bytes], grace_s: int = 60, depth: int = 4) -> list[tuple[Any, ...]]:
    """What each event (by its index, or "end") produced: ("joined", port) / ("unmatched", ...)."""
    join = OfflineJoin(grace_s * 1000, depth)
    steps: list[tuple[int | str, Produced]] = [
        (index, join.feed(event(raw))) for index, raw in enumerate(raws)
    ]
    steps.append(("end", join.finish()))
    seen: list[tuple[Any, ...]] = []
    for step, produced in steps:
        seen += [(step, "joined", row["dst_port"]) for row in produced.joined]
        seen += [
            (step, "unmatched", r["dst_port"], r["unmatched_reason"]) for r in produced.unmatched
        ]
    return seen


# --- the join -----------------------------------------------------------------------


CASES = {
    "creation then connect joins at once": (
        [create(0, A), connect(1, A, 1)],
        60,
        [(1, "joined", 1)],
    ),
    "connects before the creation join when it comes, in event-time order": (
        [connect(5, A, 1), connect(2, A, 2), connect(5, A, 3), create(6, A)],
        60,
        [(3, "joined", 2), (3, "joined", 1), (3, "joined", 3)],
    ),
    "a creation releases only its own process's connects": (
        [connect(1, A, 1), connect(1, B, 2), create(2, B)],
        60,
        [(2, "joined", 2), ("end", "unmatched", 1, AFTER_GRACE)],
    ),
    "without a grace an unknown process is unmatched at once, for good": (
        [connect(1, A, 1), create(2, A), connect(3, A, 2)],
        0,
        [(0, "unmatched", 1, PROCESS_UNKNOWN), (2, "joined", 2)],
    ),
    "the zero GUID never joins, with a grace": (
        [connect(1, ZERO_GUID, 1)],
        60,
        [(0, "unmatched", 1, NO_PROCESS_GUID)],
    ),
    "the zero GUID never joins, without a grace": (
        [connect(1, ZERO_GUID, 1)],
        0,
        [(0, "unmatched", 1, NO_PROCESS_GUID)],
    ),
    "a process that started more than the grace before does not wait": (
        [connect(600, A, 1), create(601, A)],
        60,
        [(0, "unmatched", 1, STARTED_BEFORE_GRACE)],
    ),
    "a waiting connect expires when stream time reaches its deadline": (
        [connect(0, A, 1), create(9.999, B), create(10, C), create(11, A)],
        10,
        [(2, "unmatched", 1, AFTER_GRACE)],
    ),
    "a creation at the deadline is joined before expiry runs": (
        [connect(0, A, 1), create(10, A)],
        10,
        [(1, "joined", 1)],
    ),
    "the deadline is stream time (the greatest event time) + the grace, not the event's time": (
        [create(20, B), connect(5, A, 1), create(29.999, C), create(30, C)],
        10,
        [(3, "unmatched", 1, AFTER_GRACE)],
    ),
    "an older event does not move stream time back": (
        [connect(0, A, 1), create(9, B), create(1, C), create(12, A)],
        10,
        [(3, "joined", 1)],
    ),
    "at the end of the file every waiting connect expires": (
        [connect(0, A, 1), connect(1, B, 2)],
        60,
        [("end", "unmatched", 1, AFTER_GRACE), ("end", "unmatched", 2, AFTER_GRACE)],
    ),
    "a termination is ignored: the row stays (no retention offline)": (
        [create(0, A), terminate(at(1), A), connect(2, A, 1)],
        60,
        [(2, "joined", 1)],
    ),
}


@pytest.mark.parametrize(("raws", "grace_s", "expected"), CASES.values(), ids=CASES.keys())
def test_join(raws: list[bytes], grace_s: int, expected: list[tuple[Any, ...]]) -> None:
    assert run(raws, grace_s) == expected


def test_joined_record_has_both_sides() -> None:
    join = OfflineJoin(60_000, 4)
    join.feed(event(create(0, A, image=POWERSHELL, parent_image=WMIPRVSE)))
    (joined,) = join.feed(event(connect(1, A, 443, image=POWERSHELL))).joined
    assert joined["process_guid"] == A
    assert joined["dst_ip_addr"] == "10.0.10.106"
    assert joined["dst_port"] == 443
    assert joined["process_command_line"] == f"{POWERSHELL} /run"
    assert joined["parent_process_path"] == WMIPRVSE
    assert join.waiting == 0


# --- ancestry ------------------------------------------------------------------------

# svchost (never created in the file) → WmiPrvSE (W) → cmd (C) → MSBuild (M) → connect.
SVC, W, CMD_GUID, M = guid(0x10), guid(0x11), guid(0x12), guid(0x13)
TREE = [
    create(0, W, image=WMIPRVSE, parent=SVC, parent_image=SVCHOST),
    create(1, CMD_GUID, image=CMD, parent=W, parent_image=WMIPRVSE),
    create(2, M, image=MSBUILD, parent=CMD_GUID, parent_image=CMD),
]


def hop(process: str, image: str) -> dict[str, Any]:
    return {
        "process_guid": process,
        "process_path": image,
        "process_command_line": f"{image} -parent",
    }


def joined_ancestry(raws: list[bytes], depth: int = 4) -> list[list[dict[str, Any]]]:
    join = OfflineJoin(60_000, depth)
    rows: list[Row] = []
    for raw in raws:
        rows += join.feed(event(raw)).joined
    return [row["process_ancestry"] for row in rows]


def test_ancestry_three_levels_nearest_first() -> None:
    # The walk stops at svchost: its own creation was never read, so the hop
    # above it is unknown (the link that names it comes from WmiPrvSE's creation).
    assert joined_ancestry([*TREE, connect(3, M, 443, image=MSBUILD)]) == [
        [hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)]
    ]


@pytest.mark.parametrize(("depth", "hops"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (64, 3)])
def test_ancestry_depth(depth: int, hops: int) -> None:
    full = [hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)]
    raws = [*TREE, connect(3, M, 443, image=MSBUILD)]
    assert joined_ancestry(raws, depth) == [full[:hops]]


def test_ancestry_is_what_was_known_when_the_connect_joined() -> None:
    # MSBuild's creation and a connect come first; cmd's and WmiPrvSE's
    # creations are read later. The first join knows only MSBuild's own link.
    m_create, c_create, w_create = TREE[2], TREE[1], TREE[0]
    raws = [
        m_create,
        connect(3, M, 1, image=MSBUILD),
        c_create,
        connect(4, M, 2, image=MSBUILD),
        w_create,
        connect(5, M, 3, image=MSBUILD),
    ]
    assert joined_ancestry(raws) == [
        [hop(CMD_GUID, CMD)],
        [hop(CMD_GUID, CMD), hop(W, WMIPRVSE)],
        [hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)],
    ]


def test_a_released_connect_gets_the_ancestry_known_at_its_release() -> None:
    raws = [TREE[0], TREE[1], connect(3, M, 1, image=MSBUILD), TREE[2]]
    assert joined_ancestry(raws) == [[hop(CMD_GUID, CMD), hop(W, WMIPRVSE), hop(SVC, SVCHOST)]]


# --- the alert record -------------------------------------------------------------------


def test_alert_record_is_the_sysmon_alerts_record() -> None:
    (rule,) = [rule for rule in load_rules() if rule.rule_id == WMI_RULE]
    enriched = {"process_guid": A, "process_ancestry": []}
    assert alert_record(rule, enriched, "2024-01-01T00:00:00.000Z") == {
        "rule_id": WMI_RULE,
        "rule_name": rule.rule_name,
        "attack_technique": "T1047",
        "severity": rule.severity,
        "detected_at": "2024-01-01T00:00:00.000Z",
        "event": enriched,
    }


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
            "alert_group",
        }  # fmt: skip
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


BAD_RULES = """\
rules:
  - id: my-new-rule
    name: A rule with a typo
    technique: T1047
    severity: high
    when:
      field: parent_proces_path
      ends_with: '\\\\wmiprvse.exe'
"""


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("how", ["--rules", "SYSMON_RULES"])
def test_cli_bad_rules_file(
    how: str,
    wmi_recording: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(BAD_RULES)
    args = ["test", str(wmi_recording)]
    if how == "--rules":
        args += ["--rules", str(rules)]
    else:
        monkeypatch.setenv("SYSMON_RULES", str(rules))
    assert rules_test.main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "my-new-rule" in err
    assert "parent_proces_path" in err
    assert "fix the rule or point --rules / SYSMON_RULES at another file" in err


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
