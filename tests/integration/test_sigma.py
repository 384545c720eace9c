"""Sigma through the real worker and broker: SigmaHQ's regression cases, and the join's context.

* A subset of SigmaHQ's regression cases (one or two per Sysmon category)
  replayed into a worker that loaded the whole Windows corpus: each case's
  rule fires ``match_count`` times (from its ``info.yml``). All 145 cases run
  through ``rules test`` in tests/unit/cli/test_rules_test_sigma_regression.py.
* On the Empire WMI recording, a ``network_connection`` rule on
  ``ParentImage`` (HELK's detection, written in Sigma) and one on
  ``AncestorImage`` both fire on the 33 PowerShell connects — fields a
  connect does not carry, only the join gives them; a refused rule is
  counted and the others run.

``pipeline_env`` alerts on every match (``SYSMON_ALERT_WINDOW=0``).
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.reference import shipped_rule_id
from tests.support import (
    DATASETS,
    SHARED,
    SIGMA_CORPUS,
    WorkerProcess,
    read_topic,
    run_recording,
)

pytestmark = pytest.mark.integration

REGRESSION = SHARED / "sigma" / "regression_data" / "rules" / "windows"
#: One case or two per category: their rules fire on no other case of the set.
CASES = (
    "proc_creation_win_certutil_download",
    "proc_creation_win_bitsadmin_download",
    "image_load_side_load_vcruntime140",
    "proc_access_win_werfaultsecure_msmpeng_access",
    "file_event_win_taskmgr_lsass_dump",
    "registry_set_amsi_disable",
    "registry_delete_runmru",
    "registry_event_add_local_hidden_user",
    "sysmon_config_modification",
)


def json_documents(path: Path) -> list[dict]:
    """The evtx-JSON documents of a case file (concatenated, not one per line)."""
    text, decoder, position, documents = (
        path.read_text(encoding="utf-8-sig"),
        json.JSONDecoder(),
        0,
        [],
    )
    while (position := len(text) - len(text[position:].lstrip())) < len(text):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents


def test_sigmahq_regression_cases_through_the_worker(
    tmp_path: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    if not REGRESSION.is_dir():
        pytest.skip(f"{REGRESSION} not found (set SYSMON_SHARED_DIR to the shared/ folder)")
    expected: Counter[str] = Counter()
    lines = []
    for name in CASES:
        (case,) = REGRESSION.rglob(name)
        meta = yaml.safe_load((case / "info.yml").read_text(encoding="utf-8"))
        test = meta["regression_tests_info"][0]
        expected[str(meta["rule_metadata"][0]["id"])] += test.get("match_count", 1)
        events = case / (Path(test["path"]).stem + ".json")
        lines += [json.dumps(document) for document in json_documents(events)]
    recording = tmp_path / "regression-subset.jsonl"
    recording.write_text("\n".join(lines) + "\n", encoding="utf-8")

    env = {**pipeline_env(), "SYSMON_RULES": str(SIGMA_CORPUS)}
    worker, _ = run_recording(recording, env, worker_factory)
    stats = worker.wait_for(lambda s: s["alerts"] >= expected.total(), timeout=120)
    assert stats["sigma_rules_loaded"] > 1800 and stats["sigma_rules_refused"] == 0
    assert {rule: stats["alerts_by_rule"].get(rule, 0) for rule in expected} == dict(expected)
    alerts = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_ALERTS"],
                        expect=stats["alerts"])  # fmt: skip
    by_rule = {alert["rule_id"]: alert for alert in (r.json() for r in alerts)}
    certutil = by_rule["19b08b1c-861d-4e75-a1ef-ea0c1baf202b"]
    assert certutil["logsource_category"] == "process_creation" and certutil["event_id"] == 1
    assert certutil["rule_author"] and certutil["rule_status"]
    assert certutil["severity"] in ("low", "medium", "high", "critical")


PARENT_RULE = """\
title: Network connection of a process whose parent is WmiPrvSE.exe (HELK's detection)
id: 7e0f4d0a-3c1b-4f51-9a41-2b9d7c3e5a01
author: test
tags: [attack.t1047]
logsource: {product: windows, category: network_connection}
detection:
    selection: {ParentImage|endswith: '\\WmiPrvSE.exe'}
    condition: selection
level: high
"""
ANCESTOR_RULE = PARENT_RULE.replace("whose parent is", "with among its ancestors").replace(
    "5a01", "5a02").replace("ParentImage", "AncestorImage")  # fmt: skip
REFUSED_RULE = PARENT_RULE.replace("5a01", "5a03").replace(
    "|endswith: '\\WmiPrvSE.exe'", "|expand: '%wmi_provider_hosts%'")  # fmt: skip


def test_parent_and_ancestor_rules_fire_on_the_empire_wmi_connects(
    tmp_path: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    recording = DATASETS / "empire_invoke_wmi_2019-03-19152813.jsonl.gz"
    if not recording.exists():
        pytest.skip(f"{recording} not found (set SYSMON_SHARED_DIR to the shared/ folder)")
    mine = tmp_path / "rules"
    mine.mkdir()
    for name, text in (("parent", PARENT_RULE), ("ancestor", ANCESTOR_RULE),
                       ("refused", REFUSED_RULE)):  # fmt: skip
        (mine / f"{name}.yml").write_text(textwrap.dedent(text), encoding="utf-8")
    env = {**pipeline_env(), "SYSMON_RULES": f"default,{mine}"}
    worker, _ = run_recording(recording, env, worker_factory)
    stats = worker.wait_for(lambda s: s["alerts"] >= 3 * 33, timeout=120)
    assert stats["sigma_rules_loaded"] == 9 and stats["sigma_rules_refused"] == 1
    assert stats["alerts_by_rule"] == {
        "7e0f4d0a-3c1b-4f51-9a41-2b9d7c3e5a01": 33,
        "7e0f4d0a-3c1b-4f51-9a41-2b9d7c3e5a02": 33,
        shipped_rule_id("sysmon-wmi-child-network-connect"): 33,
    }
    alerts = [r.json() for r in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"],
                                           env["SYSMON_TOPIC_ALERTS"], expect=99)]  # fmt: skip
    parent = [a for a in alerts if a["rule_id"].endswith("5a01")]
    assert len(parent) == 33
    for alert in parent:
        event = alert["event"]
        assert event["parent_process_path"].lower().endswith("\\wmiprvse.exe")
        assert event["process_path"].lower().endswith("\\powershell.exe")
        assert (event["dst_ip_addr"], event["dst_port"]) == ("10.0.10.106", 443)
        assert alert["logsource_category"] == "network_connection"
    assert "rule 7e0f4d0a-3c1b-4f51-9a41-2b9d7c3e5a03: " in worker.log_tail(400)
