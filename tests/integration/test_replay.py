"""``python -m sysmon_faust replay`` against the real broker."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from sysmon_faust.cli.recordings import read_records
from tests.reference import lines
from tests.support import SHARED, read_topic


def _run_replay(
    bootstrap: str, topic: str, *files: Path, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "replay", "--topic", topic,
         "--bootstrap-servers", bootstrap, *extra, *map(str, files)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def _replay(bootstrap: str, topic: str, *files: Path, extra: tuple[str, ...] = ()) -> str:
    return _run_replay(bootstrap, topic, *files, extra=extra).stdout


def test_replay_sends_a_recording_unchanged_and_in_order(
    kafka_bootstrap: str, unique_name: Callable[[str], str], datasets_dir: Path
) -> None:
    recording = datasets_dir / "covenant_installutil_2019-10-27223020.jsonl.gz"
    topic = unique_name("replay")
    expected = lines(recording)
    out = _replay(kafka_bootstrap, topic, recording)
    assert f"sent {len(expected)} records (0 not JSON)" in out
    records = read_topic(kafka_bootstrap, topic, expect=len(expected))
    assert [r.value for r in records] == expected


def test_replay_handles_bom_crlf_non_json_and_plain_json(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    crlf = tmp_path / "export.json"
    crlf.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\nnot json\r\n\r\n{"b": 2}\r\n')
    packed = tmp_path / "more.jsonl.gz"
    with gzip.open(packed, "wb") as handle:
        handle.write(b'{"c": 3}\n{"d": \n')
    array = tmp_path / "array.json"
    array.write_bytes(b'[{"e": 5}, {"f": 6}]')
    topic = unique_name("replay")
    out = _replay(kafka_bootstrap, topic, crlf, packed, array, extra=("--rate", "1000"))
    assert "sent 7 records (2 not JSON) from 3 file(s)" in out
    values = [r.value for r in read_topic(kafka_bootstrap, topic, expect=7)]
    assert values == [
        b'{"a": 1}', b"not json", b'{"b": 2}',  # BOM and CRLF gone, blank line skipped
        b'{"c": 3}', b'{"d": ',  # gzip; a broken line is still sent
        b'{"e":5}', b'{"f":6}',  # a JSON array, element by element
    ]  # fmt: skip


def test_replay_says_what_is_wrong(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sysmon_faust", "replay", str(tmp_path / "missing.jsonl")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_replay_sends_a_windows_event_log_file_record_by_record(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    evtx_files = sorted((SHARED / "sigma" / "regression_data").rglob("*.evtx"))
    if not evtx_files:
        pytest.skip("no .evtx under ../shared/sigma/regression_data")
    evtx_file = next(
        f for f in evtx_files if "proc_creation" in f.name or "process_creation" in str(f)
    )
    expected = [orjson.loads(record) for record in read_records(evtx_file.with_suffix(".json"))]
    topic = unique_name("replay")
    out = _replay(kafka_bootstrap, topic, evtx_file)
    assert f"sent {len(expected)} records (0 not JSON)" in out
    sent = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, topic, expect=len(expected))]
    assert [e["Event"]["System"]["EventRecordID"] for e in sent] == [
        e["Event"]["System"]["EventRecordID"] for e in expected
    ]


def test_replay_sends_an_otrf_archive_with_stray_bytes_member_by_member(
    kafka_bootstrap: str, unique_name: Callable[[str], str], datasets_dir: Path, tmp_path: Path
) -> None:
    # As OTRF's Security-Datasets publish a recording: a .tar.gz whose gzip
    # stream is followed by stray bytes.
    recording = datasets_dir / "covenant_installutil_2019-10-27223020.jsonl.gz"
    expected = lines(recording)
    member = gzip.decompress(recording.read_bytes())
    archive = tmp_path / "covenant_installutil.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        info = tarfile.TarInfo("covenant_installutil_2019-10-27223020.json")
        info.size = len(member)
        packed.addfile(info, io.BytesIO(member))
    archive.write_bytes(archive.read_bytes() + b"\r\nstray")
    topic = unique_name("replay")
    result = _run_replay(kafka_bootstrap, topic, archive)
    assert f"sent {len(expected)} records (0 not JSON) from 1 file(s)" in result.stdout
    # Said once, though replay reads each file twice (to count, to send).
    assert result.stderr.count("bytes after the gzip stream ignored") == 1, result.stderr
    values = [r.value for r in read_topic(kafka_bootstrap, topic, expect=len(expected))]
    assert values == expected
