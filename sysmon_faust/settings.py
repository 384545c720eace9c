"""Every setting of sysmon-faust: declared once, read from the environment in this one place.

Each setting is one field of :class:`Settings`, declared with :func:`setting`:
its environment variable, its parser (type and bounds), its default and its
doc. Everything else comes from those declarations: :meth:`Settings.from_env`
(validation), :data:`ENVIRONMENT_VARIABLES`, :meth:`Settings.describe` (the
worker's start-up line, secrets hidden) and the settings page of the docs
(``python -m sysmon_faust.settings`` prints it; a test holds
``docs/settings.md`` to it). A bad value raises :class:`SettingsError` with a
one-line message that names the variable, so a worker refuses to start
instead of running half-configured.

The Kafka security settings (``KAFKA_SECURITY_PROTOCOL`` and the
``KAFKA_SASL_*``/``KAFKA_SSL_*`` ones) are also checked together, and reach
every Kafka client the app makes through :meth:`Settings.kafka_client_options`
(aiokafka clients) and :meth:`Settings.faust_broker_credentials` (Faust's own
consumer and producer).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sysmon_faust.core.normalize import PROCESS_EVENT_IDS

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
_WEEK = 7 * 86400


#: Bind addresses that are no address to call: a worker bound to one is
#: reached by its host name (:attr:`Settings.web_url_host`).
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class SettingsError(ValueError):
    """A setting has a value the worker cannot run with."""


# --- parsers: the environment's text → the setting's value ---------------------------

#: ``parse(raw, variable)``: the value, or SettingsError naming ``variable``.
Parser = Callable[[str, str], Any]


def text(raw: str, variable: str) -> str:
    return raw


def topic(raw: str, variable: str) -> str:
    if not _TOPIC_NAME.match(raw) or raw in (".", ".."):
        raise SettingsError(
            f"{variable}={raw!r} is not a valid Kafka topic name "
            "(letters, digits, '.', '_', '-'; at most 249 characters)"
        )
    return raw


def app_id(raw: str, variable: str) -> str:
    if not _TOPIC_NAME.match(raw):
        raise SettingsError(
            f"{variable}={raw!r} must be usable in topic names (letters, digits, '.', '_', '-')"
        )
    return raw


def instance_id(raw: str, variable: str) -> str:
    # Kafka checks a group.instance.id as it checks a topic name (KIP-345).
    if raw and (not _TOPIC_NAME.match(raw) or raw in (".", "..")):
        raise SettingsError(
            f"{variable}={raw!r} is not a valid group instance id "
            "(letters, digits, '.', '_', '-'; at most 249 characters; empty for none)"
        )
    return raw


def integer(low: int, high: int) -> Parser:
    """A whole number in ``low..high``."""

    def parse(raw: str, variable: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise SettingsError(f"{variable}={value} is out of range ({low}..{high})")
        return value

    parse.bounds = (low, high)  # type: ignore[attr-defined]
    return parse


def seconds(low: int, high: int) -> Parser:
    """Whole seconds in ``low..high``, as a float."""
    whole = integer(low, high)

    def parse(raw: str, variable: str) -> float:
        return float(whole(raw, variable))

    parse.bounds = (low, high)  # type: ignore[attr-defined]
    return parse


def choice(options: tuple[str, ...], case: Callable[[str], str] = str.lower) -> Parser:
    def parse(raw: str, variable: str) -> str:
        value = case(raw)
        if value not in options:
            raise SettingsError(f"{variable}={value!r} must be one of {', '.join(options)}")
        return value

    parse.options = options  # type: ignore[attr-defined]
    return parse


def servers(raw: str, variable: str) -> str:
    for server in raw.split(","):
        if not _HOST_PORT.match(server.strip()):
            raise SettingsError(f"{variable}={raw!r}: expected host:port[,host:port...]")
    return ",".join(server.strip() for server in raw.split(","))


def path(raw: str, variable: str) -> Path:
    return Path(raw)


#: The Sigma rules shipped with the package (``SYSMON_RULES`` unset, or ``default`` in it).
DEFAULT_RULES: Path = Path(__file__).with_name("core") / "default_rules"


def rule_path(item: str) -> Path:
    """One rules path as ``SYSMON_RULES`` and the ``rules`` commands name it: ``default``
    is the shipped rules (:data:`DEFAULT_RULES`), anything else a file or folder."""
    return DEFAULT_RULES if item == "default" else Path(item)


def rule_paths(raw: str, variable: str) -> tuple[Path, ...]:
    """Sigma rule files and folders, comma-separated; ``default``: the shipped rules.

    Each must exist; the rules themselves are checked by
    :func:`sysmon_faust.core.sigma.ruleset.load` (a bad rule is refused, not fatal).
    """
    paths = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        path = rule_path(item)
        if not path.exists():
            raise SettingsError(
                f"{variable}={raw!r}: {item} is neither a file nor a folder "
                "(Sigma rule files and folders, comma-separated; `default`: the shipped rules)"
            )
        paths.append(path)
    if not paths:
        raise SettingsError(f"{variable}={raw!r} names no rules (unset: the shipped rules)")
    return tuple(paths)


def enrich_event_ids(raw: str, variable: str) -> frozenset[int]:
    """Sysmon event ids, comma-separated, among those that name a process
    (:data:`sysmon_faust.core.normalize.PROCESS_EVENT_IDS`); ``all``: each of those;
    ``none``: no enrichment."""
    word = raw.strip().lower()
    if word == "all":
        return frozenset(PROCESS_EVENT_IDS)
    if word in ("none", ""):
        return frozenset()
    ids = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if not item.isdigit() or int(item) not in PROCESS_EVENT_IDS:
            raise SettingsError(
                f"{variable}={raw!r}: {item!r} is not a Sysmon event id that names a process "
                f"({', '.join(map(str, PROCESS_EVENT_IDS))}; or `all`, or `none`)"
            )
        ids.add(int(item))
    return frozenset(ids)


def upper(raw: str, variable: str) -> str:
    return raw.upper()


def setting(
    default: Any,
    variable: str,
    doc: str,
    parse: Parser = text,
    *,
    default_doc: str | None = None,
    secret: bool = False,
    strip: bool = True,
) -> Any:
    """Declare a setting: a dataclass field that knows its variable, parser and doc.

    ``default_doc``: how the docs show the default when it is not the value
    (``None`` meaning "the cluster's", say); ``secret``: never logged nor
    shown (the start-up line says ``(set)``); ``strip``: surrounding spaces
    are dropped (not for a password, which may have them).
    """
    metadata = {"variable": variable, "doc": doc, "parse": parse, "default_doc": default_doc,
                "secret": secret, "strip": strip}  # fmt: skip
    return field(default=default, metadata=metadata, repr=not secret)


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
    """The settings of one worker (or command), each declared once with :func:`setting`."""

    bootstrap_servers: str = setting(
        "127.0.0.1:9092", "KAFKA_BOOTSTRAP_SERVERS", "`host:port[,host:port]`", servers
    )
    app_id: str = setting(
        "sysmon-faust", "SYSMON_APP_ID",
        "Faust app id: the consumer group, prefix of internal topics", app_id,
    )  # fmt: skip
    data_dir: Path = setting(
        Path("./data"), "SYSMON_DATA_DIR",
        "RocksDB state; each worker uses `<app_id>-worker-<web port>/` below it", path,
        default_doc="`./data`",
    )  # fmt: skip
    partitions: int = setting(
        4, "SYSMON_PARTITIONS",
        "partitions of the keyed topics, the re-keying topic and the table", integer(1, 1024),
    )  # fmt: skip
    topic_input: str = setting(
        "winlogbeat", "SYSMON_TOPIC_INPUT",
        "raw events from Winlogbeat/NXLog (created with `SYSMON_PARTITIONS` partitions if "
        "missing)", topic,
    )  # fmt: skip
    topic_process_create: str = setting(
        "sysmon-process-create", "SYSMON_TOPIC_PROCESS_CREATE",
        "normalized Sysmon 1, keyed by process GUID", topic,
    )  # fmt: skip
    topic_network_connect: str = setting(
        "sysmon-network-connect", "SYSMON_TOPIC_NETWORK_CONNECT",
        "normalized Sysmon 3, keyed by process GUID", topic,
    )  # fmt: skip
    topic_join: str = setting(
        "sysmon-join", "SYSMON_TOPIC_JOIN", "enriched network events (HELK's `SYSMON_JOIN`)", topic
    )
    topic_unmatched: str = setting(
        "sysmon-network-unmatched", "SYSMON_TOPIC_UNMATCHED",
        "network events whose process is unknown, with `unmatched_reason`", topic,
    )  # fmt: skip
    topic_enriched: str = setting(
        "sysmon-enriched", "SYSMON_TOPIC_ENRICHED",
        "every Sysmon event of `SYSMON_ENRICH_EVENTS`, keyed by process GUID, with its "
        "process's creation fields and ancestry (or `unmatched_reason`)", topic,
    )  # fmt: skip
    topic_alerts: str = setting(
        "sysmon-alerts", "SYSMON_TOPIC_ALERTS", "detections (alert groups: see Detection rules)",
        topic,
    )  # fmt: skip
    topic_dlq: str = setting(
        "sysmon-dlq", "SYSMON_TOPIC_DLQ",
        "input the pipeline could not read, with the reason and the original bytes", topic,
    )  # fmt: skip
    processing_guarantee: str = setting(
        "at_least_once", "SYSMON_PROCESSING_GUARANTEE",
        "or `exactly_once` (Kafka transactions; see Crashes and restarts)",
        choice(PROCESSING_GUARANTEES),
    )  # fmt: skip
    alert_window: float = setting(
        600.0, "SYSMON_ALERT_WINDOW",
        "seconds (of stream time) an alert group lasts: the first match of a rule on a "
        "process alerts at once, later matches in the window are counted into one update "
        "written when it closes (count, first/last seen, destinations); `0`: every match "
        "alerts (sysmon_faust.core.alert_groups)", seconds(0, _WEEK),
    )  # fmt: skip
    replication_factor: int | None = setting(
        None, "SYSMON_REPLICATION_FACTOR",
        "replicas of every topic the app creates; unset: the cluster's "
        "`default.replication.factor`, at most its brokers; with 3 or more, "
        "`min.insync.replicas=2` (see Against an existing Kafka cluster)", integer(1, 32),
        default_doc="the cluster's",
    )  # fmt: skip
    producer_linger_ms: int = setting(
        100, "SYSMON_PRODUCER_LINGER_MS",
        "milliseconds the join's producers wait to fill a record batch before they send it "
        "(librdkafka's `linger.ms`): Kafka Streams' default for its producers. Fewer, fuller "
        "batches cost the worker and the broker less per record (each batch is compressed "
        "and appended on its own). Under at_least_once at most this much is added to an "
        "output's latency, and to a commit's; under exactly_once an output is read once its "
        "transaction is committed, and the commit sends what waits at once",
        integer(0, 5000),
    )  # fmt: skip
    compression: str = setting(
        "zstd", "SYSMON_COMPRESSION",
        "codec of every record batch the worker writes (re-keying, process tree, outputs, "
        "changelogs, dead letters); topics it reads may use any of them. The default is the "
        "cheapest in broker CPU and disk per input event in `make bench`",
        choice(COMPRESSION_TYPES),
    )  # fmt: skip
    web_host: str = setting(
        "127.0.0.1", "SYSMON_WEB_HOST",
        "address the HTTP server binds to (`0.0.0.0` in the Docker image)",
    )  # fmt: skip
    web_port: int = setting(
        6066, "SYSMON_WEB_PORT", "HTTP port (`--web-port` overrides it)", integer(1, 65535)
    )
    web_advertised_host: str = setting(
        "", "SYSMON_WEB_ADVERTISED_HOST",
        "name other workers use to forward HTTP lookups to this one",
        default_doc="the bind address, or the host name when binding to all",
    )  # fmt: skip
    session_timeout: float = setting(
        10.0, "SYSMON_SESSION_TIMEOUT",
        "seconds before the group gives a silent (killed) worker's partitions to the others",
        seconds(6, 1800),
    )  # fmt: skip
    group_instance_id: str = setting(
        "", "SYSMON_GROUP_INSTANCE_ID",
        "this worker's static membership in its two consumer groups (KIP-345): restarted "
        "within `SYSMON_SESSION_TIMEOUT`, it takes its partitions back without a rebalance; "
        "stopped, its partitions wait that long before others take them. One per worker, "
        "the same across its restarts (a StatefulSet pod's name), at the same address "
        "(`SYSMON_WEB_PORT`, `SYSMON_WEB_ADVERTISED_HOST`)",
        instance_id, default_doc="none: dynamic membership",
    )  # fmt: skip
    stall_timeout: float = setting(
        60.0, "SYSMON_STALL_TIMEOUT",
        "seconds a partition this worker owns may have lag and no committed progress before "
        "`/health` answers 503 (sysmon_faust.stream.stall)", seconds(5, 86400),
    )  # fmt: skip
    join_grace: float = setting(
        300.0, "SYSMON_JOIN_GRACE",
        "seconds of stream time an event (a connect, or one enriched) whose process is not in "
        "the table waits for its creation before it is unmatched (`0`: no wait, ksqlDB's "
        "behaviour)", seconds(0, _WEEK),
    )  # fmt: skip
    pending_per_process: int = setting(
        1_000, "SYSMON_PENDING_PER_PROCESS",
        "events (connects, and the other ids waiting for their enrichment or context rules) "
        "that may wait for one process; more are unmatched as `pending_overflow`",
        integer(1, 1_000_000),
    )  # fmt: skip
    pending_max: int = setting(
        200_000, "SYSMON_PENDING_MAX", "events that may wait on one worker in all (same "
        "overflow)", integer(1, 100_000_000),
    )  # fmt: skip
    table_retention: float = setting(
        3600.0, "SYSMON_TABLE_RETENTION",
        "seconds of stream time a row stays after its process ended (Sysmon 5), so late "
        "connects still join; then it is deleted", seconds(0, _TEN_YEARS),
    )  # fmt: skip
    table_ttl: float = setting(
        7 * 86400.0, "SYSMON_TABLE_TTL",
        "seconds of stream time after which a row whose process never ended is deleted",
        seconds(60, _TEN_YEARS), default_doc="604800 (7 days)",
    )  # fmt: skip
    ancestry_depth: int = setting(
        4, "SYSMON_ANCESTRY_DEPTH",
        "ancestors in each enriched record's `process_ancestry` (0: none, and `any_ancestor` "
        "rules never fire)", integer(0, 64),
    )  # fmt: skip
    ancestry_wait: float = setting(
        5.0, "SYSMON_ANCESTRY_WAIT",
        "seconds a join is parked, at most, for an ancestor another worker's intake may not "
        "have written yet; the join goes on with other records meanwhile (0: never parks)",
        seconds(0, 600),
    )  # fmt: skip
    enrich_events: frozenset[int] = setting(
        frozenset(PROCESS_EVENT_IDS), "SYSMON_ENRICH_EVENTS",
        "Sysmon event ids written to `SYSMON_TOPIC_ENRICHED`, comma-separated; `all`: every "
        "id that names a process (1, 2, 3, 5, 7-15, 17, 18, 22-29); `none`: no enrichment "
        "(the intake then drops what no rule wants)", enrich_event_ids, default_doc="`all`",
    )  # fmt: skip
    dns_answer_ttl: float = setting(
        600.0, "SYSMON_DNS_ANSWER_TTL",
        "seconds of stream time a process's DNS answer (Sysmon 22) names its connects to the "
        "answered address (`dst_query_name` on `SYSMON_TOPIC_ENRICHED`); `0`: no names",
        seconds(0, _WEEK),
    )  # fmt: skip
    dns_answers_per_process: int = setting(
        256, "SYSMON_DNS_ANSWERS_PER_PROCESS",
        "(address, name) answers kept per process at most; the oldest go first",
        integer(1, 100_000),
    )  # fmt: skip
    activity_recent: int = setting(
        5, "SYSMON_ACTIVITY_RECENT",
        "events of each kind (connections, files, registry, image loads, handles opened, ...) "
        "a process's summary lists, newest first (`GET /process/{guid}/activity`); `0`: no "
        "summaries kept", integer(0, 100),
    )  # fmt: skip
    activity_ttl: float = setting(
        86400.0, "SYSMON_ACTIVITY_TTL",
        "seconds of stream time a process's summary stays after its last event",
        seconds(60, _TEN_YEARS), default_doc="86400 (1 day)",
    )  # fmt: skip
    rules_paths: tuple[Path, ...] = setting(
        (DEFAULT_RULES,), "SYSMON_RULES",
        "Sigma rule files and folders (SigmaHQ's layout), comma-separated; `default` is the "
        "shipped rules. A rule that cannot be evaluated is refused at start (logged, one line "
        "each, and counted); the others load", rule_paths, default_doc="`default`",
    )  # fmt: skip
    http_token: str = setting(
        "", "SYSMON_HTTP_TOKEN",
        "when set, every endpoint but `/health` wants `Authorization: Bearer <token>` (401 "
        "JSON otherwise), and Faust's built-in table pages are on",
        default_doc="none", secret=True,
    )  # fmt: skip
    kafka_security_protocol: str = setting(
        "PLAINTEXT", "KAFKA_SECURITY_PROTOCOL",
        "how every Kafka client of the app connects: `PLAINTEXT`, `SSL` (TLS), "
        "`SASL_PLAINTEXT` or `SASL_SSL` (SASL over TLS)", choice(SECURITY_PROTOCOLS, str.upper),
    )  # fmt: skip
    kafka_sasl_mechanism: str = setting(
        "", "KAFKA_SASL_MECHANISM",
        "with `SASL_*` (required there): `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`",
        upper, default_doc="none",
    )  # fmt: skip
    kafka_sasl_username: str = setting(
        "", "KAFKA_SASL_USERNAME", "with `SASL_*` (required there): the Kafka user",
        default_doc="none",
    )  # fmt: skip
    kafka_sasl_password: str = setting(
        "", "KAFKA_SASL_PASSWORD",
        "with `SASL_*` (required there): its password, taken as it is (never logged: the "
        "start-up line says `(set)`)", default_doc="none", secret=True, strip=False,
    )  # fmt: skip
    kafka_ssl_cafile: str = setting(
        "", "KAFKA_SSL_CAFILE",
        "with `SSL`/`SASL_SSL`: PEM file of the CA certificates that signed the brokers' "
        "certificates", default_doc="the system's CAs",
    )  # fmt: skip
    kafka_ssl_certfile: str = setting(
        "", "KAFKA_SSL_CERTFILE",
        "with `SSL`/`SASL_SSL`, for brokers that want mutual TLS: PEM client certificate (may "
        "hold the key too)", default_doc="none",
    )  # fmt: skip
    kafka_ssl_keyfile: str = setting(
        "", "KAFKA_SSL_KEYFILE",
        "its unencrypted PEM private key, when not in `KAFKA_SSL_CERTFILE`", default_doc="none",
    )  # fmt: skip

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

        See :mod:`sysmon_faust.stream.tree_replica`.
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
        if self.web_host in WILDCARD_HOSTS:
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
        """The settings as text, for the start-up log line: secrets as ``(set)``/``(none)``,
        unset optional ones as their documented default."""
        described = {}
        for declared in fields(self):
            value = getattr(self, declared.name)
            if declared.metadata["secret"]:
                described[declared.name] = "(set)" if value else "(none)"
            elif value is None:
                described[declared.name] = f"({declared.metadata['default_doc']})"
            else:
                described[declared.name] = str(value)
        return described

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of the environment (``os.environ`` by default): each declared
        setting parsed, then those checked together. Raises :class:`SettingsError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for declared in fields(cls):
            raw = env.get(declared.metadata["variable"], "")
            if declared.metadata["strip"]:
                raw = raw.strip()
            if raw:
                values[declared.name] = declared.metadata["parse"](
                    raw, declared.metadata["variable"]
                )
        settings = cls(**values)
        settings._check_topics_distinct()
        settings._check_kafka_security()
        return settings

    def _check_topics_distinct(self) -> None:
        seen: dict[str, str] = {}
        for declared in fields(self):
            if not declared.name.startswith("topic_"):
                continue
            name = getattr(self, declared.name)
            if name in seen:
                raise SettingsError(
                    f"{declared.metadata['variable']}={name!r} is the same topic as {seen[name]}"
                )
            seen[name] = declared.metadata["variable"]

    def _check_kafka_security(self) -> None:
        """The security settings, together: what each protocol needs and refuses."""
        protocol = self.kafka_security_protocol
        mechanism = self.kafka_sasl_mechanism
        if protocol.startswith("SASL_"):
            if not mechanism:
                raise SettingsError(
                    f"KAFKA_SASL_MECHANISM is required with KAFKA_SECURITY_PROTOCOL={protocol} "
                    f"({', '.join(SASL_MECHANISMS)})"
                )
            if mechanism not in SASL_MECHANISMS:
                raise SettingsError(
                    f"KAFKA_SASL_MECHANISM={mechanism!r} must be one of "
                    f"{', '.join(SASL_MECHANISMS)}"
                )
            if not self.kafka_sasl_username:
                raise SettingsError(
                    f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL={protocol}"
                )
            if not self.kafka_sasl_password.strip():
                raise SettingsError(
                    f"KAFKA_SASL_PASSWORD is required with KAFKA_SECURITY_PROTOCOL={protocol}"
                )
        else:
            for variable, value in (
                ("KAFKA_SASL_MECHANISM", mechanism),
                ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password.strip()),
            ):
                if value:
                    raise SettingsError(
                        f"{variable} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                        "SASL (SASL_PLAINTEXT or SASL_SSL)"
                    )
        files = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        for variable, file in files.items():
            if not file:
                continue
            if protocol not in ("SSL", "SASL_SSL"):
                raise SettingsError(
                    f"{variable} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                    "TLS (SSL or SASL_SSL)"
                )
            if not Path(file).is_file():
                raise SettingsError(f"{variable}={file!r}: no such file")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise SettingsError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE")
        if self.kafka_uses_tls:
            # Unreadable files fail now, not in a client.
            _ssl_context(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)


#: Every environment variable a setting is read from, in declaration order.
ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(
    declared.metadata["variable"] for declared in fields(Settings)
)


def declarations() -> tuple[Field[Any], ...]:
    """Every setting's declaration (a dataclass field whose metadata says the rest)."""
    return fields(Settings)


def docs_table() -> str:
    """The Markdown table of every setting: variable, default, bounds or choices, meaning."""
    rows = ["| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
    for declared in declarations():
        meta = declared.metadata
        default = meta["default_doc"] or f"`{_shown(declared.default)}`"
        rows.append(
            f"| `{meta['variable']}` | {default} | {_values(meta['parse'])} | {meta['doc']} |"
        )
    return "\n".join(rows) + "\n"


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _values(parse: Parser) -> str:
    if hasattr(parse, "bounds"):
        low, high = parse.bounds
        return f"{low} to {high}"
    if hasattr(parse, "options"):
        return ", ".join(f"`{option}`" for option in parse.options)
    kinds: dict[Parser, str] = {
        servers: "host:port list", topic: "topic name", app_id: "topic-name characters",
        instance_id: "topic-name characters, or empty",
        path: "path", rule_paths: "files and folders", upper: "text", text: "text",
    }  # fmt: skip
    return kinds.get(parse, "text")


if __name__ == "__main__":
    # python -m sysmon_faust.settings: the settings table of docs/settings.md.
    sys.stdout.write(docs_table())
