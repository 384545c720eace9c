"""Operator commands, after ksqlDB's SHOW TOPICS, PRINT and DESCRIBE, for this app.

    python -m sysmon_faust topics
    python -m sysmon_faust print TOPIC [--last N | --from-beginning] [--limit N] [--follow]
    python -m sysmon_faust describe

They read the settings like a worker does and talk to Kafka directly; no
worker needs to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from sysmon_faust.cli import errors
from sysmon_faust.settings import Settings
from sysmon_faust.stream.security import explain_refusal

#: Faust tables of the app (topology.py), each with a changelog topic.
TABLE_NAMES = ("process-create", "pending-connects", "expiry-index")


def app_topics(settings: Settings) -> list[tuple[str, str]]:
    """(topic, role) of every topic the app reads or writes."""
    return [
        (settings.topic_input, "input (raw)"),
        (settings.topic_process_create, "output: Sysmon 1 keyed"),
        (settings.topic_network_connect, "output: Sysmon 3 keyed"),
        (settings.topic_join, "output: joined network events (SYSMON_JOIN)"),
        (settings.topic_unmatched, "output: unmatched"),
        (settings.topic_alerts, "output: alerts"),
        (settings.topic_enriched, "output: every enriched Sysmon event"),
        (settings.topic_dlq, "output: dead letters"),
        (settings.topic_by_guid, "internal: re-keyed events, batched"),
        (settings.topic_process_tree, "internal: parent links (ancestry), compacted"),
        *(
            (f"{settings.app_id}-{table}-changelog", f"internal: {table} changelog")
            for table in TABLE_NAMES
        ),
    ]


async def _partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    # Only topics that exist are described: a metadata request that names a
    # missing topic creates it on brokers with auto.create.topics.enable (a
    # typo would leave a topic behind, an app topic would get broker defaults).
    existing = set(await admin.list_topics())
    wanted = [topic for topic in topics if topic in existing]
    described = await admin.describe_topics(wanted) if wanted else []
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}


async def _end_offsets(settings: Settings, partitions: dict[str, int]) -> dict[TopicPartition, int]:
    tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
    if not tps:
        # No consumer at all: aiokafka's stop() right after start() can raise
        # CancelledError (its group-less coordinator task has not run yet).
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        await consumer.start()
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def show_topics(settings: Settings, out: TextIO) -> int:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    await admin.start()
    try:
        topics = app_topics(settings)
        partitions = await _partitions(admin, [t for t, _ in topics])
        # The intake group reads the input; Faust's group (the app id) the rest.
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        committed.update(await admin.list_consumer_group_offsets(settings.intake_group))
    finally:
        await admin.close()
    ends = await _end_offsets(settings, partitions)
    rows = [("topic", "role", "partitions", "end offset", "committed", "lag")]
    for topic, role in topics:
        if topic not in partitions:
            rows.append((topic, role, "-", "(missing)", "", ""))
            continue
        tps = [TopicPartition(topic, p) for p in range(partitions[topic])]
        end = sum(ends.get(tp, 0) for tp in tps)
        mine = [committed[tp].offset for tp in tps if tp in committed]
        if mine:
            done = sum(max(committed[tp].offset, 0) for tp in tps if tp in committed)
            rows.append((topic, role, str(len(tps)), str(end), str(done), str(end - done)))
        else:
            rows.append((topic, role, str(len(tps)), str(end), "-", "-"))
    _table(rows, out)
    out.write(
        f"consumer groups: {settings.intake_group} (input), {settings.app_id} (the rest); "
        f"broker: {settings.bootstrap_servers}\n"
    )
    return 0


def _table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")


def _format_value(value: bytes | None, pretty: bool) -> str:
    if value is None:
        return "null"
    try:
        decoded = json.loads(value)
    except ValueError:
        return value.decode("utf-8", "backslashreplace")
    return json.dumps(decoded, indent=2 if pretty else None, ensure_ascii=False)


#: Records ``print TOPIC`` shows without ``--from-beginning`` (and ``--last``).
LAST_DEFAULT = 10


async def print_topic(
    settings: Settings,
    topic: str,
    out: TextIO,
    from_beginning: bool = False,
    limit: int | None = None,
    follow: bool = False,
    pretty: bool | None = None,
    last: int | None = None,
    err: TextIO | None = None,
) -> int:
    """Print ``topic``'s records: the last ``last`` (default 10), or all with ``from_beginning``.

    ``limit``: at most that many lines in all; ``follow``: then keep printing
    new records until interrupted. What is shown is said on ``err`` (one
    line), so that an empty topic is not mistaken for a silent command.
    Returns 1 (and says so) when the topic does not exist.
    """
    pretty = out.isatty() if pretty is None else pretty
    err = err or sys.stderr
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **settings.kafka_client_options(),
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=32 * 1024 * 1024,
    )
    printed = 0
    try:
        # Inside the try: a consumer that failed to start is closed all the same.
        await consumer.start()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
        )
        await admin.start()
        try:
            count = (await _partitions(admin, [topic])).get(topic)
        finally:
            await admin.close()
        if count is None:
            err.write(f"print: no topic {topic!r} (see: python -m sysmon_faust topics)\n")
            return 1
        tps = [TopicPartition(topic, p) for p in range(count)]
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        held = sum(ends[tp] - begins[tp] for tp in tps)
        want = LAST_DEFAULT if last is None else last
        # Positions set at once with the assignment: left to an await, the
        # fetcher starts from its reset policy first, and a seek after it
        # raced that fetch (print showed nothing, one run in two).
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, begins[tp] if from_beginning else max(begins[tp], ends[tp] - want))
        if from_beginning:
            err.write(f"print: {topic!r} from the beginning ({held:,} records)\n")
            backlog: list[Any] = []
        else:
            # Up to ``want`` from each partition, then the latest ``want`` of
            # them by timestamp: the topic's last records, whatever their partition.
            read = await _read_to(consumer, ends)
            read.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
            backlog = read[len(read) - want :]
            err.write(
                f"print: the last {len(backlog)} of {held:,} records of {topic!r}"
                f"{'; then new ones as they come' if follow else ''}"
                " (--from-beginning for all, --last N for more, --follow to keep printing)\n"
            )
        for m in backlog:
            if limit is not None and printed >= limit:
                break
            _print_record(m, out, pretty)
            printed += 1
        while limit is None or printed < limit:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and not follow and await _reached_all(consumer, ends):
                break
            for messages in batch.values():
                for m in messages:
                    if limit is not None and printed >= limit:
                        break
                    _print_record(m, out, pretty)
                    printed += 1
            out.flush()
    finally:
        await consumer.stop()
    return 0


def _print_record(m: Any, out: TextIO, pretty: bool) -> None:
    stamp = datetime.fromtimestamp(m.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
    key = m.key.decode("utf-8", "backslashreplace") if m.key else "null"
    out.write(f"{m.partition}/{m.offset} {stamp} key={key} {_format_value(m.value, pretty)}\n")


async def _read_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> list[Any]:
    """Every record from the consumer's positions up to ``ends``."""
    read: list[Any] = []
    while True:
        batch = await consumer.getmany(timeout_ms=500)
        if not batch and await _reached_all(consumer, ends):
            return read
        for tp, messages in batch.items():
            read += [m for m in messages if m.offset < ends[tp]]


async def _reached_all(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every partition was fetched up to ``ends``.

    The position runs ahead of what ``getmany`` returned (records fetched
    and buffered): only ask after a ``getmany`` that returned nothing. It
    passes transaction markers, which a returned record's offset would not.
    """
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def record_types() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(record, topic role, [(field, type)]) of every record the app writes."""
    from sysmon_faust.core import records

    described = []
    for model, where in (
        (records.ProcessCreate, "sysmon-process-create"),
        (records.ProcessRow, "process table (GET /process/{guid})"),
        (records.NetworkConnect, "sysmon-network-connect"),
        (records.EnrichedNetworkConnect, "sysmon-join"),
        (records.UnmatchedNetworkConnect, "sysmon-network-unmatched"),
        (records.Alert, "sysmon-alerts"),
        (records.DeadLetter, "sysmon-dlq"),
    ):
        fields = [
            (name, _type_name(annotation))
            for name, annotation in records.field_types(model).items()
        ]
        described.append((model.__name__, where, fields))
    return described


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return str(text).replace("typing.", "").replace("NoneType", "None")


async def describe(settings: Settings, out: TextIO) -> int:
    for name, where, fields in record_types():
        out.write(f"{name}  ({where})\n")
        for field, type_name in fields:
            out.write(f"  {field:<32} {type_name}\n")
        out.write("\n")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    await admin.start()
    try:
        topics = app_topics(settings)
        partitions = await _partitions(admin, [t for t, _ in topics])
        replicas = await _replicas(admin, list(partitions))
        brokers = len((await admin.describe_cluster())["brokers"])
        existing = [t for t, _ in topics if t in partitions]
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in existing]
        )
    finally:
        await admin.close()
    policy: dict[str, dict[str, str]] = {}
    for response in configs:
        for resource in response.resources:
            policy[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    rows = [("topic", "role", "partitions", "replicas", "min.insync", "cleanup.policy",
             "retention.ms")]  # fmt: skip
    for topic, role in topics:
        config = policy.get(topic, {})
        rows.append(
            (
                topic,
                role,
                str(partitions.get(topic, "(missing)")),
                str(replicas.get(topic, "-")),
                config.get("min.insync.replicas", "-"),
                config.get("cleanup.policy", "-"),
                config.get("retention.ms", "-"),
            )
        )
    _table(rows, out)
    single = [t for t, _ in topics if replicas.get(t) == 1]
    if single and brokers > 1:
        out.write(
            f"warning: {len(single)} topic(s) have 1 replica on a cluster of {brokers} brokers "
            f"(losing one broker loses them): {', '.join(single)}; new topics follow "
            "SYSMON_REPLICATION_FACTOR, existing ones need kafka-reassign-partitions.sh\n"
        )
    return 0


async def _replicas(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Replicas of each topic (of its first partition: Kafka gives all partitions as many)."""
    described = await admin.describe_topics(topics) if topics else []
    return {
        d["topic"]: len(d["partitions"][0]["replicas"])
        for d in described
        if d["error_code"] == 0 and d["partitions"]
    }


def main(command: str, argv: Sequence[str]) -> int:
    prog = f"python -m sysmon_faust {command}"
    parser = errors.OneLineParser(prog=prog)
    if command == "print":
        parser.add_argument("topic")
        shown = parser.add_mutually_exclusive_group()
        shown.add_argument("--from-beginning", action="store_true", help="every record")
        shown.add_argument(
            "--last", type=_count, metavar="N",
            help=f"the last N records (default {LAST_DEFAULT}), by timestamp across partitions",
        )  # fmt: skip
        parser.add_argument("--limit", type=_count, help="print at most N records in all")
        parser.add_argument("--follow", action="store_true", help="keep printing new records")
    args = parser.parse_args(argv)
    settings = errors.settings_or_exit(prog)
    try:
        if command == "topics":
            return asyncio.run(show_topics(settings, sys.stdout))
        if command == "describe":
            return asyncio.run(describe(settings, sys.stdout))
        return asyncio.run(
            print_topic(
                settings, args.topic, sys.stdout, args.from_beginning, args.limit, args.follow,
                last=args.last,
            )
        )  # fmt: skip
    except KeyboardInterrupt:
        return 130
    except (KafkaError, OSError, TimeoutError) as exc:
        refusal = asyncio.run(explain_refusal(settings))
        errors.say_error(command, refusal or errors.kafka_unreachable(settings, exc))
        return errors.WORLD_ERROR


def _count(text: str) -> int:
    """A count argument: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value
