from __future__ import annotations

import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from sysmon_faust.settings import (
    DEFAULT_RULES,
    ENVIRONMENT_VARIABLES,
    Settings,
    SettingsError,
    docs_table,
)

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
            "SYSMON_COMPRESSION": "ZSTD",
        }
    )
    assert (settings.compression, settings.compression_type) == ("zstd", "zstd")
    assert Settings.from_env({"SYSMON_COMPRESSION": "none"}).compression_type is None
    assert settings.bootstrap_servers == "k1:9092,k2:9093"
    assert settings.kafka_broker_url == "kafka://k1:9092;kafka://k2:9093"
    assert settings.partitions == 8
    assert settings.processing_guarantee == "exactly_once"
    assert settings.topic_by_guid == "hunt-events-by-process-guid"
    assert settings.topic_process_tree == "hunt-process-tree"
    assert (settings.ancestry_depth, settings.ancestry_wait, settings.rules_paths) == (
        4,
        5.0,
        (DEFAULT_RULES,),
    )


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
        ("SYSMON_ANCESTRY_DEPTH", "65"),
        ("SYSMON_ANCESTRY_DEPTH", "-1"),
        ("SYSMON_ANCESTRY_WAIT", "soon"),
        ("SYSMON_STALL_TIMEOUT", "4"),
        ("SYSMON_STALL_TIMEOUT", "forever"),
        ("SYSMON_RULES", "/no/such/rules.yaml"),
        ("SYSMON_COMPRESSION", "brotli"),
        ("SYSMON_GROUP_INSTANCE_ID", "pod 1"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_a_bad_value_stops_the_worker_with_one_line() -> None:
    # The worker as an operator starts it: the error is raised where the
    # settings are read, and reported by the entry point in one line.
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "sysmon_faust", "worker"],
        env={"SYSMON_PARTITIONS": "many", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "sysmon-faust: bad setting: SYSMON_PARTITIONS='many' is not an integer"
    ]


def test_docs_document_every_setting() -> None:
    page = (REPO / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"`((?:KAFKA|SYSMON)_[A-Z_]+)`", page))
    missing = set(ENVIRONMENT_VARIABLES) - documented
    assert not missing, f"docs/settings.md lacks {sorted(missing)}"


# --- Kafka security ---------------------------------------------------------

SCRAM_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "alice",
    "KAFKA_SASL_PASSWORD": "s3cret pass",
}


def test_kafka_security_defaults_to_plaintext() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.kafka_client_options() == {"security_protocol": "PLAINTEXT"}
    assert settings.faust_broker_credentials() is None


def test_sasl_settings_reach_aiokafka_clients_and_stay_out_of_logs() -> None:
    settings = Settings.from_env(SCRAM_ENV)
    assert settings.kafka_client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "s3cret pass",
    }
    assert "s3cret" not in repr(settings)
    described = settings.describe()
    assert described["kafka_sasl_password"] == "(set)"
    assert "s3cret" not in " ".join(described.values())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_passes_the_mechanism_to_aiokafka(mechanism: str) -> None:
    # Faust's own consumer and producer get their aiokafka arguments from
    # broker_credentials through this function: the mechanism must survive it.
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = Settings.from_env({**SCRAM_ENV, "KAFKA_SASL_MECHANISM": mechanism})
    assert credentials_to_aiokafka_auth(settings.faust_broker_credentials()) == {
        **settings.kafka_client_options(),
        "ssl_context": None,
    }


def test_tls_settings_build_a_verifying_context(pem: dict[str, Path]) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(pem["cert"]),
            "KAFKA_SSL_CERTFILE": str(pem["cert"]),
            "KAFKA_SSL_KEYFILE": str(pem["key"]),
        }
    )
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "sysmon-faust-test"),),)
    ]
    faust_options = credentials_to_aiokafka_auth(settings.faust_broker_credentials())
    assert faust_options["security_protocol"] == "SSL"
    assert isinstance(faust_options["ssl_context"], ssl.SSLContext)

    sasl_ssl = Settings.from_env(
        {**SCRAM_ENV, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SSL_CAFILE": str(pem["cert"])}
    )
    faust_options = credentials_to_aiokafka_auth(sasl_ssl.faust_broker_credentials())
    assert faust_options["security_protocol"] == "SASL_SSL"
    assert faust_options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(faust_options["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({**SCRAM_ENV, "KAFKA_SASL_MECHANISM": ""}, "KAFKA_SASL_MECHANISM"),
        ({**SCRAM_ENV, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({**SCRAM_ENV, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"}, "KAFKA_SASL_MECHANISM"),
        ({**SCRAM_ENV, "KAFKA_SASL_USERNAME": " "}, "KAFKA_SASL_USERNAME"),
        ({**SCRAM_ENV, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SASL_USERNAME": "alice"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_PASSWORD": "x"}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SSL_CAFILE": "{cert}"}, "KAFKA_SSL_CAFILE"),
        ({**SCRAM_ENV, "KAFKA_SSL_CAFILE": "{cert}"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
         "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "{junk}"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **{k: v for k, v in SCRAM_ENV.items()
          if k != "KAFKA_SECURITY_PROTOCOL"}, "KAFKA_SSL_CERTFILE": "/nonexistent/c.pem"},
         "KAFKA_SSL_CERTFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "{key}"}, "KAFKA_SSL_KEYFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "{cert}",
          "KAFKA_SSL_KEYFILE": "{junk}"}, "KAFKA_SSL_KEYFILE"),
    ],
)  # fmt: skip
def test_bad_kafka_security_names_the_variable(
    env: dict[str, str], variable: str, pem: dict[str, Path]
) -> None:
    env = {key: value.format(**pem) for key, value in env.items()}
    with pytest.raises(SettingsError, match=variable) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert "\n" not in message
    assert "s3cret" not in message


def test_the_settings_page_is_the_declarations_table() -> None:
    page = (REPO / "docs" / "settings.md").read_text()
    start = page.index("-->\n", page.index("<!-- settings table: generated")) + len("-->\n")
    end = page.index("<!-- settings table: end -->")
    assert page[start:end] == docs_table(), (
        "docs/settings.md is not the settings' declarations: paste the output of "
        "python -m sysmon_faust.settings between its markers"
    )
