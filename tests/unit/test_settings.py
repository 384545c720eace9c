from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sysmon_faust.settings import ENVIRONMENT_VARIABLES, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_contracts() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.app_id == "sysmon-faust"
    assert settings.data_dir == Path("./data")
    assert settings.topic_input == "winlogbeat"
    assert settings.topic_join == "sysmon-join"
    assert settings.topic_unmatched == "sysmon-network-unmatched"
    assert settings.topic_alerts == "sysmon-alerts"
    assert settings.topic_dlq == "sysmon-dlq"
    assert settings.topic_process_create == "sysmon-process-create"
    assert settings.topic_network_connect == "sysmon-network-connect"
    assert settings.processing_guarantee == "at_least_once"
    assert settings.web_host == "127.0.0.1"


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9093",
            "SYSMON_APP_ID": "hunt",
            "SYSMON_PARTITIONS": "8",
            "SYSMON_PROCESSING_GUARANTEE": "EXACTLY_ONCE",
            "SYSMON_TOPIC_INPUT": "wlb",
        }
    )
    assert settings.bootstrap_servers == "k1:9092,k2:9093"
    assert settings.kafka_broker_url == "kafka://k1:9092;kafka://k2:9093"
    assert settings.partitions == 8
    assert settings.processing_guarantee == "exactly_once"
    assert settings.topic_by_guid == "hunt-events-by-process-guid"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYSMON_PARTITIONS", "abc"),
        ("SYSMON_PARTITIONS", "0"),
        ("SYSMON_PROCESSING_GUARANTEE", "at_most_once"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("SYSMON_TOPIC_JOIN", "bad topic!"),
        ("SYSMON_TOPIC_DLQ", "sysmon-join"),
        ("SYSMON_WEB_PORT", "99999"),
        ("SYSMON_APP_ID", "a b"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_a_bad_value_stops_the_worker_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sysmon_faust.topology"],
        env={"SYSMON_PARTITIONS": "many", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "sysmon-faust: bad setting: SYSMON_PARTITIONS='many' is not an integer"
    ]


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`((?:KAFKA|SYSMON)_[A-Z_]+)`", readme))
    missing = set(ENVIRONMENT_VARIABLES) - documented
    assert not missing, f"README lacks {sorted(missing)}"
