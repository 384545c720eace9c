"""Every reach into faust-streaming's and aiokafka's private API, each with why (one place).

faust-streaming 0.15 and aiokafka 0.14 are pinned (pyproject.toml); an
upgrade checks these first. The longer story of each is in
docs/faust-workarounds.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.cluster import ClusterMetadata


def producer_buffer(app: Any) -> asyncio.Queue[Any]:
    """Faust's queue of changelog writes not sent yet (``.size`` reads settings per call).

    The intake yields while it is not empty: the join's backlog is its
    backpressure (stream/intake.py, measured at ~90 joins/s without).
    """
    pending: asyncio.Queue[Any] = app.producer.buffer.pending
    return pending


def transaction_producer(producer: Any, transactional_id: str | None) -> Any:
    """The producer of one partition's transaction under exactly_once (the worker's:
    ``stream.transactional_producer.FaustTransactionProducer``, faust_fixes 12).

    Faust has no public way to send in a given transaction but its topic
    layer, ~25 µs per record (stream/transactions.py).
    """
    return producer._transaction_producers[transactional_id]


def raw_rocksdb(store: Any) -> Any:
    """Faust's RocksDB store of a table, checked to keep keys and values as raw bytes.

    The join reads and writes it without Faust's per-key layers (stream/store.py).
    Raises RuntimeError when a codec would change the bytes.
    """
    for encode in (store._encode_key, store._encode_value):
        if encode(b"\x00probe") != b"\x00probe":
            raise RuntimeError(f"table store {store!r}: keys and values must be stored raw")
    return store


def rocksdb_for_partition(store: Any, partition: int) -> Any:
    """The RocksDB database of one partition of a Faust table store."""
    return store._db_for_partition(partition)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """Faust's record of what it last committed for ``tp`` (/health's progress per partition)."""
    committed: int | None = consumer._committed_offset.get(tp)
    return committed


async def fetch_topic_metadata(client: Any, topic: str) -> bool:
    """Ask the cluster for one topic's metadata; aiokafka's public call asks for every topic's.

    /health's broker probe (http/observability.py), every few seconds: all
    topics' metadata is large on a big cluster.
    """
    answered: bool = await client._metadata_update(ClusterMetadata(), [topic])
    return answered


def unknown_subscribed_topics(consumer: Any) -> set[str]:
    """Topics an aiokafka group consumer subscribes to of which its metadata knows no partition.

    faust_fixes 17: aiokafka's leader assigns none of them and looks again
    only when its metadata expires.
    """
    subscription = consumer._subscription.subscription
    if subscription is None:
        return set()
    cluster = consumer._client.cluster
    return {topic for topic in subscription.topics if not cluster.partitions_for_topic(topic)}


async def refresh_metadata(consumer: Any) -> None:
    """Have an aiokafka consumer's client refresh its metadata now, and wait for it.

    faust_fixes 17: a changed partition count in the leader's fresh metadata
    makes aiokafka rejoin the group; the consumer has no public call for it.
    """
    await consumer._client.force_metadata_update()


def agent_actors(agent: Any) -> list[Any]:
    """A Faust agent's running instances (/health: is the join running?)."""
    return [actor for actor in agent._actors if actor.actor_task is not None]


def owner_url(app: Any, tp: Any) -> str | None:
    """The web address Faust's assignor recorded for the worker that owns ``tp``."""
    url: str | None = app.assignor._tps_url.get(tp)
    return url


def on_recovery_edges(
    started: Callable[[Any], None], ended: Callable[[Any], None]
) -> None:  # fmt: skip
    """Call ``started(recovery)`` each time Faust's table recovery marks itself started, and
    ``ended(recovery)`` when it marks itself ended.

    Faust marks the start twice per recovery: before it knows the changelogs'
    highwaters and again once it does, just before it reads them — the second
    is where ``Recovery.active_remaining_total()`` is the whole recovery. A
    recovery shorter than a sampling interval is seen this way too
    (sysmon_faust.core.recovery_progress). Faust has no signal for either.
    """
    from faust.tables.recovery import Recovery

    set_started, set_ended = Recovery._set_recovery_started, Recovery._set_recovery_ended

    def _started(self: Any) -> None:
        set_started(self)
        started(self)

    def _ended(self: Any) -> None:
        set_ended(self)
        ended(self)

    Recovery._set_recovery_started = _started  # type: ignore[method-assign]
    Recovery._set_recovery_ended = _ended  # type: ignore[method-assign]


def before_active_offsets(hook: Callable[[Any, set[Any]], Awaitable[None]]) -> None:
    """Await ``hook(recovery, tps)`` each time Faust's recovery is about to read the persisted
    offsets of the changelog partitions it recovers actively (``Recovery._build_offsets``
    with ``"active"``): what the hook writes to a partition's RocksDB with its persisted
    offset, Faust's recovery does not read again (sysmon_faust.stream.bulk_restore).
    """
    from faust.tables.recovery import Recovery

    build_offsets = Recovery._build_offsets

    async def _build_offsets(
        self: Any, consumer: Any, tps: set[Any], destination: Any, title: str
    ) -> None:  # fmt: skip
        if title == "active" and tps:
            await hook(self, tps)
        await build_offsets(self, consumer, tps, destination, title)

    Recovery._build_offsets = _build_offsets  # type: ignore[method-assign]


def changelog_store(app: Any, topic: str) -> Any | None:
    """Faust's RocksDB store (python-rocksdb) of the table whose changelog is ``topic``, if it
    keeps keys and values raw; else None. Its ``_db_for_partition`` opens a partition."""
    table = app.tables._changelogs.get(topic)
    store = getattr(table, "data", None)
    if store is None or not hasattr(store, "_db_for_partition") or store.use_rocksdict:
        return None
    try:
        return raw_rocksdb(store)
    except RuntimeError:
        return None
