"""Recordings as people have them: .evtx, indented JSON objects, archives, and what is refused.

SigmaHQ's regression data (``../shared/sigma/regression_data``) holds each
event twice: the ``.evtx`` Windows wrote and a JSON export of it. Read
either way, every event is the same record — but for what the export
changed: it trims trailing blanks from values (the ``.evtx`` keeps them:
``"…powershell.exe" ``) and one export spells ``Explorer.exe`` where the
log has ``Explorer.EXE``; so values are compared stripped and in one case
(Windows paths are case-insensitive).
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from sysmon_faust.cli.recordings import RecordingError, read_records
from sysmon_faust.core.normalize import Filtered, Invalid, NormalizedEvent, normalize
from tests.support import DATASETS, SHARED

REGRESSION_DATA = SHARED / "sigma" / "regression_data"


def comparable(outcome: Any) -> Any:
    if not isinstance(outcome, NormalizedEvent):
        return outcome
    fields = {k: v.strip().lower() if isinstance(v, str) else v for k, v in outcome.fields.items()}
    return (outcome.event_id, outcome.process_guid, outcome.timestamp_ms, fields)


def test_every_regression_evtx_reads_as_its_json_export() -> None:
    if not REGRESSION_DATA.is_dir():
        pytest.skip(f"{REGRESSION_DATA} not found (set SYSMON_SHARED_DIR)")
    files = sorted(REGRESSION_DATA.rglob("*.evtx"))
    normalized = 0
    for evtx_file in files:
        from_evtx = [normalize(record) for record in read_records(evtx_file)]
        from_json = [normalize(record) for record in read_records(evtx_file.with_suffix(".json"))]
        assert from_evtx, evtx_file
        assert not [o for o in from_evtx if isinstance(o, Invalid)], evtx_file
        assert all(isinstance(o, NormalizedEvent | Filtered) for o in from_evtx)
        assert list(map(comparable, from_evtx)) == list(map(comparable, from_json)), evtx_file
        normalized += sum(isinstance(o, NormalizedEvent) for o in from_evtx)
    assert files and normalized > 0


def test_indented_json_objects_are_read_one_by_one(tmp_path: Path) -> None:
    events = [
        {"Event": {"System": {"EventID": n}, "EventData": {"Image": "a\\b é"}}} for n in (1, 3)
    ]
    one = tmp_path / "one.json"
    one.write_text(orjson.dumps(events[0], option=orjson.OPT_INDENT_2).decode())
    two = tmp_path / "two.json"
    two.write_text("\n".join(orjson.dumps(e, option=orjson.OPT_INDENT_2).decode() for e in events))
    assert [orjson.loads(r) for r in read_records(one)] == events[:1]
    assert [orjson.loads(r) for r in read_records(two)] == events


def test_json_lines_are_sent_as_they_are(tmp_path: Path) -> None:
    lines = [b'{"a":  1}', b'{"b": "x"}']
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert list(read_records(path)) == lines


@pytest.mark.parametrize(
    ("name", "content"),
    [("broken.evtx", b"ElfFile\x00 but nothing after"), ("broken.json", b'{\n "a": 1,\n')],
)
def test_an_unreadable_file_is_a_replay_error_naming_it(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=name):
        list(read_records(path))


# --- archives and file kinds -------------------------------------------------------

RECORDING = "covenant_installutil_2019-10-27223020"


@pytest.fixture
def recording_lines() -> list[bytes]:
    """The lines of a real OTRF recording, read with the standard library (the reference)."""
    path = DATASETS / f"{RECORDING}.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found (set SYSMON_SHARED_DIR)")
    return [line for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]


def _tar(path: Path, mode: str, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "name", ["otrf.tar.gz", "otrf.tgz", "otrf.tar.bz2", "otrf.tbz2", "otrf.tar.xz", "otrf.tar",
             "otrf.zip", "OTRF.ZIP"],
)  # fmt: skip
def test_an_archive_reads_as_its_members_in_order(
    tmp_path: Path, recording_lines: list[bytes], name: str
) -> None:
    # As OTRF publishes them: the recording as a .json member; here it is cut
    # in two members, with a member of another kind between them (skipped, said).
    half = len(recording_lines) // 2
    members = {
        "dataset/part1.json": b"\n".join(recording_lines[:half]) + b"\n",
        "dataset/README.txt": b"not a recording",
        "dataset/part2.jsonl": b"\r\n".join(recording_lines[half:]),
    }
    path = tmp_path / name
    if name.lower().endswith(".zip"):
        _zip(path, members)
    else:
        mode = {"gz": "w:gz", "tgz": "w:gz", "bz2": "w:bz2", "tbz2": "w:bz2", "xz": "w:xz"}
        _tar(path, mode.get(name.rsplit(".", 1)[-1], "w"), members)
    notes: list[str] = []
    assert list(read_records(path, notes.append)) == recording_lines
    assert notes == [f"{path}: 1 member(s) of no recording kind skipped (dataset/README.txt)"]


def test_stray_bytes_after_the_gzip_stream_are_ignored_and_said(
    tmp_path: Path, recording_lines: list[bytes]
) -> None:
    # OTRF's Security-Datasets copies: bytes after the gzip member.
    data = b"\n".join(recording_lines)
    archive = _tar(tmp_path / "otrf.tar.gz", "w:gz", {"otrf.json": data})
    archive.write_bytes(archive.read_bytes() + b"\nstray bytes\x00\x01")
    packed = tmp_path / "otrf.jsonl.gz"
    packed.write_bytes(gzip.compress(data) + b"\x0atrailing")
    for path in (archive, packed):
        notes: list[str] = []
        assert list(read_records(path, notes.append)) == recording_lines
        assert len(notes) == 1 and "bytes after the gzip stream ignored" in notes[0], notes
    # Zero padding after the stream (what some tape tools leave) is nothing to say.
    padded = tmp_path / "padded.jsonl.gz"
    padded.write_bytes(gzip.compress(data) + b"\x00" * 1000)
    notes = []
    assert list(read_records(padded, notes.append)) == recording_lines
    assert notes == []


def test_concatenated_gzip_members_are_all_read(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"b":2}\n'))
    assert list(read_records(path)) == [b'{"a":1}', b'{"b":2}']


def test_an_evtx_member_reads_as_the_evtx_file(tmp_path: Path) -> None:
    evtx_files = sorted(REGRESSION_DATA.rglob("*.evtx"))[:5]
    if not evtx_files:
        pytest.skip(f"{REGRESSION_DATA} not found (set SYSMON_SHARED_DIR)")
    members = {f"logs/{n}-{p.name}": p.read_bytes() for n, p in enumerate(evtx_files)}
    expected = [record for path in evtx_files for record in read_records(path)]
    for path in (_zip(tmp_path / "logs.zip", members),
                 _tar(tmp_path / "logs.tar.gz", "w:gz", members)):  # fmt: skip
        assert list(read_records(path)) == expected


@pytest.mark.parametrize(
    "name", ["events.txt", "events.csv", "events.xml", "events.7z", "events", "events.json.bak"]
)
def test_a_file_of_no_kind_read_here_is_refused_by_its_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b'{"a": 1}\n')
    with pytest.raises(RecordingError, match=f"{name}: not a recording this reads") as refused:
        list(read_records(path))
    assert ".jsonl" in str(refused.value) and ".zip" in str(refused.value)


#: By name: gzip's header holds the time, and pytest-xdist's workers, which each
#: collect the tests, must find the same ids.
UNREADABLE_ARCHIVES = [
    ("cut.tar.gz", gzip.compress(b"x" * 100_000)[:500]),
    ("notgzip.tgz", b"PK\x03\x04 a zip named tgz"),
    ("broken.zip", b"PK\x03\x04 not really"),
    ("empty.zip", b""),
    ("garbage.tar", b"\x01" * 1024),
    ("cut.jsonl.gz", gzip.compress(b'{"a":1}\n' * 1000)[:-20]),
    ("binary.tar.bz2", b"BZh9 not bzip2"),
]


@pytest.mark.parametrize(
    ("name", "content"), UNREADABLE_ARCHIVES, ids=[name for name, _ in UNREADABLE_ARCHIVES]
)
def test_an_unreadable_archive_is_an_error_naming_it(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=re.escape(str(path))):
        list(read_records(path))
