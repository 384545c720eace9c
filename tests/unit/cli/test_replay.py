"""``replay`` refuses a file it cannot read before it sends anything (no broker needed).

The broker address points nowhere: a refusal must come from reading the
files, before any connection is tried.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from sysmon_faust.cli import replay

NOWHERE = ["--bootstrap-servers", "127.0.0.1:9"]


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("events.txt", b'{"a": 1}\n', "not a recording this reads"),
        ("events.zip", b"PK\x03\x04 not really", "cannot read"),
        ("events.jsonl.gz", gzip.compress(b'{"a": 1}\n' * 500)[:-30], "cannot read"),
    ],
    # By name: gzip's header holds the time, and pytest-xdist's workers, which
    # each collect the tests, must find the same ids.
    ids=["not-a-recording", "not-a-zip", "truncated-gzip"],
)
def test_a_file_it_cannot_read_stops_it_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, why: str
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"a": 1}\n')
    bad = tmp_path / name
    bad.write_bytes(content)
    assert replay.main([*NOWHERE, str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("replay: ") and str(bad) in lines[0] and why in lines[0]
