"""A process's activity summary: counts by Sysmon id, the newest events of each kind, bounded."""

from __future__ import annotations

from typing import Any

import pytest

from sysmon_faust.core import activity
from sysmon_faust.core.activity import MAX_VALUE_CHARS, add, answer


def record(event_id: int, second: int, **fields: Any) -> dict[str, Any]:
    """A sysmon-enriched record of process P: HELK fields at the top, EventData apart."""
    helk = {k: fields.pop(k) for k in list(fields) if k.islower()}
    return {
        "event_id": event_id, "process_guid": "{p}",
        "event_date_creation": f"2026-01-05T09:00:{second:02d}.000Z",
        "event_data": fields, **helk,
    }  # fmt: skip


def test_counts_span_and_the_newest_of_each_kind() -> None:
    summary = None
    for second in range(8):
        summary = add(summary, record(13, second, TargetObject=f"HKLM\\k{second}"), recent=3)
    summary = add(summary, record(3, 8, dst_ip_addr="10.0.0.1", dst_port=443,
                                  dst_query_name="c2.example.org"), recent=3)  # fmt: skip
    summary = add(summary, record(1, 0, CommandLine="x"), recent=3)
    summary = add(summary, record(10, 9, target_process_guid="{t}", TargetImage="lsass.exe",
                                  GrantedAccess="0x1010", CallTrace="long"), recent=3)  # fmt: skip
    summary = add(summary, record(255, 9), recent=3)
    got = answer("{p}", summary, 3)
    assert got["events"] == 12
    assert got["counts_by_event_id"] == {"1": 1, "3": 1, "10": 1, "13": 8, "255": 1}
    assert (got["first_seen"], got["last_seen"]) == (
        "2026-01-05T09:00:00.000Z", "2026-01-05T09:00:09.000Z")  # fmt: skip
    assert [i["TargetObject"] for i in got["recent"]["registry"]] == ["HKLM\\k7", "HKLM\\k6",
                                                                       "HKLM\\k5"]  # fmt: skip
    assert got["recent"]["connections"] == [{
        "time": "2026-01-05T09:00:08.000Z", "event_id": 3, "dst_ip_addr": "10.0.0.1",
        "dst_port": 443, "dst_query_name": "c2.example.org",
    }]  # fmt: skip
    assert got["recent"]["handles_opened"][0]["TargetImage"] == "lsass.exe"
    assert "CallTrace" not in got["recent"]["handles_opened"][0]
    assert list(got["recent"]) == ["connections", "registry", "handles_opened", "other"]


def test_a_late_event_lands_in_time_order_and_long_values_are_cut() -> None:
    summary = None
    for second in (5, 7, 1):
        summary = add(summary, record(11, second, TargetFilename=f"f{second}"), recent=2)
    assert summary is not None
    assert [i["TargetFilename"] for i in summary["recent"]["files"]] == ["f7", "f5"]
    summary = add(summary, record(11, 9, TargetFilename="x" * 5000), recent=2)
    assert len(summary["recent"]["files"][0]["TargetFilename"]) == MAX_VALUE_CHARS


def test_the_creation_is_counted_from_the_row_once() -> None:
    created_at = "2026-01-05T08:59:58.000Z"
    summary = add(None, record(13, 4, TargetObject="HKLM\\k"), recent=3)
    got = answer("{p}", summary, 3, created_at=created_at)
    assert got["counts_by_event_id"] == {"1": 1, "13": 1} and got["events"] == 2
    assert (got["first_seen"], got["last_seen"]) == (created_at, "2026-01-05T09:00:04.000Z")
    # The row alone (a process that did nothing else yet).
    alone = answer("{p}", None, 3, created_at=created_at)
    assert alone["counts_by_event_id"] == {"1": 1}
    assert alone["first_seen"] == alone["last_seen"] == created_at and alone["recent"] == {}
    # A summary kept before creations were left out of it counts its creation already.
    older = add(summary, record(1, 0), recent=3)
    assert answer("{p}", older, 3, created_at=created_at)["counts_by_event_id"]["1"] == 1


def test_encode_decode() -> None:
    summary = add(None, record(7, 1, ImageLoaded="C:\\x.dll"), recent=5)
    assert activity.decode(activity.encode(summary, 42)) == (summary, 42)
    with pytest.raises(ValueError):
        activity.decode(b'{"summary": 1, "until_ms": 2}')
