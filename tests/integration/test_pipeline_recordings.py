"""The pipeline on real attack recordings, end to end: replay → worker → output topics.

Expected results come from tests/reference.py (an independent computation over
the raw file) and from the counts in ../shared/datasets/README.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sysmon_faust.core.records import ProcessRow, record_fields
from tests.reference import (
    RECORDINGS,
    Expected,
    compute,
    enriched_expected,
    enriched_identity,
    epoch_ms,
    expected_alerts,
    guid,
    network_identity,
    output_identity,
    readme_counts,
    shipped_rule_id,
    sysmon_value,
)
from tests.support import Record, WorkerProcess, read_topic, run_recording


def process_side(create: dict[str, Any]) -> dict[str, Any]:
    return {
        "process_command_line": sysmon_value(create, "CommandLine"),
        "process_current_directory": sysmon_value(create, "CurrentDirectory"),
        "process_integrity_level": sysmon_value(create, "IntegrityLevel"),
        "hashes": sysmon_value(create, "Hashes"),
        "user_logon_id": sysmon_value(create, "LogonId"),
        "parent_process_guid": guid(create.get("ParentProcessGuid", "")) or None,
        "parent_process_path": sysmon_value(create, "ParentImage"),
        "parent_process_command_line": sysmon_value(create, "ParentCommandLine"),
    }


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_joins_like_the_reference(
    name: str,
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / f"{name}.jsonl.gz"
    # A short grace: a Sysmon 10's target created just after the event
    # (Defender does that) is found, and what waits in vain is out in seconds.
    expected: Expected = compute(path, grace_ms=5_000)
    counts = readme_counts(datasets_dir / "README.md")[name.rsplit("_", 1)[0]]
    env = pipeline_env(partitions=4)
    env["SYSMON_JOIN_GRACE"] = "5"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]

    worker, stats = run_recording(path, env, worker_factory)
    # What waits for a creation that never comes is out after the grace (every
    # waiting event, connects included, is also one sysmon-enriched record).
    stats = worker.wait_for(lambda s: s["enriched"] >= len(expected.enriched), timeout=60)

    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"])]
    alerts = read_topic(bootstrap, env["SYSMON_TOPIC_ALERTS"], stats["alerts"])
    unmatched = read_topic(bootstrap, env["SYSMON_TOPIC_UNMATCHED"], stats["unmatched"])

    # The counts of the datasets README, and the reference's.
    assert stats["consumed"] == counts["events"] == expected.events
    assert stats["consumed"] - stats["filtered_by_reason"].get("not_sysmon", 0) == counts["sysmon"]
    assert stats["process_creates"] == len(expected.process_creates) == counts["process_creates"]
    assert len(joined) == len(expected.joined) == counts["joined"]
    assert len(unmatched) == len(expected.unmatched) == counts["unmatched"]
    wanted_alerts = expected_alerts(expected)
    assert len(alerts) == wanted_alerts.total()
    wmi_rule = shipped_rule_id("sysmon-wmi-child-network-connect")
    # The WMI rule looks at every ancestor; in these recordings that finds
    # exactly the README's WmiPrvSE-parent connects.
    assert sum(n for (rule, _), n in wanted_alerts.items() if rule == wmi_rule) == counts["alerts"]
    assert stats["dead_lettered"] == 0
    assert stats["table_rows"] == counts["process_creates"]
    # Sysmon 5 marks the rows of the processes that ended (and deletes nothing).
    assert stats["process_terminates"] == expected.terminates
    assert stats["process_terminates"] - stats["terminated_unknown"] == len(expected.terminated)
    for ended, utc_time in list(expected.terminated.items())[:3]:
        status, row = worker.http(f"/process/{ended}")
        assert status == 200, row
        assert row["process_terminated_at"] == utc_time.replace(" ", "T") + "Z"
    running = next(iter(set(expected.process_creates) - set(expected.terminated)))
    status, row = worker.http(f"/process/{running}")
    assert status == 200 and row["process_terminated_at"] is None
    assert list(row) == record_fields(ProcessRow)

    # sysmon-enriched: every event of an id that names a process, once, with
    # its own fields and its process's (grace 0: known before it, or not).
    enriched = read_topic(bootstrap, env["SYSMON_TOPIC_ENRICHED"], stats["enriched"])
    assert len(enriched) == len(expected.enriched) == stats["enriched"]
    assert Counter(enriched_identity(r.json()) for r in enriched) == Counter(
        map(enriched_expected, expected.enriched)
    )
    for record in enriched:
        assert record.key == (record.json()["process_guid"] or "").encode() or record.key is None

    # Same network events, same process fields.
    assert Counter(map(output_identity, joined)) == Counter(
        network_identity(connect) for connect, _ in expected.joined
    )
    by_identity = {network_identity(c): process_side(p) for c, p in expected.joined}
    for record in joined:
        want = by_identity[output_identity(record)]
        assert {k: record[k] for k in want} == want
    assert Counter(output_identity(r.json()) for r in unmatched) == Counter(
        network_identity(c) for c in expected.unmatched
    )
    assert all(r.json()["unmatched_reason"] for r in unmatched)

    # Keys are the canonical GUID, record timestamps the event time.
    for record in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"], settle=0):
        value = record.json()
        assert record.key == value["process_guid"].encode()
        assert record.timestamp_ms == epoch_ms(value["event_date_creation"][:-1].replace("T", " "))

    # Each joined event carries the ancestry its file names before it.
    ancestry = {
        network_identity(connect): chain
        for (connect, _), chain in zip(expected.joined, expected.joined_ancestry, strict=True)
    }
    for record in joined:
        assert record["process_ancestry"] == ancestry[output_identity(record)]

    # The alerts are the default rules' on the joined events, and nothing else.
    assert (
        Counter(
            (alert["rule_id"], output_identity(alert["event"]))
            for alert in map(Record.json, alerts)
        )
        == wanted_alerts
    )
    for alert in map(Record.json, alerts):
        assert alert["attack_technique"] and alert["rule_name"] and alert["severity"]
        assert alert["detected_at"] and alert["event"]["process_ancestry"] is not None
