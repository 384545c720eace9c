"""Why a worker cannot start, in one line that names the cause and what to do.

A worker that cannot start as configured stops before it consumes anything,
with one critical log line (also its last line on stderr), a non-zero exit
and no traceback (``-l debug`` logs it): a broker that does not answer, a
state folder it cannot write, a web port another process holds, topics made
with another ``SYSMON_PARTITIONS``. Retrying cannot help any of them, and a
traceback hides the cause among 70 lines. Pure functions; the worker's
checks are in :mod:`sysmon_faust.stream.topology`.
"""

from __future__ import annotations

import errno
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aiokafka.errors import KafkaError

from sysmon_faust.settings import WILDCARD_HOSTS


class StartRefused(Exception):
    """The worker cannot start as configured; the message is the one line to show."""


def partition_mismatch(expected: int, found: Mapping[str, int], app_id: str) -> StartRefused | None:
    """Refuse topics of this app made with another partition count than ``SYSMON_PARTITIONS``.

    ``found``: partitions of each of the app's keyed internal topics that
    exist (re-keying, process tree, changelogs). Kafka keeps a key in the
    partition its hash gives for the count the topic has; with another count
    the join would look for a process's row in the wrong partition and the
    worker would wait for its assignment for ever. Kafka Streams refuses
    co-partitioned topics whose counts differ the same way (TopologyException).
    """
    wrong = {topic: count for topic, count in found.items() if count != expected}
    if not wrong:
        return None
    topic, count = sorted(wrong.items())[0]
    return StartRefused(
        f"SYSMON_PARTITIONS={expected}, but this app's topics were made with {count} "
        f"partitions ({topic} has {count}{' and others too' if len(wrong) > 1 else ''}): "
        f"set SYSMON_PARTITIONS={count} again, or start under a new SYSMON_APP_ID "
        f"(new topics and state; '{app_id}' keeps its own)"
    )


def check_state_folder(path: Path) -> StartRefused | None:
    """Refuse a ``SYSMON_DATA_DIR`` that cannot be made or written (makes it when missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe of this process's own: workers of one host share the folder
        # and start together, and one shared name let one remove the other's.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".sysmon-faust-write-probe-"):
            pass
    except OSError as exc:
        return StartRefused(
            f"SYSMON_DATA_DIR={str(path)!r} cannot hold the worker's state "
            f"({exc.strerror or exc}): point it at a folder this user can write"
        )
    return None


def check_web_port(host: str, port: int) -> StartRefused | None:
    """Refuse a web port another process listens on (as aiohttp would bind it, address reused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None  # not ours to judge: the web server will say
            return StartRefused(
                f"web port {port} on {host} is in use (another worker?): give each worker on a "
                "machine its own --web-port (or SYSMON_WEB_PORT); the port also names its "
                "state folder"
            )
    return None


def kafka_unreachable(bootstrap_servers: str, exc: KafkaError | OSError) -> StartRefused:
    """A broker that does not answer at start (not one that refused a login)."""
    return StartRefused(
        f"cannot reach Kafka at {bootstrap_servers} ({_named(exc)}): is the broker up and "
        "KAFKA_BOOTSTRAP_SERVERS right? (the local one: make kafka-up)"
    )


def assignment_of_another_worker(
    instance_id: str, made_for: str, this: str, session_timeout_s: float
) -> StartRefused:
    """The group gave this worker, under static membership (``SYSMON_GROUP_INSTANCE_ID``,
    KIP-345), the assignment made for the worker at ``made_for`` (compat.faust_fixes 19).

    Its partitions would be routed to the other address; nothing is consumed.
    """
    return StartRefused(
        f"the group gave this worker ({this}) the partitions of SYSMON_GROUP_INSTANCE_ID="
        f"{instance_id}, last held by the worker at {made_for}: another running worker has "
        "that id, or this one moved (SYSMON_WEB_PORT, SYSMON_WEB_ADVERTISED_HOST). Give each "
        "worker an id of its own and keep its address; to move a worker, leave it stopped "
        f"for SYSMON_SESSION_TIMEOUT ({session_timeout_s:g} s) first"
    )


def static_member_address_warning(
    instance_id: str, advertised_host: str, web_host: str
) -> str | None:
    """The start-up warning when a static member's address is its host name (faust_fixes 19).

    ``SYSMON_GROUP_INSTANCE_ID`` keeps a worker's assignment, which names its
    URL; bound to all addresses without ``SYSMON_WEB_ADVERTISED_HOST``, the
    URL's host is the machine's name, which a recreated container changes.
    """
    if not instance_id or advertised_host or web_host not in WILDCARD_HOSTS:
        return None
    return (
        f"SYSMON_GROUP_INSTANCE_ID={instance_id} without SYSMON_WEB_ADVERTISED_HOST: this "
        "worker is reached by its host name, and a new one (a recreated container) makes the "
        "group refuse its first start after that; set SYSMON_WEB_ADVERTISED_HOST to a name "
        "that stays (a StatefulSet pod's DNS name, a Compose service's)"
    )


def _named(exc: BaseException) -> str:
    """``Type: message``, once (aiokafka's errors put their type in their message already)."""
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def unexpected(exc: BaseException) -> str:
    """The line for a start failure nothing above foresaw."""
    return f"the worker could not start: {type(exc).__name__}: {exc} (-l debug logs the traceback)"


def replication_factor(setting: int | None, cluster_default: int, brokers: int) -> int:
    """Replicas of the topics the app creates: ``SYSMON_REPLICATION_FACTOR``, or the cluster's.

    The cluster's ``default.replication.factor`` is what its operator chose
    for topics nobody configured; capped by the brokers there are (a
    single-node development broker may say 3 and have one). A setting
    above the number of brokers is refused: Kafka could not place the
    replicas and the worker would fail later, topic by topic.
    """
    if setting is None:
        return max(1, min(cluster_default, brokers))
    if setting > brokers:
        raise StartRefused(
            f"SYSMON_REPLICATION_FACTOR={setting}, but the cluster has {brokers} broker(s): "
            f"set it to {brokers} or less (unset: the cluster's default.replication.factor)"
        )
    return setting


def min_insync_replicas(replicas: int) -> dict[str, str]:
    """Topic configs for ``replicas``: with 3 or more, writes wait for 2 (one broker may go).

    Every producer of the app writes with ``acks=all``; with
    ``min.insync.replicas=2`` an acknowledged record is on two brokers, and
    losing one loses nothing (Kafka's own advice for replicated topics).
    """
    return {"min.insync.replicas": "2"} if replicas >= 3 else {}


def single_replica_warning(replicas: int, brokers: int) -> str | None:
    """The start-up warning when topics get one replica on a cluster that has more brokers."""
    if replicas > 1 or brokers <= 1:
        return None
    return (
        f"the app's topics get 1 replica on a cluster of {brokers} brokers: losing one broker "
        "loses state and output; set SYSMON_REPLICATION_FACTOR=3 (or unset it, and set the "
        "cluster's default.replication.factor)"
    )
