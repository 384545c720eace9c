"""Bad input never stops the pipeline: each bad record becomes one dead letter, no more."""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import events
from tests.integration.test_pipeline_recordings import network_identity, output_identity
from tests.reference import compute, lines, readme_counts
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
    unknown_id = {"_event_id": 99, "_event_time_ms": 0, "process_guid": guid}  # no Sysmon id
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


# --- 10,000 garbage records interleaved with a recording ----------------------

STORM_RECORDING = "empire_invoke_wmi_2019-03-19152813"
GARBAGE_RECORDS = 10_000
GARBAGE_SEED = 20261129
SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
SYSMON_PROVIDER = "Microsoft-Windows-Sysmon"
SHAPES = ("winlogbeat6", "ecs", "flat")
#: The /stats reasons of what is counted and dropped (CONTRACT.md, normalize.py).
NOT_WINDOWS = "not_a_windows_event"
NOT_SYSMON = "not_sysmon"
#: Keys by which a JSON object is taken for a Windows event of one of the
#: shapes (DATA.md): objects meant to be "not a Windows event" avoid them.
ENVELOPE_KEYS = frozenset({
    "winlog", "EventID", "Channel", "SourceName", "ProviderName", "event_id", "log_name",
    "source_name",
})  # fmt: skip

_ABSENT = object()

BAD_UTF8 = [
    b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
    b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80",
]  # fmt: skip
#: (A lone surrogate escape, "\\ud800", is no longer here: it is legal JSON,
#: read with the unit as U+FFFD — tests/unit/core/test_normalize_surrogates.py.)
INVALID_JSON = [
    b'{"EventID": NaN}', b'{"EventID": Infinity}', b"{'EventID': 1}", b'{"a": 1,}',
    b'{"a": 1} // comment', b'{"a" 1}', b'{"a": 01}', b'{"a": "\\x41"}', b'{"a": "tab\tin"}',
    b'{"a": "\\ud80"}', b'{"winlog": {"event_id": 1e400}}', b"{", b"}", b"{}}", b"{\"a\":",
    b"[" * 5000 + b"]" * 5000, b'{"a":' * 1100 + b"1" + b"}" * 1100,
]  # fmt: skip
BAD_EVENT_IDS: list[Any] = [
    "x", "1.5", "1e0", "3 3", 1.5, True, False, -1, 65536, 2**40, [1], {"id": 1},
]  # fmt: skip
BAD_GUIDS: list[Any] = [
    123, 1.5, True, ["{905cc552-43ac-5c91-0000-0010b44bb703}"], {"guid": 1}, "not-a-guid",
    "{1234}", "{905cc552-43ac-5c91-0000-0010b44bb703}x", "905cc55243ac5c9100000010b44bb703",
    "{905cc552-43ac-5c91-0000-0010b44bb70g}", "null", "../../etc/passwd", "' OR 1=1--",
]  # fmt: skip
BAD_TIMES: list[Any] = [
    "yesterday", 12345, 1553009293.5, "2019-13-45 99:99:99.000", "2019-02-30 00:00:00.000",
    "19-03-19 15:28:13", "2019-03-19T15:28:13.000+05:00", ["2019-03-19 15:28:13.000"],
    {"t": 1}, None, "", "-",
]  # fmt: skip
BAD_INTS: list[Any] = [
    "12x", "-5", -5, 2**40, "4294967296", 1.5, "1.5", [1], {"pid": 1}, True, "0xZZ",
]  # fmt: skip
BAD_PORTS: list[Any] = ["abc", "70000", 65536, -1, "-1", 1.5, [443], {"p": 443}, True, "443/tcp"]
BAD_BOOLS: list[Any] = ["maybe", "yes", 1, 0, "1", [True], {"b": True}, 1.5]
NOT_TEXT: list[Any] = [["a", "b"], {"nested": 1}, [[[[[]]]]], [None]]
#: Sysmon field → values no Sysmon event has there (DATA.md: every value is a
#: string; GUIDs, times, ports, booleans have a syntax), per event id.
WRONG: dict[int, list[tuple[str, list[Any]]]] = {
    1: [
        ("ProcessGuid", [*BAD_GUIDS, None, "", "-", "{00000000-0000-0000-0000-000000000000}"]),
        ("UtcTime", BAD_TIMES), ("ProcessId", BAD_INTS), ("Image", NOT_TEXT),
        ("CommandLine", NOT_TEXT), ("ParentProcessGuid", BAD_GUIDS), ("LogonGuid", BAD_GUIDS),
        ("TerminalSessionId", BAD_INTS), ("ParentProcessId", BAD_INTS), ("User", NOT_TEXT),
    ],
    3: [
        ("ProcessGuid", BAD_GUIDS), ("UtcTime", BAD_TIMES), ("ProcessId", BAD_INTS),
        ("Image", NOT_TEXT), ("SourcePort", BAD_PORTS), ("DestinationPort", BAD_PORTS),
        ("Initiated", BAD_BOOLS), ("SourceIsIpv6", BAD_BOOLS), ("DestinationIp", NOT_TEXT),
    ],
    5: [
        ("ProcessGuid", [*BAD_GUIDS, None, "", "-", "{00000000-0000-0000-0000-000000000000}"]),
        ("UtcTime", BAD_TIMES), ("ProcessId", BAD_INTS), ("Image", NOT_TEXT),
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Garbage:
    kind: str
    value: bytes | None
    #: The /stats reason when the record is well-formed JSON that is not a
    #: Sysmon 1/3/5 event (counted and dropped, as DATA.md and normalize.py
    #: say); None when it must be a dead letter.
    filtered: str | None = None


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False


class GarbageMaker:
    """A seeded mix of bad records, each with what the pipeline must do with it."""

    def __init__(self, seed: int, recording: list[bytes]) -> None:
        self.rng = random.Random(seed)
        self.lines = recording
        self.sysmon: dict[int, list[dict[str, Any]]] = {1: [], 3: []}
        self.not_sysmon: list[dict[str, Any]] = []
        for line in recording:
            doc = json.loads(line)
            if doc.get("source_name") == SYSMON_PROVIDER and doc["event_id"] in self.sysmon:
                self.sysmon[doc["event_id"]].append(doc["event_data"])
            elif doc.get("source_name") != SYSMON_PROVIDER:
                self.not_sysmon.append(doc)
        # The recording has no Sysmon 5: its processes' ends, made up.
        self.sysmon[5] = [
            {k: create[k] for k in ("UtcTime", "ProcessGuid", "ProcessId", "Image")}
            for create in self.sysmon[1]
        ]
        self.kinds: dict[str, tuple[int, Callable[[], Garbage]]] = {
            "random_bytes": (12, self.random_bytes),
            "invalid_utf8": (10, self.invalid_utf8),
            "truncated_json": (10, self.truncated_json),
            "json_not_object": (10, self.json_not_object),
            "invalid_json": (6, self.invalid_json),
            "sysmon_without_event_id": (8, self.sysmon_without_event_id),
            "sysmon_wrong_types": (20, self.sysmon_wrong_types),
            "tombstone": (3, self.tombstone),
            "object_not_windows": (8, self.object_not_windows),
            "windows_not_sysmon": (6, self.windows_not_sysmon),
            "sysmon_other_event": (7, self.sysmon_other_event),
        }

    def make(self, count: int) -> list[Garbage]:
        # A few values near the broker's default limit (1 MB), the rest small.
        made = [self.oversize(kind) for kind in ("bytes", "sysmon", "array", "object") * 3]
        names = list(self.kinds)
        weights = [self.kinds[name][0] for name in names]
        for name in self.rng.choices(names, weights, k=count - len(made)):
            made.append(self.kinds[name][1]())
        self.rng.shuffle(made)
        return made

    # -- building blocks --

    def doc(
        self,
        shape: str,
        event_id: Any,
        data: Any,
        channel: Any = SYSMON_CHANNEL,
        provider: Any = SYSMON_PROVIDER,
    ) -> bytes:
        """A Windows event in one of the shapes of DATA.md (``_ABSENT``: no event id key)."""
        doc: dict[str, Any]
        if shape == "ecs":
            winlog = {"channel": channel, "provider_name": provider, "computer_name": "HFDC01"}
            doc = {"@timestamp": "2019-03-19T15:28:13.000Z", "winlog": winlog}
            if event_id is not _ABSENT:
                winlog["event_id"] = event_id
            winlog["event_data"] = data
        elif shape == "winlogbeat6":
            doc = {"log_name": channel, "source_name": provider, "computer_name": "HFDC01"}
            if event_id is not _ABSENT:
                doc["event_id"] = event_id
            doc["event_data"] = data
        else:
            assert isinstance(data, dict)
            doc = {"Channel": channel, "SourceName": provider, "Hostname": "HFDC01", **data}
            if event_id is not _ABSENT:
                doc["EventID"] = event_id
        return json.dumps(doc).encode()

    def json_value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(8 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.randint(-(2**63), 2**63 - 1)
        if kind == 3:
            return rng.uniform(-1e300, 1e300)
        if kind in (4, 5):
            alphabet = "abcXYZ09 \"\\/\n\t\x00é€😀<>&'{}[]-"
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        if kind == 6:
            return [self.json_value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {self.key(): self.json_value(depth + 1) for _ in range(rng.randint(0, 4))}

    def key(self) -> str:
        while True:
            key = "".join(
                self.rng.choice("abcdefghijk_@.ABC") for _ in range(self.rng.randint(1, 12))
            )
            if key not in ENVELOPE_KEYS:
                return key

    # -- dead letters --

    def random_bytes(self) -> Garbage:
        while True:
            size = self.rng.choice([0, 1, 2, self.rng.randint(3, 64), self.rng.randint(65, 4096)])
            value = self.rng.randbytes(size)
            if not _is_json_object(value):
                return Garbage("random_bytes", value)

    def invalid_utf8(self) -> Garbage:
        while True:
            value = bytearray(self.rng.choice(self.lines))
            for _ in range(self.rng.randint(1, 3)):
                at = self.rng.randint(0, len(value))
                value[at:at] = self.rng.choice(BAD_UTF8)
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return Garbage("invalid_utf8", bytes(value))

    def truncated_json(self) -> Garbage:
        while True:
            line = self.rng.choice(self.lines)
            value = line[: self.rng.randint(1, len(line) - 1)]
            if not _is_json_object(value):
                return Garbage("truncated_json", value)

    def json_not_object(self) -> Garbage:
        line = self.rng.choice(self.lines)
        choices: list[Any] = [
            [self.json_value(2) for _ in range(self.rng.randint(0, 5))],
            self.json_value(3),  # a scalar or a list at that depth, never an object
            [json.loads(line)],  # an event inside an array
            line.decode(),  # an event encoded twice: a JSON string
            None,
            self.rng.randint(-(2**31), 2**31),
        ]
        value = self.rng.choice(choices)
        if isinstance(value, dict):
            value = [value]
        return Garbage("json_not_object", json.dumps(value).encode())

    def invalid_json(self) -> Garbage:
        line = self.rng.choice(self.lines)
        value = self.rng.choice([*INVALID_JSON, line + line, line + b"\n" + line])
        return Garbage("invalid_json", value)

    def sysmon_without_event_id(self) -> Garbage:
        event_id = self.rng.choice([_ABSENT, None, "", "-"])
        data = dict(self.rng.choice(self.sysmon[self.rng.choice([1, 3, 5])]))
        value = self.doc(self.rng.choice(SHAPES), event_id, data)
        return Garbage("sysmon_without_event_id", value)

    def sysmon_wrong_types(self) -> Garbage:
        event_id = self.rng.choice([1, 3, 5])
        data: Any = dict(self.rng.choice(self.sysmon[event_id]))
        shape = self.rng.choice(SHAPES)
        how = self.rng.random()
        written_id: Any = self.rng.choice([event_id, str(event_id)])
        if how < 0.15:
            written_id = self.rng.choice(BAD_EVENT_IDS)
        elif how < 0.25 and shape != "flat":
            data = self.rng.choice([["UtcTime", "ProcessGuid"], "event data as text", 42, None])
        elif how < 0.32:
            del data[self.rng.choice(["ProcessGuid", "UtcTime"])]
        else:
            name, values = self.rng.choice(WRONG[event_id])
            data[name] = self.rng.choice(values)
        return Garbage("sysmon_wrong_types", self.doc(shape, written_id, data))

    def tombstone(self) -> Garbage:
        return Garbage("tombstone", None)

    def oversize(self, kind: str) -> Garbage:
        size = self.rng.randint(200_000, 900_000)
        if kind == "bytes":
            return Garbage("oversize_bytes", self.rng.randbytes(size))
        if kind == "sysmon":
            data = {**self.sysmon[1][0], "CommandLine": "A" * size, "ProcessGuid": "not-a-guid"}
            return Garbage("oversize_sysmon", self.doc("ecs", 1, data))
        if kind == "array":
            return Garbage("oversize_array", json.dumps(["x" * 1000] * (size // 1004)).encode())
        return Garbage("oversize_object", json.dumps({"message": "x" * size}).encode(), NOT_WINDOWS)

    # -- legitimately filtered --

    def object_not_windows(self) -> Garbage:
        how = self.rng.random()
        if how < 0.1:
            doc: dict[str, Any] = {}
        elif how < 0.25:
            doc = {"winlog": self.rng.choice(["x", [1], 5, None, True]), "message": "hi"}
        else:
            doc = {self.key(): self.json_value(1) for _ in range(self.rng.randint(1, 8))}
        return Garbage("object_not_windows", json.dumps(doc).encode(), NOT_WINDOWS)

    def windows_not_sysmon(self) -> Garbage:
        if self.rng.random() < 0.3:
            doc = dict(self.rng.choice(self.not_sysmon))
            doc["event_id"] = self.rng.choice([*BAD_EVENT_IDS, None])
            doc["event_data"] = self.json_value(2)
            return Garbage("windows_not_sysmon", json.dumps(doc).encode(), NOT_SYSMON)
        channel = self.rng.choice([
            "Security", "System", "Application", "Microsoft-Windows-PowerShell/Operational",
            SYSMON_CHANNEL + " ", "Sysmon", 123, None, [SYSMON_CHANNEL], {"name": SYSMON_CHANNEL},
        ])  # fmt: skip
        provider = self.rng.choice(
            ["Microsoft-Windows-Security-Auditing", None, 42, [SYSMON_PROVIDER]]
        )
        event_id = self.rng.choice([1, 3, 5, 4624, *BAD_EVENT_IDS, _ABSENT])
        data = dict(self.rng.choice(self.sysmon[self.rng.choice([1, 3, 5])]))
        data[self.rng.choice(list(data))] = self.json_value(2)
        value = self.doc(self.rng.choice(SHAPES), event_id, data, channel, provider)
        return Garbage("windows_not_sysmon", value, NOT_SYSMON)

    def sysmon_other_event(self) -> Garbage:
        # Ids that name no process: neither enriched (SYSMON_ENRICH_EVENTS) nor wanted by
        # the default rules, so dropped before their data is read, whatever it holds.
        event_id = self.rng.choice([4, 6, 16, 19, 20, 21, 255, "6", " 255 "])
        shape = self.rng.choice(SHAPES)
        data: Any = dict(self.rng.choice(self.sysmon[self.rng.choice([1, 3, 5])]))
        if self.rng.random() < 0.3 and shape != "flat":
            data = self.rng.choice([["x"], "text", 42, None])
        else:
            name, values = self.rng.choice(WRONG[3])
            data[name] = self.rng.choice(values)
        reason = f"sysmon_event_{int(str(event_id))}"
        return Garbage("sysmon_other_event", self.doc(shape, event_id, data), reason)


#: What each dead-lettered kind's reason must say (normalize.py's words). A
#: reason starting "pipeline error" or "normalizer failed" is an exception
#: the pipeline did not foresee: a bug, whatever the kind.
DEAD_LETTER_REASONS = {
    "random_bytes": r"not valid (UTF-8|JSON)|not an object",
    "oversize_bytes": r"not valid (UTF-8|JSON)",
    "invalid_utf8": r"not valid UTF-8",
    "truncated_json": r"not valid (UTF-8|JSON)",
    "json_not_object": r"not an object",
    "oversize_array": r"not an object",
    "invalid_json": r"not valid JSON",
    "sysmon_without_event_id": r"^Sysmon event without an event id$",
    "sysmon_wrong_types": r"^(Sysmon event [135]\b|event id)",
    "oversize_sysmon": r"^Sysmon event 1: ProcessGuid=",
    "tombstone": r"null",
}


def test_ten_thousand_garbage_records_interleaved_with_a_recording(
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / f"{STORM_RECORDING}.jsonl.gz"
    recording = lines(path)
    expected = compute(path)
    counts = readme_counts(datasets_dir / "README.md")[STORM_RECORDING.rsplit("_", 1)[0]]
    bad = GarbageMaker(GARBAGE_SEED, recording).make(GARBAGE_RECORDS)
    assert len(bad) == GARBAGE_RECORDS
    assert all(value is None or len(value) < 1_000_000 for value in (g.value for g in bad)), (
        "every value fits the broker's default limit (message.max.bytes, 1 MB)"
    )

    # Interleaved at random, the recording's lines in their order.
    rng = random.Random(GARBAGE_SEED + 1)
    slots = [True] * len(bad) + [False] * len(recording)
    rng.shuffle(slots)
    garbage_at: dict[int, Garbage] = {}
    recording_at: list[int] = []
    values: list[bytes | None] = []
    bad_iter, line_iter = iter(bad), iter(recording)
    for offset, is_garbage in enumerate(slots):
        if is_garbage:
            garbage_at[offset] = next(bad_iter)
            values.append(garbage_at[offset].value)
        else:
            recording_at.append(offset)
            values.append(next(line_iter))
    dead = {offset: g for offset, g in garbage_at.items() if g.filtered is None}
    filtered = Counter(g.filtered for g in bad if g.filtered is not None)
    assert len(dead) + sum(filtered.values()) == GARBAGE_RECORDS

    env = pipeline_env(partitions=4)
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    create_topic(bootstrap, input_topic, partitions=1)  # one partition: the order is kept
    worker = worker_factory(env)
    started = time.monotonic()
    # Kafka wants a key or a value: a tombstone gets a key.
    keys = [b"tombstone-%d" % n if value is None else None for n, value in enumerate(values)]
    produce(bootstrap, input_topic, values, partition=0, keys=keys)  # type: ignore[arg-type]
    stats = worker.wait_for(
        lambda s: s["consumed"] >= len(values) and s["join_handled"] >= s["normalized"],
        timeout=180,
    )
    handled_in = time.monotonic() - started

    # The worker is up and well.
    assert worker.process.poll() is None, "the worker died"
    status, health = worker.http("/health")
    assert status == 200 and health["healthy"], health

    # Every record is accounted for: the garbage dead-lettered or filtered as
    # its kind says, the recording as in a clean run.
    assert stats["consumed"] == len(values)
    assert stats["dead_lettered"] == len(dead)
    assert stats["filtered_by_reason"] == dict(expected.filtered + filtered)
    assert stats["filtered"] == sum(expected.filtered.values()) + sum(filtered.values())
    assert stats["normalized"] == expected.events - sum(expected.filtered.values())

    letters = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_DLQ"], len(dead))]
    by_offset = {letter["source_offset"]: letter for letter in letters}
    assert len(letters) == len(by_offset) == len(dead), "one dead letter per bad record"
    assert not set(by_offset) & set(recording_at), "a recording line was dead-lettered"
    missing = sorted(set(dead) - set(by_offset))
    assert not missing, [(o, dead[o].kind, (dead[o].value or b"")[:80]) for o in missing]
    assert set(by_offset) == set(dead)
    wrong_reason = []
    for offset, garbage in dead.items():
        letter = by_offset[offset]
        assert letter["source_topic"] == input_topic and letter["source_partition"] == 0
        error = letter["error"]
        assert isinstance(error, str) and error.strip(), letter
        if re.match("pipeline error|normalizer failed", error) or not re.search(
            DEAD_LETTER_REASONS[garbage.kind], error
        ):
            wrong_reason.append((garbage.kind, error[:200]))
        if garbage.value is None:
            assert letter["raw"] is None and letter["raw_base64"] is None, letter
        elif letter["raw"] is not None:
            assert letter["raw"].encode() == garbage.value
        else:
            assert base64.b64decode(letter["raw_base64"]) == garbage.value
    assert not wrong_reason, wrong_reason[:20]

    # The recording's results are those of a clean run: the reference's and
    # the datasets README's.
    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], stats["joined"])]
    alerts = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_ALERTS"], stats["alerts"])]
    unmatched = [
        r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_UNMATCHED"], stats["unmatched"])
    ]
    assert len(joined) == len(expected.joined) == counts["joined"]
    assert len(unmatched) == len(expected.unmatched) == counts["unmatched"]
    assert len(alerts) == expected.wmi_alerts == counts["alerts"]
    assert Counter(map(output_identity, joined)) == Counter(
        network_identity(connect) for connect, _ in expected.joined
    )
    assert Counter(output_identity(alert["event"]) for alert in alerts) == Counter(
        network_identity(connect)
        for connect, create in expected.joined
        if str(create.get("ParentImage", "")).lower().endswith("\\wmiprvse.exe")
    )
    assert Counter(map(output_identity, unmatched)) == Counter(
        network_identity(connect) for connect in expected.unmatched
    )
    assert stats["table_rows"] == len(expected.process_creates) == counts["process_creates"]
    print(
        f"\n{len(values)} records ({len(bad)} garbage: {len(dead)} dead letters, "
        f"{sum(filtered.values())} filtered {dict(filtered)}) handled in {handled_in:.1f} s; "
        f"by kind: {dict(Counter(g.kind for g in bad))}"
    )


# --- valid events the broker will not store in an output topic ---------------


def _utc_time_in(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@pytest.mark.parametrize("case", ["clock two hours ahead", "creation of 2 MB"])
def test_a_valid_event_the_broker_refuses_downstream_does_not_stop_the_worker(
    case: str,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env(partitions=2)
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    # An input topic that takes large values (as the first test's does).
    create_topic(bootstrap, input_topic, partitions=1, max_message_bytes=str(16 * 1024 * 1024))
    hostile, normal = events.guid(1), events.guid(2)
    if case == "clock two hours ahead":
        ahead = _utc_time_in(2 * 3600)
        values = [events.create(ahead, hostile), events.connect(ahead, hostile, 443)]
    else:
        values = [
            events.winlogbeat(
                1, "2019-03-19 15:28:13.000", hostile, Image="C:\\x.exe", CommandLine="A" * 2**21
            ),
            events.connect("2019-03-19 15:28:14.000", hostile, 443),
        ]
    values += [
        events.create("2019-03-19 15:28:15.000", normal),
        events.connect("2019-03-19 15:28:16.000", normal, 443),
    ]
    worker = worker_factory(env)
    produce(bootstrap, input_topic, values, partition=0)

    # Processed or dead-lettered, either way: the worker stays up and goes on.
    stats = worker.wait_for(
        lambda s: (
            s["consumed"] >= len(values)
            and s["join_handled"] >= s["normalized"]
            and s["joined"] >= 1
        ),
        timeout=60,
    )
    # The counters can move before a failed batch stops the worker: later, still up?
    time.sleep(5)
    assert worker.process.poll() is None, "the worker died"
    assert worker.http("/health")[0] == 200
    assert stats["normalized"] + stats["dead_lettered"] + stats["filtered"] == len(values)
    status, row = worker.http(f"/process/{normal}")
    assert status == 200, row
    # The hostile creation is in the table, or a dead letter says why not.
    assert worker.http(f"/process/{hostile}")[0] == 200 or worker.stats()["dead_lettered"] >= 1
