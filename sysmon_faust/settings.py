"""Every setting of sysmon-faust, read from the environment in this one place.

The names and defaults are the contract's (docs: README "Settings"). A bad
value raises :class:`SettingsError` with a one-line message that names the
variable, so a worker refuses to start instead of running half-configured.

The Kafka security settings (``KAFKA_SECURITY_PROTOCOL`` and the
``KAFKA_SASL_*``/``KAFKA_SSL_*`` ones) reach every Kafka client the app makes
through :meth:`Settings.kafka_client_options` (aiokafka clients) and
:meth:`Settings.faust_broker_credentials` (Faust's own consumer and producer).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Kafka's record batch codecs (the producer's compression.type), and none.
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")

# A Kafka topic name: legal characters and length (Kafka's own rule).
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT = re.compile(r"^[^\s:,]+:\d{1,5}$")
_TEN_YEARS = 3650 * 86400


class SettingsError(ValueError):
    """A setting has a value the worker cannot run with."""


def _ssl_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    """A client TLS context that verifies the broker (the CA file's, or the system's, CAs)."""
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as error:
        raise SettingsError(
            f"KAFKA_SSL_CAFILE={cafile!r} cannot be loaded as PEM CA certificates: {error}"
        ) from None
    if certfile:
        try:
            # An empty password: an encrypted key fails here instead of making
            # OpenSSL prompt on the terminal.
            context.load_cert_chain(certfile, keyfile or None, password="")
        except (OSError, ssl.SSLError) as error:
            raise SettingsError(
                f"KAFKA_SSL_CERTFILE={certfile!r}/KAFKA_SSL_KEYFILE={keyfile!r} cannot be "
                f"loaded as a PEM certificate and unencrypted key: {error}"
            ) from None
    return context


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "sysmon-faust"
    data_dir: Path = Path("./data")
    partitions: int = 4
    topic_input: str = "winlogbeat"
    topic_process_create: str = "sysmon-process-create"
    topic_network_connect: str = "sysmon-network-connect"
    topic_join: str = "sysmon-join"
    topic_unmatched: str = "sysmon-network-unmatched"
    topic_alerts: str = "sysmon-alerts"
    topic_dlq: str = "sysmon-dlq"
    processing_guarantee: str = "at_least_once"
    #: Replicas of every topic the app creates; None: the cluster's
    #: default.replication.factor, at most its number of brokers (startup.py).
    replication_factor: int | None = None
    #: The codec of every record batch the worker writes (the producer's
    #: compression.type): re-keying, process-tree and output topics, table
    #: changelogs, dead letters. What it reads may use any codec.
    compression: str = "zstd"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_advertised_host: str = ""
    session_timeout: float = 10.0
    #: Seconds a partition this worker owns may have lag and no committed
    #: progress before /health says the worker is stalled (sysmon_faust.stall).
    stall_timeout: float = 60.0
    #: Seconds (of stream time) a connect waits for its process's creation.
    join_grace: float = 300.0
    #: Connects that may wait for one process, and on one worker in all.
    pending_per_process: int = 1_000
    pending_max: int = 200_000
    #: Seconds (of stream time) a row stays after its process ended, and after
    #: it was written if it never does.
    table_retention: float = 3600.0
    table_ttl: float = 7 * 86400.0
    #: Ancestors in each enriched record's ``process_ancestry``.
    ancestry_depth: int = 4
    #: Seconds a join is parked, at most, for an ancestor's link another
    #: worker may not have written yet (sysmon_faust.parking); 0: never.
    ancestry_wait: float = 5.0
    #: Seconds (of stream time) an alert group lasts: the first match of a
    #: rule on a process alerts, later ones in the window are counted into
    #: one update (sysmon_faust.alert_groups); 0: every match alerts.
    alert_window: float = 600.0
    #: The detection rules file (YAML or JSON); None: the rules shipped with
    #: the package (sysmon_faust/default_rules.yaml).
    rules_path: Path | None = None
    http_token: str = field(default="", repr=False)
    #: How every Kafka client of the app connects: PLAINTEXT, SSL (TLS),
    #: SASL_PLAINTEXT or SASL_SSL (SASL over TLS).
    kafka_security_protocol: str = "PLAINTEXT"
    #: With SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, user and password.
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    #: With SSL/SASL_SSL: CA certificates (PEM) that signed the brokers'
    #: certificates (default: the system's), and a client certificate and key
    #: for brokers that want mutual TLS.
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    @property
    def topic_by_guid(self) -> str:
        """Internal topic: ProcessCreate and NetworkConnect events, keyed by process_guid.

        Both event types share it on purpose: Kafka keeps records of one key
        in one partition in order, so a connect that followed its create in
        the input is seen by the join after that create, at any speed.
        """
        return f"{self.app_id}-events-by-process-guid"

    @property
    def topic_process_tree(self) -> str:
        """Internal compacted topic: every process's parent link, read whole by every worker.

        See :mod:`sysmon_faust.tree_replica`.
        """
        return f"{self.app_id}-process-tree"

    @property
    def compression_type(self) -> str | None:
        """The codec as Kafka clients take it (``compression_type``): None for no compression."""
        return None if self.compression == "none" else self.compression

    @property
    def intake_group(self) -> str:
        """Consumer group of the intake (the input topic); Faust's own group is the app id."""
        return f"{self.app_id}-intake"

    @property
    def web_url_host(self) -> str:
        """The host name other workers use to reach this one (HTTP requests are forwarded
        to the worker that owns a key). A wildcard bind address is no address to call."""
        if self.web_advertised_host:
            return self.web_advertised_host
        if self.web_host in ("0.0.0.0", "::", ""):
            return socket.gethostname()
        return self.web_host

    @property
    def kafka_broker_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers.split(","))

    @property
    def kafka_uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """A new TLS context for one client (None without TLS)."""
        if not self.kafka_uses_tls:
            return None
        return _ssl_context(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments of every aiokafka client (consumer, producer, admin) the app makes.

        ``AIOKafkaConsumer(bootstrap_servers=..., **settings.kafka_client_options())``.
        """
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_uses_tls:
            options["ssl_context"] = self.kafka_ssl_context()
        if self.kafka_uses_sasl:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password
        return options

    def faust_broker_credentials(self) -> CredentialsT | None:
        """``broker_credentials`` of the Faust app: the same security for Faust's own clients.

        Faust turns them into the same aiokafka arguments
        (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``),
        the SASL mechanism included.
        """
        import faust

        if self.kafka_uses_sasl:
            return faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password,
                # With a context, faust's protocol is SASL_SSL; without, SASL_PLAINTEXT.
                ssl_context=self.kafka_ssl_context(),
                mechanism=self.kafka_sasl_mechanism,
            )
        if self.kafka_uses_tls:
            return faust.SSLCredentials(self.kafka_ssl_context())
        return None

    def describe(self) -> dict[str, str]:
        """The settings as text, for the start-up log line."""
        described = {name: str(value) for name, value in asdict(self).items()}
        described["http_token"] = "(set)" if self.http_token else "(none)"
        described["kafka_sasl_password"] = "(set)" if self.kafka_sasl_password else "(none)"
        described["rules_path"] = str(self.rules_path or "(the shipped default rules)")
        described["replication_factor"] = str(self.replication_factor or "(the cluster's)")
        return described

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(variable: str, default: str) -> str:
            value = env.get(variable, "").strip()
            return value or default

        def topic(variable: str, default: str) -> str:
            value = text(variable, default)
            if not _TOPIC_NAME.match(value) or value in (".", ".."):
                raise SettingsError(
                    f"{variable}={value!r} is not a valid Kafka topic name "
                    "(letters, digits, '.', '_', '-'; at most 249 characters)"
                )
            return value

        def integer(variable: str, default: int, low: int, high: int) -> int:
            raw = text(variable, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{variable}={raw!r} is not an integer") from None
            if not low <= value <= high:
                raise SettingsError(f"{variable}={value} is out of range ({low}..{high})")
            return value

        def seconds(variable: str, default: float, low: int) -> float:
            return float(integer(variable, int(default), low, _TEN_YEARS))

        servers = text("KAFKA_BOOTSTRAP_SERVERS", defaults.bootstrap_servers)
        for server in servers.split(","):
            if not _HOST_PORT.match(server.strip()):
                raise SettingsError(
                    f"KAFKA_BOOTSTRAP_SERVERS={servers!r}: expected host:port[,host:port...]"
                )
        servers = ",".join(server.strip() for server in servers.split(","))

        app_id = text("SYSMON_APP_ID", defaults.app_id)
        if not _TOPIC_NAME.match(app_id):
            raise SettingsError(
                f"SYSMON_APP_ID={app_id!r} must be usable in topic names "
                "(letters, digits, '.', '_', '-')"
            )

        guarantee = text("SYSMON_PROCESSING_GUARANTEE", defaults.processing_guarantee).lower()
        if guarantee not in PROCESSING_GUARANTEES:
            raise SettingsError(
                f"SYSMON_PROCESSING_GUARANTEE={guarantee!r} must be one of "
                f"{', '.join(PROCESSING_GUARANTEES)}"
            )

        compression = text("SYSMON_COMPRESSION", defaults.compression).lower()
        if compression not in COMPRESSION_TYPES:
            raise SettingsError(
                f"SYSMON_COMPRESSION={compression!r} must be one of {', '.join(COMPRESSION_TYPES)}"
            )

        settings = cls(
            bootstrap_servers=servers,
            app_id=app_id,
            data_dir=Path(text("SYSMON_DATA_DIR", str(defaults.data_dir))),
            partitions=integer("SYSMON_PARTITIONS", defaults.partitions, 1, 1024),
            topic_input=topic("SYSMON_TOPIC_INPUT", defaults.topic_input),
            topic_process_create=topic(
                "SYSMON_TOPIC_PROCESS_CREATE", defaults.topic_process_create
            ),
            topic_network_connect=topic(
                "SYSMON_TOPIC_NETWORK_CONNECT", defaults.topic_network_connect
            ),
            topic_join=topic("SYSMON_TOPIC_JOIN", defaults.topic_join),
            topic_unmatched=topic("SYSMON_TOPIC_UNMATCHED", defaults.topic_unmatched),
            topic_alerts=topic("SYSMON_TOPIC_ALERTS", defaults.topic_alerts),
            topic_dlq=topic("SYSMON_TOPIC_DLQ", defaults.topic_dlq),
            processing_guarantee=guarantee,
            compression=compression,
            replication_factor=(
                integer("SYSMON_REPLICATION_FACTOR", 1, 1, 32)
                if text("SYSMON_REPLICATION_FACTOR", "")
                else None
            ),
            web_host=text("SYSMON_WEB_HOST", defaults.web_host),
            web_port=integer("SYSMON_WEB_PORT", defaults.web_port, 1, 65535),
            web_advertised_host=text("SYSMON_WEB_ADVERTISED_HOST", ""),
            http_token=env.get("SYSMON_HTTP_TOKEN", "").strip(),
            session_timeout=integer("SYSMON_SESSION_TIMEOUT", 10, 6, 1800) * 1.0,
            stall_timeout=integer("SYSMON_STALL_TIMEOUT", int(defaults.stall_timeout), 5, 86400)
            * 1.0,
            join_grace=integer("SYSMON_JOIN_GRACE", int(defaults.join_grace), 0, 7 * 86400) * 1.0,
            pending_per_process=integer(
                "SYSMON_PENDING_PER_PROCESS", defaults.pending_per_process, 1, 1_000_000
            ),
            pending_max=integer("SYSMON_PENDING_MAX", defaults.pending_max, 1, 100_000_000),
            table_retention=seconds("SYSMON_TABLE_RETENTION", defaults.table_retention, 0),
            table_ttl=seconds("SYSMON_TABLE_TTL", defaults.table_ttl, 60),
            ancestry_depth=integer("SYSMON_ANCESTRY_DEPTH", defaults.ancestry_depth, 0, 64),
            ancestry_wait=integer("SYSMON_ANCESTRY_WAIT", int(defaults.ancestry_wait), 0, 600)
            * 1.0,
            alert_window=integer("SYSMON_ALERT_WINDOW", int(defaults.alert_window), 0, 7 * 86400)
            * 1.0,
            rules_path=_rules_path(text("SYSMON_RULES", "")),
            **_kafka_security(env),
        )
        settings._check_topics_distinct()
        return settings

    def _check_topics_distinct(self) -> None:
        seen: dict[str, str] = {}
        for setting in fields(self):
            if not setting.name.startswith("topic_"):
                continue
            name = getattr(self, setting.name)
            if name in seen:
                raise SettingsError(
                    f"SYSMON_{setting.name.upper()}={name!r} is the same topic as "
                    f"SYSMON_{seen[name].upper()}"
                )
            seen[name] = setting.name


def _rules_path(value: str) -> Path | None:
    """``SYSMON_RULES``: a readable file, or unset for the shipped rules. Its content is
    checked by :func:`sysmon_faust.rules.load_rules` when the worker starts."""
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise SettingsError(f"SYSMON_RULES={value!r} is not a file (unset: the default rules)")
    return path


def _kafka_security(env: Mapping[str, str]) -> dict[str, str]:
    """The Kafka security settings from the environment, checked together."""

    def text(variable: str) -> str:
        return env.get(variable, "").strip()

    protocol = text("KAFKA_SECURITY_PROTOCOL").upper() or "PLAINTEXT"
    if protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r} must be one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    mechanism = text("KAFKA_SASL_MECHANISM").upper()
    username = text("KAFKA_SASL_USERNAME")
    # Taken as it is: a password may begin or end with a space.
    password = env.get("KAFKA_SASL_PASSWORD", "")
    files = {
        variable: text(variable)
        for variable in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
    }

    if protocol.startswith("SASL_"):
        if not mechanism:
            raise SettingsError(
                f"KAFKA_SASL_MECHANISM is required with KAFKA_SECURITY_PROTOCOL={protocol} "
                f"({', '.join(SASL_MECHANISMS)})"
            )
        if mechanism not in SASL_MECHANISMS:
            raise SettingsError(
                f"KAFKA_SASL_MECHANISM={mechanism!r} must be one of {', '.join(SASL_MECHANISMS)}"
            )
        if not username:
            raise SettingsError(
                f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL={protocol}"
            )
        if not password.strip():
            raise SettingsError(
                f"KAFKA_SASL_PASSWORD is required with KAFKA_SECURITY_PROTOCOL={protocol}"
            )
    else:
        for variable, value in (
            ("KAFKA_SASL_MECHANISM", mechanism),
            ("KAFKA_SASL_USERNAME", username),
            ("KAFKA_SASL_PASSWORD", password.strip()),
        ):
            if value:
                raise SettingsError(
                    f"{variable} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                    "SASL (SASL_PLAINTEXT or SASL_SSL)"
                )

    for variable, path in files.items():
        if not path:
            continue
        if protocol not in ("SSL", "SASL_SSL"):
            raise SettingsError(
                f"{variable} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "TLS (SSL or SASL_SSL)"
            )
        if not Path(path).is_file():
            raise SettingsError(f"{variable}={path!r}: no such file")
    cafile, certfile, keyfile = files.values()
    if keyfile and not certfile:
        raise SettingsError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE")
    if protocol in ("SSL", "SASL_SSL"):
        _ssl_context(cafile, certfile, keyfile)  # unreadable files fail now, not in a client

    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": username,
        "kafka_sasl_password": password,
        "kafka_ssl_cafile": cafile,
        "kafka_ssl_certfile": certfile,
        "kafka_ssl_keyfile": keyfile,
    }


# Environment variable → what it sets; the README's settings table is checked
# against this list by a test.
ENVIRONMENT_VARIABLES: tuple[str, ...] = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "SYSMON_APP_ID",
    "SYSMON_DATA_DIR",
    "SYSMON_PARTITIONS",
    "SYSMON_TOPIC_INPUT",
    "SYSMON_TOPIC_PROCESS_CREATE",
    "SYSMON_TOPIC_NETWORK_CONNECT",
    "SYSMON_TOPIC_JOIN",
    "SYSMON_TOPIC_UNMATCHED",
    "SYSMON_TOPIC_ALERTS",
    "SYSMON_TOPIC_DLQ",
    "SYSMON_PROCESSING_GUARANTEE",
    "SYSMON_COMPRESSION",
    "SYSMON_REPLICATION_FACTOR",
    "SYSMON_WEB_HOST",
    "SYSMON_WEB_PORT",
    "SYSMON_WEB_ADVERTISED_HOST",
    "SYSMON_HTTP_TOKEN",
    "SYSMON_SESSION_TIMEOUT",
    "SYSMON_STALL_TIMEOUT",
    "SYSMON_JOIN_GRACE",
    "SYSMON_PENDING_PER_PROCESS",
    "SYSMON_PENDING_MAX",
    "SYSMON_TABLE_RETENTION",
    "SYSMON_TABLE_TTL",
    "SYSMON_ANCESTRY_DEPTH",
    "SYSMON_ANCESTRY_WAIT",
    "SYSMON_ALERT_WINDOW",
    "SYSMON_RULES",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
)
