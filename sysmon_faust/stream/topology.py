"""The Faust App, its topics and its table — built from the settings, nothing else.

Topology (:mod:`sysmon_faust.stream.intake`, then the agent in :mod:`sysmon_faust.stream.agents`)::

    winlogbeat (raw bytes, any partitioning)
        │  intake (librdkafka batches): parse, filter to Sysmon 1/3/5, re-key by process_guid
        ├──► sysmon-process-create    (keyed; for other consumers)
        ├──► sysmon-network-connect   (keyed; for other consumers)
        ├──► sysmon-dlq               (what could not be read, with the reason)
        ├──► <app_id>-process-tree    (each creation's parent link, and watermarks;
        │         │                    compacted; the join deletes a link with its row)
        │         └── read whole by every worker: its process-tree copy (RocksDB)
        └──► <app_id>-events-by-process-guid   (1, 3, 5 together, batched)
                 │  join_by_process_guid
                 ├── process table  (ProcessCreate rows, RocksDB + changelog;
                 │                   pending connects and an expiry index beside it)
                 ├── ancestry from the process-tree copy
                 ├──► sysmon-join / sysmon-network-unmatched
                 └──► sysmon-alerts   (SYSMON_RULES over the enriched events)
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faust.exceptions import AlreadyConfiguredWarning

from sysmon_faust.compat import faust_fixes
from sysmon_faust.core import compiled
from sysmon_faust.core.rekey import kafka_partitioner
from sysmon_faust.settings import Settings
from sysmon_faust.stream import (
    bulk_restore,
    output_producer,
    security,
    startup,
    state_check,
    transactions,
)
from sysmon_faust.stream.faults import faults
from sysmon_faust.stream.store import BLOOM_FILTER_BITS_PER_KEY
from sysmon_faust.stream.tree_replica import TreeReplica

log = logging.getLogger(__name__)

# No commit passes a record whose output a fault kept from Kafka
# (compat.faust_fixes, 10.): the parts stopped by a fault say so.
faust_fixes.COMMIT_BLOCKED_BY.append(lambda: list(faults.current))


def _assigned_to_another_worker(made_for: str, this: str) -> None:
    # Static membership handed this worker another's assignment (faust_fixes
    # 19), in the consumer's thread: one line, as a refused start, and out
    # before anything of it is consumed. Exit status 1, as a bad setting.
    line = startup.assignment_of_another_worker(
        settings.group_instance_id, made_for, this, settings.session_timeout
    )
    log.critical("sysmon-faust: %s", line)
    # The join that brought the assignment renewed the id's session: exiting
    # now, a worker restarted within the session timeout would get the same
    # assignment again, forever. This thread runs the group's heartbeats;
    # blocked past the session timeout, the group drops the member (a
    # duplicate's was replaced already) and the id is free for a restart.
    log.critical(
        "sysmon-faust: leaving group %s by silence: exiting in %.0f s", settings.app_id,
        settings.session_timeout + LEAVE_BY_SILENCE_MARGIN_S,
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        handler.flush()
    time.sleep(settings.session_timeout + LEAVE_BY_SILENCE_MARGIN_S)
    os._exit(1)


#: Seconds beyond the session timeout a refused static member stays silent.
LEAVE_BY_SILENCE_MARGIN_S = 1.0

faust_fixes.ASSIGNED_TO_ANOTHER_URL.append(_assigned_to_another_worker)

# Large enough for a dead letter that carries a 1 MiB input value as base64.
MAX_RECORD_BYTES = 16 * 1024 * 1024

#: The worker's settings. A bad one raises SettingsError here, which the
#: worker's entry point (sysmon_faust.__getattr__) reports in one line.
settings = Settings.from_env()


def _worker_datadir(conf_web_port: int) -> Path:
    # Workers that share a machine (and SYSMON_DATA_DIR) must not open the same
    # RocksDB files: RocksDB takes an exclusive lock. The web port is unique
    # per worker on a host and stable across restarts, so a restarted worker
    # finds its own state again instead of replaying the whole changelog.
    return settings.data_dir / f"{settings.app_id}-worker-{conf_web_port}"


class SysmonApp(faust.App):
    def _new_transport(self) -> faust.types.TransportT:
        # faust's transport with a fix for records skipped after a rebalance
        # (see sysmon_faust.compat.faust_fixes).
        return faust_fixes.Transport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        # ``--web-port`` on the command line is applied after the App was
        # built, and before this, which creates the data directories.
        for refusal in (
            startup.check_state_folder(settings.data_dir),
            startup.check_web_port(self.conf.web_bind, self.conf.web_port),
        ):
            if refusal is not None:
                raise refusal
        with warnings.catch_warnings():
            # Nothing has read datadir yet: the stores open after this.
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            self.conf.datadir = _worker_datadir(self.conf.web_port)
        exactly_once = settings.processing_guarantee == transactions.EXACTLY_ONCE
        if exactly_once and transactions.discard_state_after_crash(
            self.conf.datadir, self.conf.tabledir
        ):
            log.warning(
                "exactly_once: the last stop was not clean; local state in %s discarded, "
                "rebuilding it from the changelogs (committed records only)",
                self.conf.tabledir,
            )
        described = settings.describe()
        for web_setting in ("web_host", "web_port", "web_advertised_host"):
            described.pop(web_setting)
        log.info(
            "sysmon-faust settings: %s; state in %s; web on %s:%s, reached as %s; core %s",
            " ".join(f"{name}={value}" for name, value in described.items()),
            self.conf.tabledir,
            self.conf.web_bind,
            self.conf.web_port,
            self.conf.canonical_url,
            compiled.running(),  # sysmon_faust.core.compiled: mypyc or plain Python
        )
        # Before any consumer subscribes: a topic created after the
        # subscription is only noticed at the next metadata refresh (minutes),
        # and its partitions would sit unassigned until then. A broker that
        # does not answer, refuses the login, or holds this app's topics with
        # another partition count stops the worker here (SysmonWorker.start).
        await ensure_topics()
        # Before the stores open: Faust's recovery would stop the worker on
        # state ahead of its changelog (ConsistencyError), at every restart,
        # and keep state of a lost cluster whose offsets happen to fit.
        try:
            await state_check.set_aside_stale_worker_state(
                self.conf.datadir,
                self.conf.tabledir,
                {table.name: table.changelog_topic.get_topic_name() for table in TABLES},
                settings.bootstrap_servers,
                settings.kafka_client_options(),
            )
        except KafkaError as exc:
            log.warning(
                "could not compare local state with the changelogs (%r); starting with it", exc
            )
        await super().on_first_start()

    async def on_shutdown(self) -> None:
        # Everything stopped: Faust committed the last transactions.
        await super().on_shutdown()
        # After a fault of our own nothing was committed: the local state may
        # be ahead of the transactions, and must be rebuilt at the next start.
        if settings.processing_guarantee == transactions.EXACTLY_ONCE and not faults.current:
            transactions.mark_clean_stop(self.conf.datadir)


class SysmonWorker(faust_fixes.Worker):
    """Faust's worker: its banner names the real state folder, a failed start is one line."""

    def __init__(self, app: faust.App, *services: Any, **kwargs: Any) -> None:
        # ``--web-port`` is applied before the worker is made, and the state
        # folder is named after it: the banner printed next shows this one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            app.conf.datadir = _worker_datadir(app.conf.web_port)
        super().__init__(app, *services, **kwargs)

    async def start(self) -> None:
        try:
            await super().start()
        except (startup.StartRefused, KafkaError, OSError) as exc:
            line = str(exc) if isinstance(exc, startup.StartRefused) else startup.unexpected(exc)
            # mode would log the traceback and exit 1: one line instead (the
            # log's last, and stderr's), the traceback for -l debug only.
            log.debug("the worker could not start", exc_info=exc)
            log.critical("sysmon-faust: %s", line)
            raise SystemExit(f"sysmon-faust: {line}") from None


app = SysmonApp(
    settings.app_id,
    broker=settings.kafka_broker_url,
    # KAFKA_SECURITY_PROTOCOL and the KAFKA_SASL_*/KAFKA_SSL_* settings, for
    # Faust's consumer, producer and topic creation.
    broker_credentials=settings.faust_broker_credentials(),
    store="rocksdb://",
    datadir=_worker_datadir(settings.web_port),
    processing_guarantee=settings.processing_guarantee,
    topic_partitions=settings.partitions,
    web_host=settings.web_url_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    producer_max_request_size=MAX_RECORD_BYTES,
    producer_compression_type=settings.compression_type,
    # Faust's default of 0 sends every enriched record in a produce request of
    # its own: a quarter of the join's CPU in a profile. 5 ms is Kafka's default
    # since 4.0. What goes this way now: ticks and Faust's own records (the
    # join's outputs and changelogs go through librdkafka under both
    # guarantees, at SYSMON_PRODUCER_LINGER_MS). When the outputs still went
    # this way under exactly_once, 100 ms cost more here (261 against 235 µs
    # per event, make bench's mix, two rounds each).
    producer_linger=0.005,
    # Kafka's default partitioner with the word-wise, cached murmur2 of
    # sysmon_faust.core.rekey (the same partitions: a unit test holds them
    # equal): aiokafka's byte-wise one was 5 % of the worker's CPU once every
    # Sysmon event type is enriched (py-spy, make bench's mix).
    producer_partitioner=kafka_partitioner,
    # Records of the re-keying topic are batches of up to rekey.MAX_BATCH_BYTES:
    # Faust's default of 4096 buffered records per stream would be gigabytes.
    stream_buffer_maxsize=256,
    # How soon the group notices a worker that died without saying goodbye
    # (SIGKILL, lost host) and gives its partitions to the others. Faust's
    # default is 60 s; heartbeats come from a thread of their own, so a busy
    # agent does not miss them.
    broker_session_timeout=settings.session_timeout,
    # Static membership (KIP-345) when set: a restart within the session
    # timeout is no rebalance, for this group nor for the intake's.
    consumer_group_instance_id=settings.group_instance_id or None,
    # A warm copy of every table partition on one other worker, so a takeover
    # does not wait for a full changelog replay.
    table_standby_replicas=1,
    broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
    # Faust's built-in table pages dump table contents: only behind the token.
    web_tables_enabled=bool(settings.http_token),
    web_graph_enabled=False,
    # Keeps the root logger at the level asked for (see sysmon_faust.compat.faust_fixes).
    Worker=SysmonWorker,
)


# --- topics -----------------------------------------------------------------

# The input topic (Winlogbeat's) is read by sysmon_faust.stream.intake, not by Faust.

#: ProcessCreate and NetworkConnect in ONE topic, partitioned by process_guid
#: (the intake writes it, the join agent reads it; the record format is in
#: sysmon_faust.core.rekey). Kafka keeps a partition in the order it was written,
#: so the join sees a process's creation before the connects that followed it
#: in the input — whatever the speed. Two topics (ksqlDB's layout) would race.
events_by_guid_topic = app.topic(
    settings.topic_by_guid,
    key_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
    # Records carry the event time, which may be years old (a replayed
    # recording): time-based retention would delete them before the join reads
    # them. Nothing expires by time; sysmon_faust.stream.purge deletes what the join
    # has committed, as Kafka Streams does with its repartition topics.
    config={"retention.ms": "-1", "max.message.bytes": str(MAX_RECORD_BYTES)},
)

faust_fixes.start_uncommitted_from_beginning(settings.topic_by_guid)
# A worker without its state reads the changelogs in bulk first (issue 21);
# under exactly_once also the transaction markers a clean restart finds.
_EXACTLY_ONCE = settings.processing_guarantee == transactions.EXACTLY_ONCE
bulk_restore.install(
    app,
    output_producer.client_config(settings, f"{settings.app_id}-restore"),
    min_records=1 if _EXACTLY_ONCE else bulk_restore.BULK_MIN_RECORDS,
)

#: Keyed output topics also carry event time, so the ones this app creates keep
#: records by size, not age. Per partition.
OUTPUT_RETENTION_BYTES = 1024**3


def _keyed_output(name: str) -> faust.TopicT:
    return app.topic(
        name,
        key_type=str,
        key_serializer="raw",
        partitions=settings.partitions,
        config={
            "retention.ms": "-1",
            "retention.bytes": str(OUTPUT_RETENTION_BYTES),
            # An event as large as the input takes must fit in what it becomes.
            "max.message.bytes": str(MAX_RECORD_BYTES),
        },
    )


process_create_topic = _keyed_output(settings.topic_process_create)
network_connect_topic = _keyed_output(settings.topic_network_connect)
join_topic = _keyed_output(settings.topic_join)
unmatched_topic = _keyed_output(settings.topic_unmatched)
alerts_topic = _keyed_output(settings.topic_alerts)
enriched_topic = _keyed_output(settings.topic_enriched)
dlq_topic = app.topic(
    settings.topic_dlq,
    key_serializer="raw",
    partitions=settings.partitions,
    config={"max.message.bytes": str(MAX_RECORD_BYTES)},
)

#: Every process's parent link, written by the intake in the partition of
#: its row, and the intake's watermarks per input partition
#: (sysmon_faust.stream.tree_replica). Compacted: a link stays until the join
#: deletes its row and writes a tombstone.
process_tree_topic = app.topic(
    settings.topic_process_tree,
    key_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
    config={"cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES)},
)

#: This worker's copy of the whole process tree; its reader runs as a task
#: (sysmon_faust.stream.agents).
tree_replica = TreeReplica(
    settings.topic_process_tree,
    settings.partitions,
    settings.bootstrap_servers,
    settings.kafka_client_options(),
    read_committed=settings.processing_guarantee == transactions.EXACTLY_ONCE,
)

OUTPUT_TOPICS = (
    process_create_topic,
    network_connect_topic,
    join_topic,
    unmatched_topic,
    alerts_topic,
    enriched_topic,
    dlq_topic,
)

# --- tables -----------------------------------------------------------------

# Faust's RocksDB defaults are per partition: 3 x 64 MiB write buffers and a
# 2 GiB block cache, so memory grows with partitions and table size. Bounded
# here, per partition: (2 x 8 + 16) MiB for the process table, (2 x 2 + 4)
# MiB for each of the small-valued pending and index tables — 192 MiB in all
# at 4 partitions. A worker's RSS grows while these fill, then stops (README,
# "Benchmark"). Bloom filters: store.BLOOM_FILTER_BITS_PER_KEY.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * 1024**2,
    "block_cache_compressed_size": 4 * 1024**2,
    "bloom_filter_size": BLOOM_FILTER_BITS_PER_KEY,
}
SMALL_ROCKSDB_OPTIONS = {
    "write_buffer_size": 2 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 4 * 1024**2,
    "block_cache_compressed_size": 1 * 1024**2,
    "bloom_filter_size": BLOOM_FILTER_BITS_PER_KEY,
}


def _table_by_guid(
    name: str, help: str, options: dict[str, int] = ROCKSDB_OPTIONS
) -> faust.types.TableT:
    # Keys are the GUID's UTF-8 text (or, for the index, bytes that contain
    # it), byte for byte the key of the keyed topics (faust serializes
    # ``bytes`` keys raw, ``str`` keys as JSON). Values are bytes, the raw
    # codec: JSON the join reads as dicts. Every table is co-partitioned with
    # the re-keying topic and changes only from the join agent.
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        # Faust's store pops keys from the dict it is given. The driver is
        # named: Faust switches to rocksdict (another RocksDB major, another
        # API our store and state check use) whenever it is importable —
        # Quix Streams, the benchmark's peer, installs it.
        options={**options, "driver": "python-rocksdb"},
        # A row as large as the input takes must fit in the changelog too.
        extra_topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)},
        help=help,
    )


#: ProcessCreate rows by process_guid (models.ProcessRow): the table side of
#: the join. RocksDB on local disk, every change also written to a compacted
#: changelog topic so a worker that loses its disk, or takes over a
#: partition, rebuilds it.
process_table = _table_by_guid(
    "process-create", "Sysmon ProcessCreate rows keyed by canonical process_guid"
)

#: The grace buffer (sysmon_faust.core.join.grace): NetworkConnects waiting for their
#: process's creation, one record each, keyed process_guid + event time.
#: Changelog-backed: waiting connects survive restarts and move with their
#: partition.
pending_table = _table_by_guid(
    "pending-connects",
    "events waiting (up to SYSMON_JOIN_GRACE) for their ProcessCreate; also parked joins, "
    "alert groups, DNS answers and activity summaries per process",
    SMALL_ROCKSDB_OPTIONS,
)

#: Deadlines of waiting connects and of rows (retention, TTL), and the
#: partition's stream time (sysmon_faust.core.join.expiry): keys sort by deadline, so
#: expiry reads the due prefix of a partition instead of scanning a table.
expiry_index = _table_by_guid(
    "expiry-index",
    "Deadlines in stream time: waiting connects, rows after termination or TTL",
    SMALL_ROCKSDB_OPTIONS,
)

#: The changelog-backed tables (checked at start by sysmon_faust.stream.state_check).
TABLES = (process_table, pending_table, expiry_index)


async def ensure_topics() -> None:
    """Create this app's topics (the input and the tables' changelogs too) if missing.

    With their configs, ``SYSMON_PARTITIONS`` partitions, and the replicas
    :func:`startup.replication_factor` gives (with 3 or more, writes wait for
    2: :func:`startup.min_insync_replicas`). An existing topic is left as it
    is: the input may be Winlogbeat's, the others an operator's; one with
    another partition count stops the worker (:func:`startup.partition_mismatch`).
    Raises :class:`startup.StartRefused` (and its kind
    :class:`security.KafkaAccessRefused`) with the one line to show.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        # The first client of a worker: a refused login (wrong password,
        # mechanism, protocol) is told here, in one line, instead of as
        # "Unable to bootstrap".
        refusal = await security.explain_refusal(settings)
        if refusal is not None:
            raise security.KafkaAccessRefused(refusal) from None
        raise startup.kafka_unreachable(settings.bootstrap_servers, exc) from None
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        replicas = startup.replication_factor(
            settings.replication_factor,
            await _default_replication_factor(admin, brokers[0]["node_id"]),
            len(brokers),
        )
        with warnings.catch_warnings():
            # What Faust creates itself (its leader topic) gets as many.
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            app.conf.topic_replication_factor = replicas
        single = startup.single_replica_warning(replicas, len(brokers))
        if single is not None:
            log.warning("sysmon-faust: %s", single)
        moving = startup.static_member_address_warning(
            settings.group_instance_id, settings.web_advertised_host, settings.web_host
        )
        if moving is not None:
            log.warning("sysmon-faust: %s", moving)
        existing = set(await admin.list_topics())
        keyed = [
            name for name in (
                events_by_guid_topic.get_topic_name(),
                process_tree_topic.get_topic_name(),
                *(table.changelog_topic.get_topic_name() for table in TABLES),
            ) if name in existing
        ]  # fmt: skip
        if keyed:
            described = await admin.describe_topics(keyed)
            found = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
            mismatch = startup.partition_mismatch(settings.partitions, found, settings.app_id)
            if mismatch is not None:
                raise mismatch
        missing = [t for t in _wanted_topics(replicas) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                await admin.create_topics(missing)
            log.info(
                "created topics (%d replica(s)): %s",
                replicas, ", ".join(topic.name for topic in missing),
            )  # fmt: skip
    finally:
        await admin.close()


def _wanted_topics(replicas: int) -> list[NewTopic]:
    extra = startup.min_insync_replicas(replicas)
    wanted = [
        NewTopic(
            topic.get_topic_name(),
            topic.partitions or settings.partitions,
            replicas,
            topic_configs={**(topic.config or {}), **extra},
        )
        for topic in (*OUTPUT_TOPICS, events_by_guid_topic, process_tree_topic)
    ]
    # The changelogs here rather than by Faust (which finds them and goes
    # on): with the replicas and configs the others get.
    wanted += [
        NewTopic(
            table.changelog_topic.get_topic_name(),
            settings.partitions,
            replicas,
            topic_configs={
                "cleanup.policy": "compact",
                **(table.changelog_topic.config or {}),
                **extra,
            },
        )
        for table in TABLES
    ]
    wanted.append(
        NewTopic(settings.topic_input, settings.partitions, replicas, topic_configs=extra)
    )
    return wanted


async def _default_replication_factor(admin: AIOKafkaAdminClient, broker_id: int) -> int:
    """The broker's ``default.replication.factor`` (1 when it cannot be read)."""
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(broker_id))]
        )
    except KafkaError as exc:
        log.warning("could not read the brokers' default.replication.factor (%r): 1", exc)
        return 1
    for response in responses:
        for resource in response.resources:
            for name, value, *_ in resource[4]:
                if name == "default.replication.factor":
                    return int(value)
    return 1
