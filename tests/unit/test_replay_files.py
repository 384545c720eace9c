"""Recordings as people have them: Windows event log files (.evtx), indented JSON objects.

SigmaHQ's regression data (``../shared/sigma/regression_data``) holds each
event twice: the ``.evtx`` Windows wrote and a JSON export of it. Read
either way, every event is the same record — but for what the export
changed: it trims trailing blanks from values (the ``.evtx`` keeps them:
``"…powershell.exe" ``) and one export spells ``Explorer.exe`` where the
log has ``Explorer.EXE``; so values are compared stripped and in one case
(Windows paths are case-insensitive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sysmon_faust.normalize import Filtered, Invalid, NormalizedEvent, normalize
from sysmon_faust.replay import ReplayError, read_records
from tests.support import SHARED

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
    with pytest.raises(ReplayError, match=name):
        list(read_records(path))
