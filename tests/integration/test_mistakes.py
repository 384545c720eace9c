"""Each mistake a user makes, through every command it applies to: one line, no traceback.

Each case runs a real command as a subprocess — the worker
(``faust -A sysmon_faust worker``), ``replay``, ``topics``, ``print``,
``describe``, ``rules test`` and the demo — with one mistake in its settings,
arguments or surroundings, and requires: a non-zero exit; no traceback
anywhere in what it printed; and one line that names the cause (``names``).
For the commands that one line is all of stderr; for the worker (whose
banner and start-up log come first) and the demo (whose progress goes to
stdout) it is the last line they printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import FAUST, create_topic, free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Mistake:
    name: str
    #: What the one line must contain.
    names: str
    #: Environment changes (values may name "{tmp}", "{input}", "{topic}").
    env: dict[str, str] = field(default_factory=dict)
    #: command → its arguments ("{tmp}", "{recording}" ... filled in).
    commands: dict[str, list[str]] = field(default_factory=dict)


EVERY_COMMAND = {
    "worker": [], "replay": ["{recording}"], "topics": [], "print": ["{topic}"],
    "describe": [], "rules test": ["{recording}"], "demo": [],
}  # fmt: skip
KAFKA_COMMANDS = {k: v for k, v in EVERY_COMMAND.items() if k != "rules test"}

MISTAKES = [
    Mistake("a setting that is no number", "SYSMON_PARTITIONS='many' is not an integer",
            {"SYSMON_PARTITIONS": "many"}, EVERY_COMMAND),
    Mistake("a bootstrap address without a port", "KAFKA_BOOTSTRAP_SERVERS='localhost'",
            {"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, KAFKA_COMMANDS),
    Mistake("two settings naming one topic", "SYSMON_TOPIC_DLQ='{topic}' is the same topic",
            {"SYSMON_TOPIC_DLQ": "{topic}"},
            {"worker": [], "topics": [], "replay": ["{recording}"]}),
    Mistake("no broker at the address", "Kafka at 127.0.0.1:{dead_port}",
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:{dead_port}"}, KAFKA_COMMANDS),
    Mistake("a rules file that is not there", "SYSMON_RULES='{tmp}/no-such-rules.yaml'",
            {"SYSMON_RULES": "{tmp}/no-such-rules.yaml"},
            {"worker": [], "rules test": ["{recording}"]}),
    Mistake("a rules setting that names no rules", "names no rules",
            {"SYSMON_RULES": " , "},
            {"worker": [], "rules test": ["{recording}"]}),
    Mistake("a state folder that is a file", "SYSMON_DATA_DIR='{tmp}/a-file/data'",
            {"SYSMON_DATA_DIR": "{tmp}/a-file/data"}, {"worker": []}),
    Mistake("a web port another process holds", "web port {busy_port} on 127.0.0.1 is in use",
            {"SYSMON_WEB_PORT": "{busy_port}"}, {"worker": []}),
    Mistake("topics made with another partition count",
            "SYSMON_PARTITIONS=8, but this app's topics were made with 4 partitions",
            {"SYSMON_PARTITIONS": "8"}, {"worker": []}),
    Mistake("an unknown command", "unknown command 'frobnicate'", {}, {"": ["frobnicate"]}),
    Mistake("an unknown option", "unrecognized arguments: --bogus", {},
            {"topics": ["--bogus"], "describe": ["--bogus"], "print": ["{topic}", "--bogus"],
             "replay": ["--bogus", "{recording}"], "demo": ["--bogus"]}),
    Mistake("a missing argument", "required", {},
            {"print": [], "replay": []}),
    Mistake("no files to test", "required: FILE", {}, {"rules test": []}),
    Mistake("a topic that does not exist", "no topic '{input}-nope'", {},
            {"print": ["{input}-nope"]}),
    Mistake("a folder instead of files", "{tmp} is a folder", {}, {"replay": ["{tmp}"]}),
    Mistake("a file that is not there", "no such file", {},
            {"replay": ["{tmp}/missing.jsonl"], "rules test": ["{tmp}/missing.jsonl"]}),
    Mistake("a file of no kind read", "events.csv: not a recording this reads", {},
            {"replay": ["{tmp}/events.csv"], "rules test": ["{tmp}/events.csv"]}),
    Mistake("an archive that is broken", "cannot read {tmp}/broken.zip", {},
            {"replay": ["{tmp}/broken.zip"], "rules test": ["{tmp}/broken.zip"]}),
    Mistake("a rate of nothing", "--rate must be a positive number", {},
            {"replay": ["--rate", "0", "{recording}"]}),
    Mistake("a negative count", "-1 is negative", {},
            {"print": ["{topic}", "--limit", "-1"]}),
    Mistake("a count that is no number", "'all' is not a whole number", {},
            {"print": ["{topic}", "--last", "all"]}),
    Mistake("a grace that is no number", "--grace", {},
            {"rules test": ["--grace", "soon", "{recording}"]}),
]  # fmt: skip


@pytest.fixture(scope="module")
def surroundings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The files, ports and topics the mistakes name."""
    tmp = tmp_path_factory.mktemp("mistakes")
    (tmp / "a-file").write_text("a file, not a folder")
    (tmp / "events.csv").write_text("UtcTime,ProcessGuid\n2019-01-01,{x}\n")
    (tmp / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    recording = tmp / "one.jsonl"
    recording.write_text('{"winlog": {"event_id": 1}}\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield {
            "tmp": str(tmp),
            "recording": str(recording),
            "dead_port": str(free_port()),
            "busy_port": str(busy.getsockname()[1]),
        }


def fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def run(command: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one command, as a user would run it."""
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    if command == "worker":
        argv = [str(FAUST), "-A", "sysmon_faust", "worker", "-l", "info",
                "--web-port", env.get("SYSMON_WEB_PORT", str(free_port()))]  # fmt: skip
    elif command == "demo":
        argv = [sys.executable, "-m", "sysmon_faust.cli.demo", "--state-dir", str(cwd / "demo")]
    elif command == "rules test":
        argv = [sys.executable, "-m", "sysmon_faust", "rules", "test"]
    else:
        argv = [sys.executable, "-m", "sysmon_faust", *([command] if command else [])]
    done = subprocess.run(
        [*argv, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=240
    )
    return done.returncode, done.stdout, done.stderr


CASES = [
    pytest.param(mistake, command, id=f"{mistake.name} | {command or 'python -m sysmon_faust'}")
    for mistake in MISTAKES
    for command in mistake.commands
]


def test_there_are_at_least_15_mistakes_over_every_command() -> None:
    assert len(MISTAKES) >= 15
    assert {c for m in MISTAKES for c in m.commands} >= set(EVERY_COMMAND)


@pytest.mark.parametrize(("mistake", "command"), CASES)
def test_a_mistake_is_one_line_and_a_non_zero_exit(
    mistake: Mistake,
    command: str,
    surroundings: dict[str, str],
    pipeline_env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    env = pipeline_env()
    values = {**surroundings, "topic": env["SYSMON_TOPIC_JOIN"], "input": env["SYSMON_TOPIC_INPUT"]}
    env |= {"SYSMON_WEB_PORT": str(free_port())}
    env |= {name: fill(value, values) for name, value in mistake.env.items()}
    if mistake.name == "topics made with another partition count":
        rekeyed = f"{env['SYSMON_APP_ID']}-events-by-process-guid"
        create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], rekeyed, partitions=4)
    args = [fill(arg, values) for arg in mistake.commands[command]]
    code, out, err = run(command, args, env, tmp_path)

    printed = out + err
    assert code != 0, printed
    assert "Traceback" not in printed, printed
    names = fill(mistake.names, values)
    if command in ("worker", "demo"):
        last = (err.strip() or out.strip()).splitlines()[-1]
        assert names in last, printed[-3000:]
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and names in lines[0], (out, err)
