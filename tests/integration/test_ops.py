"""The operator commands (topics, print, describe) against the test broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.reference import compute, lines
from tests.support import WorkerProcess, create_topic, partition_counts, produce

RECORDING = "covenant_installutil_2019-10-27223020.jsonl.gz"


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sysmon_faust", *args],
        env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_topics_print_and_describe_show_what_the_topics_hold(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / RECORDING
    expected = compute(path)
    env = pipeline_env(partitions=2)
    create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"], partitions=1)
    worker = worker_factory(env)
    values = lines(path)
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"], values)
    worker.wait_for(lambda s: s["consumed"] >= len(values) and s["joined"] == len(expected.joined))

    # topics: every topic of the app, with end offsets and (once committed) no lag.
    deadline = time.monotonic() + 60
    while True:
        shown = command(env, "topics")
        assert shown.returncode == 0, shown.stderr
        rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:-1]}
        input_row = rows[env["SYSMON_TOPIC_INPUT"]]
        if input_row[-1] == "0" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert input_row[-3:] == [str(len(values)), str(len(values)), "0"], shown.stdout
    assert rows[env["SYSMON_TOPIC_JOIN"]][-3] == str(len(expected.joined))
    assert rows[env["SYSMON_TOPIC_UNMATCHED"]][-3] == str(len(expected.unmatched))
    assert f"{env['SYSMON_APP_ID']}-process-create-changelog" in rows

    # print: keys, timestamps, values, one per line when not on a terminal.
    printed = command(env, "print", env["SYSMON_TOPIC_JOIN"], "--from-beginning", "--limit", "5")
    assert printed.returncode == 0, printed.stderr
    out = printed.stdout.splitlines()
    assert len(out) == len(expected.joined) == 1
    _position, stamp, key, value = out[0].split(" ", 3)
    record = json.loads(value)
    assert key == f"key={record['process_guid']}"
    assert stamp.startswith(record["event_date_creation"][:19])
    assert record["process_command_line"] == expected.joined[0][1]["CommandLine"]
    head = command(env, "print", env["SYSMON_TOPIC_INPUT"], "--from-beginning", "--limit", "3")
    assert [json.loads(line.split(" ", 3)[3]) for line in head.stdout.splitlines()] == [
        json.loads(v) for v in values[:3]
    ]
    # Without --from-beginning: the last records (10 unless --last says), and it says so.
    tail = command(env, "print", env["SYSMON_TOPIC_INPUT"])
    assert [json.loads(line.split(" ", 3)[3]) for line in tail.stdout.splitlines()] == [
        json.loads(v) for v in values[-10:]
    ]
    assert f"the last 10 of {len(values):,} records" in tail.stderr
    two = command(env, "print", env["SYSMON_TOPIC_INPUT"], "--last", "2")
    assert len(two.stdout.splitlines()) == 2 and "the last 2 of" in two.stderr
    missing = f"{env['SYSMON_APP_ID']}-no-such-topic"
    assert command(env, "print", missing).returncode == 1
    assert missing not in partition_counts(env["KAFKA_BOOTSTRAP_SERVERS"], [missing])

    # describe: record types with their fields and types, topics with their policy.
    described = command(env, "describe")
    assert described.returncode == 0, described.stderr
    text = described.stdout
    for name in (
        "ProcessCreate",
        "NetworkConnect",
        "EnrichedNetworkConnect",
        "Alert",
        "DeadLetter",
    ):
        assert name in text
    assert "dst_port" in text and "int | None" in text
    changelog_topic = f"{env['SYSMON_APP_ID']}-process-create-changelog"
    changelog = next(line for line in text.splitlines() if line.startswith(changelog_topic))
    assert "compact" in changelog
