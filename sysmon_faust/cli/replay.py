"""``python -m sysmon_faust replay FILE...``: load recorded events into the input topic.

Each record of a recording (:mod:`sysmon_faust.cli.recordings`: JSON lines, JSON
arrays and indented objects, ``.gz``, ``.evtx``, tar and zip archives of
them) is produced in file order, as Winlogbeat would have sent it. A line
that is not JSON is sent all the same — the pipeline must cope with it — and
counted. Every file is read whole before the first record is sent: a file
that cannot be read stops the replay (exit 2) before anything of it went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from sysmon_faust.cli.progress import Progress
from sysmon_faust.cli.recordings import RecordingError, count_records, read_records

# Futures kept in flight before waiting for their acknowledgements: bounds
# memory and still lets aiokafka batch.
_WINDOW = 5000
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class ReplayError(Exception):
    """A recording is missing or the topic cannot be written; the message says why."""


class NoteOnce:
    """Says each note of :mod:`sysmon_faust.cli.recordings` once (each file is read twice)."""

    def __init__(self, prog: str, stream: TextIO | None = None) -> None:
        self.prog = prog
        self.stream = stream
        self.said: set[str] = set()

    def __call__(self, note: str) -> None:
        if note not in self.said:
            self.said.add(note)
            print(f"{self.prog}: note: {note}", file=self.stream or sys.stderr, flush=True)


@dataclass
class ReplayResult:
    sent: int = 0
    not_json: int = 0
    files: int = 0
    seconds: float = 0.0

    def summary(self, topic: str) -> str:
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replay: sent {self.sent} records ({self.not_json} not JSON) from "
            f"{self.files} file(s) to topic {topic!r} in {self.seconds:.1f} s ({rate:,.0f}/s)"
        )


def _is_json(value: bytes) -> bool:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return True


async def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the input topic if it is missing (Winlogbeat's own topic is left as it is)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile: fine
            await admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
            )
    finally:
        await admin.close()


async def replay(
    paths: Sequence[Path],
    *,
    bootstrap_servers: str,
    topic: str,
    rate: float | None = None,
    partitions: int = 1,
    progress: Progress | None = None,
    client_options: Mapping[str, Any] | None = None,
    on_note: NoteOnce | None = None,
) -> ReplayResult:
    """Send the records of ``paths`` to ``topic``, in file order.

    ``client_options``: security arguments of the Kafka clients
    (:meth:`sysmon_faust.settings.Settings.kafka_client_options`). Raises
    :class:`ReplayError` for a missing file, :class:`RecordingError` for one
    that cannot be read (both before anything is sent).
    """
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ReplayError(f"no such file: {', '.join(missing)}")
    note = on_note or NoteOnce("replay")
    total = count_records(list(paths), note)
    await ensure_topic(bootstrap_servers, topic, partitions, client_options)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        **(client_options or {}),
        acks="all",
        # Idempotence keeps file order within a partition even when a batch
        # is retried.
        enable_idempotence=True,
        # aiokafka sends one batch per partition at a time: batches must be
        # large (its 16 KiB default holds ~8 Winlogbeat events) to go fast.
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=MAX_REQUEST_BYTES,
    )
    await producer.start()
    result = ReplayResult()
    started = time.monotonic()
    progress = progress or Progress(total, "replay")
    pending: list[asyncio.Future[object]] = []
    try:
        for path in paths:
            result.files += 1
            for value in read_records(path, note):
                if not _is_json(value):
                    result.not_json += 1
                pending.append(await producer.send(topic, value))
                result.sent += 1
                progress.update(result.sent)
                if len(pending) >= _WINDOW:
                    await asyncio.gather(*pending)
                    pending.clear()
                if rate:
                    # Pace against the start so the average rate holds over the run.
                    ahead = result.sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    result.seconds = time.monotonic() - started
    progress.finish(result.sent)
    return result


def main(argv: Sequence[str] | None = None, prog: str = "replay") -> int:
    import dataclasses

    from sysmon_faust.cli import errors
    from sysmon_faust.stream.security import explain_refusal

    parser = errors.OneLineParser(
        prog=prog, description="Load recorded Sysmon events into the input topic."
    )
    parser.add_argument(
        "files", nargs="+", type=Path,
        help=".json, .jsonl, .gz, .evtx recordings, or .tar.gz/.tgz/.tar.bz2/.zip archives of them",
    )  # fmt: skip
    parser.add_argument("--topic", help="input topic (default: SYSMON_TOPIC_INPUT)")
    parser.add_argument("--bootstrap-servers", help="default: KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--rate", type=float, help="at most this many records per second")
    parser.add_argument(
        "--partitions", type=int, default=1,
        help="partitions of the input topic when replay has to create it (default 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rate is not None and not args.rate > 0:
        parser.error(f"--rate must be a positive number of records per second, not {args.rate}")
    if not 1 <= args.partitions <= 1024:
        parser.error(f"--partitions must be 1..1024, not {args.partitions}")
    folders = [str(path) for path in args.files if path.is_dir()]
    if folders:
        parser.error(
            f"{', '.join(folders)} is a folder: name the files in it (e.g. {folders[0]}/*.jsonl.gz)"
        )
    settings = errors.settings_or_exit(prog)
    topic = args.topic or settings.topic_input
    servers = args.bootstrap_servers or settings.bootstrap_servers
    try:
        result = asyncio.run(
            replay(
                args.files,
                bootstrap_servers=servers,
                topic=topic,
                rate=args.rate,
                partitions=args.partitions,
                client_options=settings.kafka_client_options(),
                on_note=NoteOnce(prog),
            )
        )
    except (ReplayError, RecordingError) as exc:
        # A file it cannot read is the command line's fault: 2, as argparse's.
        errors.say_error(prog, str(exc))
        return errors.USAGE_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        target = dataclasses.replace(settings, bootstrap_servers=servers)
        refusal = asyncio.run(explain_refusal(target))
        errors.say_error(prog, refusal or errors.kafka_unreachable(target, exc))
        return errors.WORLD_ERROR
    print(result.summary(topic))
    return 0
