"""``rules test`` on the real recordings of ../shared/datasets, with the shipped rules.

No broker: the offline tool is pure Python. What must fire is worked out from
the data, independently of the code (tests/reference.py reads the raw files
with stdlib json), or read from ../shared/datasets/README.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sysmon_faust.cli.rules_test import (
    DEFAULT_DEPTH,
    DEFAULT_GRACE_S,
    Detection,
    FileReport,
    check_file,
)
from sysmon_faust.core.sigma.ruleset import load
from sysmon_faust.settings import DEFAULT_RULES
from tests.reference import (
    RECORDINGS,
    compute,
    network_identity,
    output_identity,
    readme_counts,
    shipped_rule_id,
)
from tests.support import DATASETS, REPO

WMI = shipped_rule_id("sysmon-wmi-child-network-connect")
PSREMOTING = shipped_rule_id("sysmon-psremoting-network-connect")
SIGNED_BINARY_PROXY = shipped_rule_id("sysmon-signed-binary-proxy-network-connect")

WMI_RECORDING = "empire_invoke_wmi_2019-03-19152813"
EXEC_METHOD_RECORDING = "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod_2020-09-21001437"
PSREMOTING_RECORDING = "empire_invoke_psremoting_2019-05-18211456"
INSTALLUTIL_RECORDING = "covenant_installutil_2019-10-27223020"
LSASS_RECORDING = "remoteinteractive_taskmngr_lsass_dump_2019-10-27055035"


@dataclass(frozen=True)
class Checked:
    report: FileReport
    detections: list[Detection]

    def fired(self, rule_id: str) -> list[dict[str, Any]]:
        """The enriched events ``rule_id`` fired on."""
        return [d.alert["event"] for d in self.detections if d.rule.rule_id == rule_id]


def path_of(name: str) -> Path:
    return DATASETS / f"{name}.jsonl.gz"


def readme_name(name: str) -> str:
    return name.rsplit("_", 1)[0]  # the README's table drops the recording's date


@pytest.fixture(scope="module")
def checked() -> dict[str, Checked]:
    """Every recording through ``rules test``'s pipeline, with the defaults of the worker."""
    if not DATASETS.is_dir():
        pytest.skip(
            f"recordings not found at {DATASETS} (set SYSMON_SHARED_DIR to the shared/ folder)"
        )
    rules = load([DEFAULT_RULES])
    results = {}
    for name in RECORDINGS:
        detections: list[Detection] = []
        # Every match on its own (window 0): these tests are about the rules.
        report = check_file(
            path_of(name), rules, DEFAULT_GRACE_S * 1000, DEFAULT_DEPTH, detections.append,
            window_ms=0,
        )  # fmt: skip
        results[name] = Checked(report, detections)
    return results


@pytest.fixture(scope="module")
def readme(checked: dict[str, Checked]) -> dict[str, dict[str, int]]:
    # After ``checked``, which skips when the recordings are absent.
    return readme_counts(DATASETS / "README.md")


@pytest.mark.parametrize("name", RECORDINGS)
def test_counts_are_the_readme_table(
    name: str, checked: dict[str, Checked], readme: dict[str, dict[str, int]]
) -> None:
    report = checked[name].report
    expected = readme[readme_name(name)]
    assert report.invalid == 0
    assert report.events == expected["events"]
    assert report.sysmon == expected["sysmon"]
    assert report.creates == expected["process_creates"]
    assert report.joined == expected["joined"]
    assert report.unmatched.total() == expected["unmatched"]


def test_joined_counts(checked: dict[str, Checked]) -> None:
    # The README's "joined (sysmon-join)" column, in RECORDINGS order.
    assert [checked[name].report.joined for name in RECORDINGS] == [33, 31, 1, 13, 1]


def test_wmi_rule_fires_on_the_wmi_recordings_only(
    checked: dict[str, Checked], readme: dict[str, dict[str, int]]
) -> None:
    fired = {name: len(checked[name].fired(WMI)) for name in RECORDINGS}
    assert fired == {
        WMI_RECORDING: 33,
        PSREMOTING_RECORDING: 0,
        INSTALLUTIL_RECORDING: 0,
        LSASS_RECORDING: 0,
        EXEC_METHOD_RECORDING: 1,
    }
    # The README's "WmiPrvSE-parent alerts" column says the same.
    assert fired == {name: readme[readme_name(name)]["alerts"] for name in RECORDINGS}
    # And so does the independent reference: the joined connects of processes
    # whose creation names WmiPrvSE.exe as the parent.
    assert fired == {name: compute(path_of(name)).wmi_alerts for name in RECORDINGS}


def test_wmi_alerts_are_powershell_to_the_c2(checked: dict[str, Checked]) -> None:
    # README: "33 (powershell.exe on HFDC01 to 10.0.10.106:443)".
    events = checked[WMI_RECORDING].fired(WMI)
    assert {
        (e["process_name"], e["host_name"].split(".")[0], e["dst_ip_addr"], e["dst_port"])
        for e in events
    } == {("powershell.exe", "HFDC01", "10.0.10.106", 443)}


def identities(events: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(output_identity(event) for event in events)


def test_psremoting_rule_fires_on_the_processes_under_wsmprovhost(
    checked: dict[str, Checked],
) -> None:
    # Independently: the connects that join (a creation came earlier) and
    # whose creation's ParentImage is wsmprovhost.exe.
    expected = Counter(
        network_identity(connect)
        for connect, create in compute(path_of(PSREMOTING_RECORDING)).joined
        if str(create.get("ParentImage", "")).lower().endswith("\\wsmprovhost.exe")
    )
    fired = checked[PSREMOTING_RECORDING].fired(PSREMOTING)
    assert expected.total() == 29
    assert identities(fired) == expected
    assert {event["process_name"].lower() for event in fired} == {"powershell.exe"}
    for name in RECORDINGS:
        if name != PSREMOTING_RECORDING:
            assert checked[name].fired(PSREMOTING) == []


def test_signed_binary_proxy_rule_fires_on_the_installutil_connect(
    checked: dict[str, Checked],
) -> None:
    expected = Counter(
        network_identity(connect)
        for connect, _ in compute(path_of(INSTALLUTIL_RECORDING)).joined
        if str(connect.get("Image", "")).lower().endswith("\\installutil.exe")
    )
    fired = checked[INSTALLUTIL_RECORDING].fired(SIGNED_BINARY_PROXY)
    assert expected.total() == 1
    assert identities(fired) == expected
    for name in RECORDINGS:
        if name != INSTALLUTIL_RECORDING:
            assert checked[name].fired(SIGNED_BINARY_PROXY) == []


def test_nothing_fires_on_the_lsass_dump(checked: dict[str, Checked]) -> None:
    assert checked[LSASS_RECORDING].detections == []
    assert checked[LSASS_RECORDING].report.alerts.total() == 0


def test_alerts_are_counted_by_rule(checked: dict[str, Checked]) -> None:
    for result in checked.values():
        assert result.report.alerts == Counter(d.rule.rule_id for d in result.detections)


def test_the_command_line_on_all_recordings(checked: dict[str, Checked]) -> None:
    files = [str(path_of(name)) for name in RECORDINGS]
    # The shipped rules and the defaults, whatever the caller's shell sets.
    env = {name: value for name, value in os.environ.items() if not name.startswith("SYSMON_")}
    done = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "rules", "test", "--json", "--window", "0", *files],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert Counter((line["file"], line["rule_id"]) for line in lines) == Counter(
        {
            (str(path_of(WMI_RECORDING)), WMI): 33,
            (str(path_of(EXEC_METHOD_RECORDING)), WMI): 1,
            (str(path_of(PSREMOTING_RECORDING)), PSREMOTING): 29,
            (str(path_of(INSTALLUTIL_RECORDING)), SIGNED_BINARY_PROXY): 1,
        }
    )
    for line in lines:
        alert = line["alert"]
        assert alert["rule_id"] == line["rule_id"]
        assert alert["event"]["process_guid"] == line["process_guid"]
        assert alert["detected_at"].endswith("Z")
    # The alerts of the subprocess are those of the in-process run, event for event.
    for name in RECORDINGS:
        in_process = identities(checked[name].fired(PSREMOTING) + checked[name].fired(WMI))
        from_cli = identities(
            [
                line["alert"]["event"]
                for line in lines
                if line["file"] == str(path_of(name)) and line["rule_id"] in (PSREMOTING, WMI)
            ]
        )
        assert from_cli == in_process
    assert "== total: 5 file(s)" in done.stderr


def test_the_33_wmi_alerts_are_one_group_by_default(checked: dict[str, Checked]) -> None:
    # Issue 17: 33 alerts for one process's 33 connections flood an analyst.
    # With the default window (10 min), rules test writes what the worker
    # writes: the first alert at once, then one update with the count.
    env = {name: value for name, value in os.environ.items() if not name.startswith("SYSMON_")}
    done = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "rules", "test", "--json",
         str(path_of(WMI_RECORDING))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, update = (json.loads(line)["alert"] for line in done.stdout.splitlines())
    matches = checked[WMI_RECORDING].fired(WMI)
    assert (first["alert_group"]["state"], first["alert_group"]["count"]) == ("open", 1)
    group = update["alert_group"]
    assert len(matches) == 33
    assert (group["state"], group["count"]) == ("closed", 33)
    assert group["destinations"] == ["10.0.10.106:443"]
    times = sorted(event["event_date_creation"] for event in matches)
    assert (group["first_seen"], group["last_seen"]) == (times[0], times[-1])
    assert "alerts: 33 matches in 1 group(s)" in done.stderr
