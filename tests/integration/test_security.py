"""Against a secured Kafka: a second local broker with a SASL_PLAINTEXT listener and SCRAM users.

The listener offers SCRAM-SHA-256 and SCRAM-SHA-512 only, so a client whose
mechanism got lost on the way (a PLAIN login) is refused, not let in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import events
from tests.support import (
    REPO,
    WorkerProcess,
    free_port,
    kafka_security,
    produce,
    read_topic,
    sysmon_env,
)

USER = "alice"
PASSWORD = "alice-Secret.1"
WRONG_PASSWORD = "not-alice-Secret"


@dataclass(frozen=True)
class Broker:
    sasl: str  # host:port of the SASL_PLAINTEXT listener
    plaintext: str  # host:port of its PLAINTEXT listener


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[Broker]:
    """A broker of this module's own, with a SASL_PLAINTEXT listener and a SCRAM user."""
    if shutil.which("java") is None:
        pytest.skip("needs Java to start a local broker with a SASL listener")
    port = free_port()
    sasl_port = free_port()
    while sasl_port == port:
        sasl_port = free_port()
    data_dir = REPO / ".kafka-test" / f"sasl-broker-{port}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_DATA_DIR": str(data_dir),
        "KAFKA_SASL_PORT": str(sasl_port),
        "KAFKA_SASL_USERS": f"{USER}:{PASSWORD}",
        "KAFKA_SASL_MECHANISMS": "SCRAM-SHA-256,SCRAM-SHA-512",
    }
    script = str(REPO / "kafka" / "kafka.sh")
    started = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, (
            f"could not start the SASL broker:\n{started.stdout}\n{started.stderr}"
        )
        yield Broker(sasl=f"127.0.0.1:{sasl_port}", plaintext=f"127.0.0.1:{port}")
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def secured_env(
    sasl_broker: Broker, unique_name: Callable[[str], str], tmp_path: Path
) -> Callable[..., dict[str, str]]:
    """Factory: the settings of one isolated pipeline on the SASL listener."""

    def make(mechanism: str, password: str = PASSWORD) -> dict[str, str]:
        prefix = unique_name("sf")
        return {
            **sysmon_env(sasl_broker.sasl, prefix, tmp_path / prefix / "data", partitions=2),
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": password,
        }

    return make


def test_worker_with_the_right_password_joins_over_sasl(
    secured_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = secured_env("SCRAM-SHA-256")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    security = kafka_security(env)
    worker = worker_factory(env)  # healthy: Faust's clients, the intake's and the admin's got in

    guid = events.guid(7)
    produce(
        bootstrap,
        env["SYSMON_TOPIC_INPUT"],
        [
            events.create("2026-01-05 10:00:00.000", guid),
            events.connect("2026-01-05 10:00:01.000", guid, 445),
        ],
        security=security,
    )
    worker.wait_for(lambda s: s["joined"] >= 1, timeout=90)

    joined = read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], expect=1, security=security)
    assert [(r.key, r.json()["dst_port"]) for r in joined] == [(guid.encode(), 445)]
    assert joined[0].json()["process_command_line"] == "cmd.exe /c whoami"
    log = worker.log_path.read_text(errors="replace")
    assert f"Authenticated as {USER} via SCRAM-SHA-256" in log
    assert "kafka_sasl_password=(set)" in log
    assert PASSWORD not in log


def test_worker_with_a_wrong_password_stops_at_once_and_says_why(
    secured_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = secured_env("SCRAM-SHA-512", password=WRONG_PASSWORD)
    started = time.monotonic()
    worker = worker_factory(env, wait=False)
    try:
        code = worker.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running after 60 s with a wrong password:\n{worker.log_tail()}")
    took = time.monotonic() - started

    assert code != 0
    assert took < 60
    log = worker.log_path.read_text(errors="replace")
    expected = (
        f"sysmon-faust: Kafka at {env['KAFKA_BOOTSTRAP_SERVERS']} refused the credentials of "
        f"KAFKA_SASL_USERNAME={USER} (SCRAM-SHA-512): check KAFKA_SASL_PASSWORD"
    )
    # The last line (stderr, as for a bad setting), and once more in the log proper.
    assert log.rstrip().splitlines()[-1].startswith(expected), worker.log_tail()
    assert sum(expected in line for line in log.splitlines()) == 2, worker.log_tail()
    assert "Traceback" not in log
    assert WRONG_PASSWORD not in log


def _ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sysmon_faust", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_operator_commands_use_the_credentials(
    secured_env: Callable[..., dict[str, str]], sasl_broker: Broker
) -> None:
    env = secured_env("SCRAM-SHA-512")
    topic = env["SYSMON_TOPIC_INPUT"]
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic, [b'{"n": 1}'], security=kafka_security(env))
    printed = _ops(env, "print", topic, "--from-beginning", "--limit", "1")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.rstrip().endswith('{"n": 1}'), printed.stdout

    refused = f"print: Kafka at {env['KAFKA_BOOTSTRAP_SERVERS']} refused the credentials of "
    wrong = _ops({**env, "KAFKA_SASL_PASSWORD": WRONG_PASSWORD}, "print", topic)
    assert wrong.returncode == 1
    last = wrong.stderr.strip().splitlines()[-1]
    assert last.startswith(refused + f"KAFKA_SASL_USERNAME={USER} (SCRAM-SHA-512)"), wrong.stderr

    # PLAIN is not offered by this listener: said so, not "unable to bootstrap".
    plain = _ops({**env, "KAFKA_SASL_MECHANISM": "PLAIN"}, "print", topic)
    assert plain.returncode == 1
    assert "does not offer KAFKA_SASL_MECHANISM=PLAIN" in plain.stderr, plain.stderr

    # SASL settings, but the PLAINTEXT port.
    other_port = _ops({**env, "KAFKA_BOOTSTRAP_SERVERS": sasl_broker.plaintext}, "print", topic)
    assert other_port.returncode == 1
    assert "does not expect SASL on this port" in other_port.stderr, other_port.stderr
