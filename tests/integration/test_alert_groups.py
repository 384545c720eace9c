"""Alert groups through a real worker: the Empire WMI recording's 33 matches are one alert.

The recording (../shared/datasets): PowerShell under WmiPrvSE.exe connects
33 times to 10.0.10.106:443 between 19:30:05.413 and 19:33:36.838 (211.4 s).
A window of 215 s holds them all and closes seconds after the last one (on
the default 600 s the same group closes ten minutes after its first match:
too long for a test). The right output comes from ``rules test``
on the same file (the offline run of the same grouping), and from the
matches themselves (the README's count: 33).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reference import shipped_rule_id
from tests.support import (
    SHORT_SESSION,
    WorkerProcess,
    create_topic,
    free_port,
    held_back_by_transactions,
    read_topic,
)

pytestmark = pytest.mark.integration

RECORDING = "empire_invoke_wmi_2019-03-19152813.jsonl.gz"
WMI = shipped_rule_id("sysmon-wmi-child-network-connect")
WINDOW = "215"  # the 33 matches span 211.4 s


def replay(env: dict[str, str], path: Path, *extra: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "replay", *extra, str(path)],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def offline(path: Path, window: str) -> list[dict[str, Any]]:
    """What ``rules test`` says the worker writes to sysmon-alerts."""
    done = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "rules", "test", "--json", "--window", window,
         str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["alert"] for line in done.stdout.splitlines()]


def comparable(alert: dict[str, Any]) -> tuple[Any, ...]:
    return (alert["rule_id"], alert["event"]["process_guid"], alert["event"]["dst_port"],
            json.dumps(alert["alert_group"], sort_keys=True))  # fmt: skip


def alerts(env: dict[str, str], expect: int, timeout: float = 120) -> list[dict[str, Any]]:
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_ALERTS"], expect, timeout, settle=3
    )
    return [r.json() for r in records]


def test_the_33_matches_are_one_alert_and_one_update(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / RECORDING
    env = pipeline_env() | {"SYSMON_ALERT_WINDOW": WINDOW}
    create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"])
    worker = worker_factory(env)
    replay(env, path)

    stats = worker.wait_for(lambda s: s["alert_group_updates"] >= 1, timeout=120)
    written = alerts(env, expect=2)
    wmi = [a for a in written if a["rule_id"] == WMI]
    first, update = wmi
    assert (first["alert_group"]["state"], first["alert_group"]["count"]) == ("open", 1)
    assert (update["alert_group"]["state"], update["alert_group"]["count"]) == ("closed", 33)
    assert update["alert_group"]["destinations"] == ["10.0.10.106:443"]
    assert update["alert_group"]["first_seen"] == "2019-03-19T19:30:05.413Z"
    assert update["alert_group"]["last_seen"] == "2019-03-19T19:33:36.838Z"
    # The same records as rules test's, and every match still in sysmon-join.
    assert sorted(map(comparable, written)) == sorted(map(comparable, offline(path, WINDOW)))
    assert (stats["alert_matches"], stats["alerts"], stats["alert_matches_grouped"]) == (33, 1, 32)
    joined = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_JOIN"], 33)
    assert len(joined) == 33


def test_without_a_window_every_match_alerts(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / RECORDING
    env = pipeline_env() | {"SYSMON_ALERT_WINDOW": "0"}
    create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"])
    worker = worker_factory(env)
    replay(env, path)
    worker.wait_for(lambda s: s["alerts"] >= 33, timeout=120)
    written = [a for a in alerts(env, expect=33) if a["rule_id"] == WMI]
    assert len(written) == 33
    assert {(a["alert_group"]["state"], a["alert_group"]["count"]) for a in written} == {
        ("closed", 1)
    }
    assert sorted(map(comparable, written)) == sorted(map(comparable, offline(path, "0")))


def _what_held_it_back(env: dict[str, str], worker: WorkerProcess) -> str:
    """For a failure's message: what open transactions hold back in the re-keying topic,
    and /health; what cannot be asked (a dead worker, no broker) says so instead."""
    topic = f"{env['SYSMON_APP_ID']}-events-by-process-guid"
    found = []
    try:
        held = held_back_by_transactions(
            env["KAFKA_BOOTSTRAP_SERVERS"], topic, int(env["SYSMON_PARTITIONS"])
        )
        found.append(f"records held back by open transactions in {topic}: {held}")
    except Exception as exc:
        found.append(f"records held back in {topic}: not known ({exc!r})")
    try:
        found.append(f"/health: {worker.http('/health')}")
    except Exception as exc:
        found.append(f"/health: not known ({exc!r})")
    return "\n".join(found)


def test_nothing_doubles_across_a_sigkill_under_exactly_once(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / RECORDING
    env = pipeline_env() | SHORT_SESSION | {
        "SYSMON_ALERT_WINDOW": WINDOW, "SYSMON_PROCESSING_GUARANTEE": "exactly_once"
    }  # fmt: skip
    create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"])
    port = free_port()  # the same port again: the restarted worker finds its state
    worker = worker_factory(env, web_port=port)
    # Slowly (~5 s), so that the kill lands inside the group's window.
    replaying = subprocess.Popen(
        [sys.executable, "-m", "sysmon_faust", "replay", "--rate", "1000", str(path)],
        env={**env, "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        stats = worker.wait_for(lambda s: s["alerts"] >= 1, timeout=120)
        assert stats["alert_group_updates"] == 0, "the kill must come inside the window"
        time.sleep(0.5)
        worker.stop(signal.SIGKILL)
        worker = worker_factory(env, web_port=port)
        assert replaying.wait(timeout=120) == 0
    finally:
        replaying.kill()
    try:
        worker.wait_for(lambda s: s["alert_group_updates"] >= 1, timeout=180)
    except AssertionError as failed:
        # Seen once in CI (2026-12-04; 11 runs of this module here passed since): no
        # update in 180 s, nothing logged after the restart. The group closes once its
        # partition's stream time passes the window, moved on by ticks: did an open
        # transaction hold the re-keying topic back, ticks included?
        raise AssertionError(f"{failed}\n{_what_held_it_back(env, worker)}") from None
    written = [a for a in alerts(env, expect=2) if a["rule_id"] == WMI]  # read_committed
    states = sorted((a["alert_group"]["state"], a["alert_group"]["count"]) for a in written)
    assert states == [("closed", 33), ("open", 1)], states
