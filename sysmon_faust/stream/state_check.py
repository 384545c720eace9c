"""Local state that is ahead of, or not from, the changelog it was built from: set aside, rebuilt.

A worker keeps its tables (RocksDB, one database per table partition) and its
process-tree copy on local disk, each with the offset of the changelog (or
tree topic) it has applied. When the cluster under it is rebuilt — the
broker's data lost, topics deleted and created again — those offsets point
past the end of topics that now hold less, or something else. Faust notices
only some of it: its recovery raises ``ConsistencyError`` and the worker
stops, every restart, until someone deletes the state by hand (and with a
persisted offset of 0, or a changelog holding exactly one record, it notices
nothing and keeps rows of the old cluster).

Kafka Streams wipes a task's state when it finds it corrupted and restores it
from the changelog. Here, before any store opens, the worker compares:

* each table partition's persisted offset with its changelog partition's
  end offset (the high watermark, read uncommitted: every record ever
  acknowledged is below it, committed or not). State that has applied
  offset *n* needs ``n < end``; a changelog topic that does not exist counts
  as ending at 0;
* the Kafka cluster id recorded beside the state with the cluster's id now:
  a rebuilt cluster gets a new id, and its changelogs, however long, are not
  the ones the state was built from.

On a mismatch the state directory is renamed (never deleted: it may be all
that is left of the data) to ``<name>.set-aside-<UTC time>``, one warning line
says what, why and that the state is being rebuilt, and recovery starts from
the beginning of the changelogs. The process-tree copy does the same against
``<app_id>-process-tree`` (:func:`set_aside_stale_tree_copy`).

Not detected: a changelog deleted and created again *in the same cluster*
that has since grown past the state's offsets (only Kafka's topic ids, which
aiokafka does not read, would tell).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.stores.rocksdb import RocksDBOptions

log = logging.getLogger(__name__)

#: Where Faust's RocksDB store keeps a partition's persisted offset: the offset
#: of the last changelog record applied (faust.stores.rocksdb.Store.offset_key).
FAUST_OFFSET_KEY: Final = b"__faust\x00offset__"
#: Where the process-tree copy keeps, per partition, the next offset to read
#: (sysmon_faust.stream.tree_replica; the partition's number follows the prefix).
TREE_OFFSET_PREFIX: Final = b"\x00offset:"
#: Beside the worker's state: the id of the Kafka cluster it was built from.
CLUSTER_ID_FILE: Final = "kafka-cluster-id"
SET_ASIDE_INFIX: Final = ".set-aside-"

#: Only opened to read one key: small buffers, no cache worth having.
_READ_ONLY_OPTIONS: Final = {
    "write_buffer_size": 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 1024**2,
    "block_cache_compressed_size": 1024**2,
}

TopicPartitionKey = tuple[str, int]


# --- pure logic -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ahead:
    """A partition whose local state has read further than its topic holds."""

    topic: str
    partition: int
    #: The first offset the local state has not applied (Faust's persisted offset + 1).
    next_offset: int
    #: The partition's end offset now (high watermark); 0 when the topic is missing.
    end_offset: int
    topic_exists: bool

    def __str__(self) -> str:
        missing = "" if self.topic_exists else " (topic missing)"
        return (
            f"{self.topic}[{self.partition}]: next offset {self.next_offset} "
            f"> end offset {self.end_offset}{missing}"
        )


def find_ahead(
    next_offsets: Mapping[TopicPartitionKey, int],
    end_offsets: Mapping[TopicPartitionKey, int],
    existing_topics: Iterable[str],
) -> list[Ahead]:
    """The partitions whose local state is beyond the end of their topic, sorted.

    ``next_offsets``: per (topic, partition), the first offset the local state
    has not applied (0: nothing applied — never ahead). ``end_offsets``: per
    (topic, partition) of the cluster now, the end offset (high watermark,
    the offset the next record will get). A partition missing from
    ``end_offsets`` ends at 0: its topic is gone, or has fewer partitions.
    """
    existing = set(existing_topics)
    found = []
    for (topic, partition), next_offset in sorted(next_offsets.items()):
        end = end_offsets.get((topic, partition), 0)
        if next_offset > end:
            found.append(Ahead(topic, partition, next_offset, end, topic in existing))
    return found


def cluster_changed(recorded: str | None, current: str | None) -> bool:
    """Whether state recorded against cluster ``recorded`` is not from cluster ``current``.

    Unknown on either side (state older than the record, a broker that does
    not tell its id) is no evidence: False.
    """
    return bool(recorded and current and recorded != current)


def describe_mismatch(
    ahead: list[Ahead], recorded_cluster: str | None, current_cluster: str | None, shown: int = 3
) -> str:
    """Why the state is set aside, in one line: the cluster change, then up to ``shown``
    partitions ahead and how many more."""
    reasons = []
    if cluster_changed(recorded_cluster, current_cluster):
        reasons.append(f"built from Kafka cluster {recorded_cluster}, now {current_cluster}")
    if ahead:
        listed = "; ".join(str(a) for a in ahead[:shown])
        more = f" (and {len(ahead) - shown} more partitions)" if len(ahead) > shown else ""
        reasons.append(listed + more)
    return "; ".join(reasons)


def set_aside_path(path: Path, now: datetime) -> Path:
    """The sibling ``path`` is renamed to: ``<name>.set-aside-<YYYYmmddTHHMMSSZ>``.

    ``now`` is converted to UTC. When that name is taken (two in one second),
    ``-2``, ``-3``... is added.
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}{SET_ASIDE_INFIX}{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{SET_ASIDE_INFIX}{stamp}-{n}")
        n += 1
    return candidate


def set_aside(path: Path, now: datetime | None = None) -> Path:
    """Rename ``path`` to :func:`set_aside_path` and return the new path (nothing is deleted).

    Raises OSError when the rename fails (e.g. no permission on the parent).
    """
    target = set_aside_path(path, now or datetime.now(UTC))
    path.rename(target)
    return target


# --- reading local state ------------------------------------------------------------


def _read_only(path: Path) -> Any:
    options = RocksDBOptions(use_rocksdict=False, **_READ_ONLY_OPTIONS)
    return options.open(path, read_only=True)


def table_next_offsets(
    tabledir: Path, changelogs: Mapping[str, str]
) -> dict[TopicPartitionKey, int]:
    """Per (changelog topic, partition), the first offset a local table partition has not applied.

    ``tabledir``: Faust's ``conf.tabledir``, where table ``t``'s partition
    ``p`` is the RocksDB ``<t>-<p>.db``. ``changelogs``: table name →
    changelog topic. Partitions without a persisted offset are left out.
    Raises ``rocksdb.errors.RocksIOError`` when a database is locked or
    unreadable (it is opened read-only, before the worker's stores open).
    """
    found: dict[TopicPartitionKey, int] = {}
    for table, topic in changelogs.items():
        pattern = re.compile(re.escape(table) + r"-(\d+)\.db")
        for path in tabledir.glob(f"{table}-*.db") if tabledir.is_dir() else ():
            match = pattern.fullmatch(path.name)
            if match is None:  # another table whose name starts with this one's
                continue
            db = _read_only(path)
            try:
                persisted = db.get(FAUST_OFFSET_KEY)
            finally:
                db.close()
            if persisted is not None:
                found[(topic, int(match.group(1)))] = int(persisted) + 1
    return found


def tree_next_offsets(path: Path, topic: str) -> dict[TopicPartitionKey, int]:
    """Per (tree topic, partition), the next offset the process-tree copy at ``path`` reads.

    Empty when there is no copy yet. Raises ``rocksdb.errors.RocksIOError``
    when the copy is open elsewhere or unreadable.
    """
    if not (path / "CURRENT").exists():
        return {}
    db = _read_only(path)
    try:
        return _tree_offsets(db, topic)
    finally:
        # Only now: an iterator still alive when its database closes crashes
        # the process (python-rocksdb).
        db.close()


def _tree_offsets(db: Any, topic: str) -> dict[TopicPartitionKey, int]:
    keys = db.iteritems()
    keys.seek(TREE_OFFSET_PREFIX)
    found = {}
    for key, value in keys:
        if not key.startswith(TREE_OFFSET_PREFIX):
            break  # keys are sorted: past the prefix
        found[(topic, int(key[len(TREE_OFFSET_PREFIX) :]))] = int(value)
    return found


def recorded_cluster_id(state_dir: Path) -> str | None:
    try:
        return (state_dir / CLUSTER_ID_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def record_cluster_id(state_dir: Path, cluster_id: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / CLUSTER_ID_FILE).write_text(cluster_id + "\n")


def _holds_state(state_dir: Path) -> bool:
    # The cluster id alone (state discarded after a crash) is nothing to set aside.
    return state_dir.is_dir() and any(p.name != CLUSTER_ID_FILE for p in state_dir.iterdir())


# --- the cluster now ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the cluster holds now, as far as the checks need it."""

    #: None when the broker does not tell it.
    cluster_id: str | None
    #: Of the topics asked about, those that exist.
    topics: frozenset[str]
    #: Per (topic, partition) of those topics: the end offset (high watermark).
    end_offsets: Mapping[TopicPartitionKey, int]


async def cluster_view(
    bootstrap_servers: str, client_options: Mapping[str, Any], topics: Iterable[str]
) -> ClusterView:
    """The cluster's id, and which of ``topics`` exist with their partitions' end offsets.

    Raises ``aiokafka.errors.KafkaError`` when the cluster cannot be asked.
    """
    asked = set(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        # Only existing topics are described: naming a missing one in a
        # metadata request creates it where auto.create.topics.enable is on.
        existing = asked & set(await admin.list_topics())
        described = await admin.describe_topics(sorted(existing)) if existing else []
    finally:
        await admin.close()
    partitions = [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    ]
    end_offsets: dict[TopicPartitionKey, int] = {}
    if partitions:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            # The high watermark: records of open (or aborted) transactions are
            # below it, and local state may already hold them.
            isolation_level="read_uncommitted",
            **client_options,
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        end_offsets = {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    cluster_id = cluster.get("cluster_id")
    return ClusterView(cluster_id or None, frozenset(existing), end_offsets)


# --- the checks -------------------------------------------------------------------


def check_worker_state(
    worker_dir: Path,
    tabledir: Path,
    changelogs: Mapping[str, str],
    view: ClusterView,
    now: datetime | None = None,
) -> Path | None:
    """Set ``worker_dir`` aside when its tables are ahead of their changelogs or from another
    cluster; then record the cluster's id in (the new) ``worker_dir``.

    ``tabledir`` is inside ``worker_dir`` (Faust's ``conf.tabledir``);
    ``changelogs``: table name → changelog topic. Returns where the state
    went, or None when it stays. Must run before the stores open. Raises
    OSError when the rename fails, ``rocksdb.errors.RocksIOError`` when a
    store cannot be read.
    """
    recorded = recorded_cluster_id(worker_dir)
    ahead = find_ahead(table_next_offsets(tabledir, changelogs), view.end_offsets, view.topics)
    moved_to = None
    if _holds_state(worker_dir) and (ahead or cluster_changed(recorded, view.cluster_id)):
        moved_to = set_aside(worker_dir, now)
        log.warning(
            "local state %s is not from its changelogs (%s): set aside as %s, "
            "rebuilding it from the changelogs",
            worker_dir, describe_mismatch(ahead, recorded, view.cluster_id), moved_to.name,
        )  # fmt: skip
    if view.cluster_id:
        record_cluster_id(worker_dir, view.cluster_id)
    return moved_to


def check_tree_copy(
    path: Path, topic: str, view: ClusterView, now: datetime | None = None
) -> Path | None:
    """Set the process-tree copy at ``path`` aside when it has read beyond the end of ``topic``.

    Returns where it went, or None when it stays. Must run before the copy
    opens. Raises as :func:`check_worker_state`.
    """
    ahead = find_ahead(tree_next_offsets(path, topic), view.end_offsets, view.topics)
    if not ahead:
        return None
    moved_to = set_aside(path, now)
    log.warning(
        "process-tree copy %s is not from %s (%s): set aside as %s, reading the topic again",
        path, topic, describe_mismatch(ahead, None, None), moved_to.name,
    )  # fmt: skip
    return moved_to


async def set_aside_stale_worker_state(
    worker_dir: Path,
    tabledir: Path,
    changelogs: Mapping[str, str],
    bootstrap_servers: str,
    client_options: Mapping[str, Any],
) -> Path | None:
    """:func:`check_worker_state` against the cluster now (at worker start, before the stores
    open). Raises ``aiokafka.errors.KafkaError`` when the cluster cannot be asked."""
    view = await cluster_view(bootstrap_servers, client_options, changelogs.values())
    return check_worker_state(worker_dir, tabledir, changelogs, view)


async def set_aside_stale_tree_copy(
    path: Path, topic: str, bootstrap_servers: str, client_options: Mapping[str, Any]
) -> Path | None:
    """:func:`check_tree_copy` against the cluster now (before the copy opens).

    A cluster that cannot be asked is logged and the copy kept: its reader
    will retry, and a copy that is only behind needs nothing.
    """
    if not (path / "CURRENT").exists():
        return None
    try:
        view = await cluster_view(bootstrap_servers, client_options, [topic])
    except KafkaError as exc:
        log.warning("process-tree copy: could not compare %s with %s (%r)", path, topic, exc)
        return None
    return check_tree_copy(path, topic, view)
