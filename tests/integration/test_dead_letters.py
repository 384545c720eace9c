"""Bad input never stops the pipeline: each bad record becomes one dead letter, no more."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_pipeline_recordings import network_identity, output_identity
from tests.reference import compute, lines
from tests.support import WorkerProcess, create_topic, produce, read_topic

RECORDING = "covenant_installutil_2019-10-27223020.jsonl.gz"


def garbage(real_connect: bytes, real_create: bytes) -> list[bytes | None]:
    def edit(line: bytes, **event_data: object) -> bytes:
        doc = json.loads(line)
        doc["winlog"]["event_data"].update(event_data)
        doc["winlog"]["event_data"] = {
            k: v for k, v in doc["winlog"]["event_data"].items() if v is not None
        }
        return json.dumps(doc).encode()

    def event_id(line: bytes, value: object) -> bytes:
        doc = json.loads(line)
        doc["winlog"]["event_id"] = value
        return json.dumps(doc).encode()

    return [
        b"not json",
        real_connect[: len(real_connect) // 2],  # truncated JSON
        b"[1, 2, 3]",  # JSON, not an object
        b'"just a string"',
        b"\xff\xfe\x00garbage \xc3\x28",  # not UTF-8
        edit(real_connect, SourcePort="abc"),  # wrong type
        event_id(real_connect, "x"),  # event id that is no number
        edit(real_create, ProcessGuid=None),  # Sysmon 1 without ProcessGuid
        edit(real_connect, ProcessGuid=None),  # Sysmon 3 without ProcessGuid
        b"",  # empty value
        None,  # a tombstone
        b"{" + b" " * (1024 * 1024) + b"",  # 1 MiB, unterminated
    ]


def test_garbage_interleaved_with_a_recording_becomes_dead_letters_one_for_one(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / RECORDING
    recording = lines(path)
    expected = compute(path)
    connect = next(line for line in recording if json.loads(line)["winlog"]["event_id"] == 3)
    create = next(line for line in recording if json.loads(line)["winlog"]["event_id"] == 1)
    bad = garbage(connect, create)

    env = pipeline_env(partitions=2)
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    # Room for the 1 MiB value (Kafka's default limit is 1 MB).
    create_topic(bootstrap, input_topic, partitions=1, max_message_bytes=str(16 * 1024 * 1024))

    values: list[bytes | None] = []
    bad_offsets: dict[int, bytes | None] = {}
    step = len(recording) // len(bad)
    for index, line in enumerate(recording):
        if index % step == 0 and index // step < len(bad):
            bad_offsets[len(values)] = bad[index // step]
            values.append(bad[index // step])
        values.append(line)
    assert len(bad_offsets) == len(bad)

    worker = worker_factory(env)
    # Kafka wants a key or a value: the tombstone gets a key.
    keys = [b"tombstone" if value is None else None for value in values]
    produce(bootstrap, input_topic, values, partition=0, keys=keys)  # type: ignore[arg-type]
    stats = worker.wait_for(
        lambda s: s["consumed"] >= len(values) and s["join_handled"] >= s["normalized"],
        timeout=180,
    )
    assert worker.process.poll() is None, "the worker died"
    status, _ = worker.http("/health")
    assert status == 200

    letters = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_DLQ"], len(bad))]
    by_offset = {letter["source_offset"]: letter for letter in letters}
    assert set(by_offset) == set(bad_offsets), {
        o: bad_offsets[o] for o in set(bad_offsets) - set(by_offset)
    }
    assert len(letters) == len(bad) == stats["dead_lettered"]
    for offset, value in bad_offsets.items():
        letter = by_offset[offset]
        assert letter["error"], letter
        assert letter["source_topic"] == input_topic
        assert letter["source_partition"] == 0
        assert letter["received_at"].endswith("Z")
        if letter["raw"] is not None:
            assert letter["raw"].encode() == value
        elif letter["raw_base64"] is not None:
            assert base64.b64decode(letter["raw_base64"]) == value
        else:
            assert value is None

    # The recording's results are those of a clean run.
    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"])]
    unmatched = read_topic(bootstrap, env["SYSMON_TOPIC_UNMATCHED"], stats["unmatched"])
    assert Counter(map(output_identity, joined)) == Counter(
        network_identity(c) for c, _ in expected.joined
    )
    assert Counter(output_identity(r.json()) for r in unmatched) == Counter(
        network_identity(c) for c in expected.unmatched
    )


def test_bad_records_on_the_rekeying_topic_become_dead_letters_and_the_rest_joins(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # The internal topic is only written by the intake, but it is a Kafka topic:
    # anything may land there (an old version, a hand-made record, corruption).
    env = pipeline_env(partitions=1)
    bootstrap, app_id = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_APP_ID"]
    worker = worker_factory(env)
    guid = "{905cc552-43ac-5c91-0000-0010b44bb703}"
    create = {
        "_event_id": 1,
        "_event_time_ms": 1_553_009_290_000,
        "process_guid": guid,
        "event_date_creation": "2019-03-19T15:28:10.000Z",
        "process_path": "C:\\Windows\\System32\\cmd.exe",
    }
    connect = {
        "_event_id": 3,
        "_event_time_ms": 1_553_009_293_000,
        "process_guid": guid,
        "event_date_creation": "2019-03-19T15:28:13.000Z",
        "dst_ip_addr": "10.0.10.106",
    }
    unknown_id = {"_event_id": 7, "_event_time_ms": 0, "process_guid": guid}
    no_time = {"_event_id": 3, "process_guid": guid}
    values = [
        b"not json",
        b"[1, 2]",
        json.dumps([create, unknown_id, no_time, connect]).encode(),
    ]
    produce(bootstrap, f"{app_id}-events-by-process-guid", values, partition=0)

    stats = worker.wait_for(lambda s: s["dead_lettered"] >= 4 and s["joined"] >= 1, timeout=120)
    assert worker.process.poll() is None, "the worker died"
    assert stats["dead_lettered"] == 4
    letters = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_DLQ"], 4)]
    assert sorted(letter["source_offset"] for letter in letters) == [0, 1, 2, 2]
    assert all(letter["error"].startswith("join error") for letter in letters), letters
    # The events of the batch around the bad ones were handled, in order.
    [joined] = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], 1)]
    assert joined["process_path"] is None  # the connect's own (it had none)
    assert joined["dst_ip_addr"] == "10.0.10.106"
    status, row = worker.http(f"/process/{guid}")
    assert status == 200 and row["process_path"] == "C:\\Windows\\System32\\cmd.exe"
