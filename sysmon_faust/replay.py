"""``python -m sysmon_faust replay FILE...``: load recorded events into the input topic.

Each line of a recording is produced unchanged (line end and a leading BOM
removed) in file order, as Winlogbeat would have sent it. A line that is not
JSON is sent all the same — the pipeline must cope with it — and counted.
OTRF/Mordor recordings work as they are (``.json``/``.jsonl``, optionally
``.gz``); a ``.json`` file holding one JSON array is sent element by element,
one holding indented objects object by object; a Windows event log file
(``.evtx``) record by record (see :func:`read_records`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import evtx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from sysmon_faust.progress import Progress

UTF8_BOM = b"\xef\xbb\xbf"
# Futures kept in flight before waiting for their acknowledgements: bounds
# memory and still lets aiokafka batch.
_WINDOW = 5000
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class ReplayError(Exception):
    """A recording cannot be read or the topic cannot be written; the message says why."""


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


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def read_records(path: Path) -> Iterator[bytes]:
    """The values of one recording, in file order.

    ``.evtx``: each record's event as JSON (the ``evtx`` package's
    ``{"Event": {"System": …, "EventData": …}}``, a shape the normalizer
    reads). Otherwise JSON lines, one JSON array, or JSON objects one after
    the other, pretty-printed or not (SigmaHQ's regression files: one
    indented object per file, sometimes more). Raises :class:`ReplayError`
    naming the file when it cannot be read.
    """
    if path.suffix.lower() == ".evtx":
        yield from _evtx_records(path)
        return
    try:
        with _open(path) as handle:
            first = True
            head = handle.peek(64)[:64] if hasattr(handle, "peek") else b""
            if head.removeprefix(UTF8_BOM).lstrip().startswith(b"["):
                yield from _json_array(handle.read(), path)
                return
            for line in handle:
                if first:
                    line = line.removeprefix(UTF8_BOM)
                    first = False
                    if _starts_a_multiline_object(line):
                        yield from _json_objects(line + handle.read(), path)
                        return
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from exc


def _starts_a_multiline_object(first_line: bytes) -> bool:
    """A first line that is a lone ``{``: an indented object (json.dump, evtx_dump, SigmaHQ).

    Only that: a first line that is broken JSON is a record like any other,
    sent as it is for the pipeline to dead-letter.
    """
    return first_line.removeprefix(UTF8_BOM).strip() == b"{"


def _json_objects(data: bytes, path: Path) -> Iterator[bytes]:
    """JSON values one after the other (whitespace between), each sent compact."""
    text = data.removeprefix(UTF8_BOM).decode("utf-8", "surrogatepass")
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            raise ReplayError(f"{path}: not JSON at character {at}: {exc}") from exc
        # ASCII with escapes: an unpaired surrogate stays an escape (then read
        # as U+FFFD), never bytes that are not UTF-8.
        yield json.dumps(value, separators=(",", ":")).encode()


def _evtx_records(path: Path) -> Iterator[bytes]:
    """Each record of a Windows event log file, as the JSON of its event (``evtx`` package)."""
    try:
        parser = evtx.PyEvtxParser(str(path))
        for record in parser.records_json():
            if record is not None:  # the package's type: a record it could not read
                yield orjson.dumps(orjson.loads(record["data"]))
    except (OSError, RuntimeError, ValueError) as exc:
        raise ReplayError(f"cannot read {path} as a Windows event log (.evtx): {exc}") from exc


def _json_array(data: bytes, path: Path) -> Iterator[bytes]:
    try:
        items = orjson.loads(data.removeprefix(UTF8_BOM))
    except orjson.JSONDecodeError as exc:
        raise ReplayError(f"{path} starts like a JSON array but is not one: {exc}") from exc
    for item in items:
        yield orjson.dumps(item)


def count_records(paths: Sequence[Path]) -> int:
    return sum(sum(1 for _ in read_records(path)) for path in paths)


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
) -> ReplayResult:
    """Send the records of ``paths`` to ``topic``, in file order.

    ``client_options``: security arguments of the Kafka clients
    (:meth:`sysmon_faust.settings.Settings.kafka_client_options`).
    """
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ReplayError(f"no such file: {', '.join(missing)}")
    total = count_records(paths)
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
            for value in read_records(path):
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
    import argparse
    import dataclasses

    from sysmon_faust.security import explain_refusal
    from sysmon_faust.settings import Settings, SettingsError

    parser = argparse.ArgumentParser(
        prog=prog, description="Load recorded Sysmon events into the input topic."
    )
    parser.add_argument("files", nargs="+", type=Path, help=".json, .jsonl or .gz recordings")
    parser.add_argument("--topic", help="input topic (default: SYSMON_TOPIC_INPUT)")
    parser.add_argument("--bootstrap-servers", help="default: KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--rate", type=float, help="at most this many records per second")
    parser.add_argument(
        "--partitions", type=int, default=1,
        help="partitions of the input topic when replay has to create it (default 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"replay: bad setting: {exc}", file=sys.stderr)
        return 2
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
            )
        )
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        refusal = asyncio.run(
            explain_refusal(dataclasses.replace(settings, bootstrap_servers=servers))
        )
        if refusal is not None:
            print(f"replay: {refusal}", file=sys.stderr)
            return 1
        print(
            f"replay: cannot write to Kafka at {servers}: {type(exc).__name__}: {exc}\n"
            "  Is the broker up? Start the local one with 'make kafka-up', or set "
            "KAFKA_BOOTSTRAP_SERVERS.",
            file=sys.stderr,
        )
        return 1
    print(result.summary(topic))
    return 0
