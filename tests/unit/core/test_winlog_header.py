"""A Winlogbeat record's header read without decoding it: the same values and outcomes as decoding.

The reference is orjson's decoding of the same bytes
(:func:`~sysmon_faust.core.normalize.parse_json_object` and
:func:`~sysmon_faust.core.normalize.normalize_document`, the path every
record took before the header was read), on every record of
``../shared/datasets`` and ``../shared/cases``, on ``make bench``'s generated
mix, on records built to make the two parsers disagree, and on random
mutations of real records.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Collection, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysmon_faust.core.normalize import (
    PROCESS_EVENT_IDS,
    Invalid,
    NormalizedEvent,
    Outcome,
    SurrogatesReplaced,
    normalize,
    normalize_document,
    parse_json_object,
)
from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from sysmon_faust.core.winlog_header import MAX_BYTES, winlog_header
from tests.support import CASES, DATASETS

CI = bool(os.environ.get("CI"))

#: Sysmon ids kept beyond 1/3/5, as the intake's filter may be set: none, some, all.
KEPT_IDS: list[Collection[int]] = [(), frozenset({7, 11, 22}), frozenset(PROCESS_EVENT_IDS)]

SYSMON_WINLOG = {
    "channel": "Microsoft-Windows-Sysmon/Operational",
    "provider_name": "Microsoft-Windows-Sysmon",
}


def decoded(raw: bytes, other_event_ids: Collection[int]) -> Outcome:
    """What :func:`normalize` gave a record that starts with ``{`` before the header was read."""
    doc = parse_json_object(raw)
    if isinstance(doc, Invalid):
        return doc
    outcome = normalize_document(doc, other_event_ids)
    if isinstance(doc, SurrogatesReplaced) and isinstance(outcome, NormalizedEvent):
        return dataclasses.replace(outcome, surrogates_replaced=True)
    return outcome


def orjson_header(raw: bytes) -> tuple[Any, Any, Any]:
    winlog = orjson.loads(raw)["winlog"]
    return winlog.get("channel"), winlog.get("provider_name"), winlog.get("event_id")


def assert_as_decoded(raw: bytes) -> None:
    header = winlog_header(raw)
    if raw[:1] != b"{":
        # Decoded as before (a BOM, white space, XML): the header is not read.
        assert header is None
        return
    if header is not None:
        assert header == orjson_header(raw)
    for kept in KEPT_IDS:
        assert normalize(raw, kept) == decoded(raw, kept), raw[:200]


def recorded() -> Iterator[bytes]:
    for path in sorted(DATASETS.glob("*.jsonl.gz")):
        with gzip.open(path) as lines:
            yield from (line.rstrip(b"\n") for line in lines)
    for path in sorted(CASES.glob("*.jsonl")):
        yield from path.read_bytes().splitlines()


def test_recordings_and_cases_as_decoded() -> None:
    if not DATASETS.is_dir():
        pytest.skip(f"{DATASETS} not found (set SYSMON_SHARED_DIR to the shared/ folder)")
    records = list(recorded())
    headers = 0
    for raw in records:
        assert_as_decoded(raw)
        headers += winlog_header(raw) is not None
    # The recordings hold Winlogbeat 7 records (read from their header) and older
    # shapes (decoded): both paths are taken.
    assert 0 < headers < len(records)


def test_generated_mix_as_decoded() -> None:
    records = [event.value for event in Workload(WorkloadConfig(events=20_000, hosts=20))]
    for raw in records:
        assert_as_decoded(raw)
    # Nearly every record of the mix is read from its header.
    assert sum(winlog_header(raw) is not None for raw in records) > 0.9 * len(records)


def winlog_record(winlog: dict[str, Any], **more: Any) -> bytes:
    return orjson.dumps({"@timestamp": "2026-01-05T09:00:00Z", "winlog": winlog, **more})


SECURITY = {"channel": "Security", "provider_name": "Microsoft-Windows-Security-Auditing"}
SYSMON_11 = winlog_record({**SYSMON_WINLOG, "event_id": 11, "event_data": {"TargetFilename": "x"}})


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xef\xbb\xbf" + SYSMON_11, id="utf8-bom"),
        pytest.param(b" " + SYSMON_11, id="leading-space"),
        pytest.param(SYSMON_11 + b" x", id="trailing-garbage"),
        pytest.param(SYSMON_11[:-1], id="truncated"),
        pytest.param(SYSMON_11.replace(b'"x"', b'"\\udc80"'), id="lone-surrogate"),
        pytest.param(SYSMON_11.replace(b'"x"', b'"\xff"'), id="invalid-utf8"),
        pytest.param(SYSMON_11.replace(b'"x"', b"123456789012345678901234567890"), id="bigint"),
        pytest.param(SYSMON_11.replace(b'"x"', b"1e400"), id="float-overflow"),
        pytest.param(SYSMON_11.replace(b'"x"', b'"a\tb"'), id="control-char"),
        pytest.param(
            SYSMON_11.replace(b'"x"', b'{"a":' * 1023 + b"1" + b"}" * 1023), id="objects-1023-deep"
        ),
        pytest.param(SYSMON_11.replace(b'"x"', b"[" * 1022 + b"]" * 1022), id="arrays-1022-deep"),
        pytest.param(
            SYSMON_11.replace(b'"x"', b'"' + b"a" * MAX_BYTES + b'"'), id="larger-than-max"
        ),
        pytest.param(SYSMON_11.replace(b'"winlog"', b'"\\u0077inlog"'), id="escaped-key"),
        pytest.param(
            SYSMON_11.replace(b"Sysmon/Operational", b"Sysmon\\/Operational"), id="escaped-slash"
        ),
        pytest.param(winlog_record(SECURITY | {"event_id": 4624}), id="security"),
        pytest.param(winlog_record({"event_id": 11}), id="no-channel-no-provider"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": "11"}), id="id-as-text"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": " 11"}), id="id-text-space"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": "0xb"}), id="id-hex-text"),
        pytest.param(
            winlog_record({**SYSMON_WINLOG, "event_id": "\uff11\uff11"}), id="id-wide-digits"
        ),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": 11.0}), id="id-float"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": True}), id="id-bool"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": -1}), id="id-negative"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": 70_000}), id="id-too-large"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": None}), id="id-null"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": [11]}), id="id-array"),
        pytest.param(winlog_record({**SYSMON_WINLOG, "event_id": 3}), id="network-connect"),
        pytest.param(
            winlog_record(
                {"channel": {"a": 1}, "provider_name": "Microsoft-Windows-Sysmon", "event_id": 11}
            ),
            id="channel-object",
        ),
        pytest.param(
            winlog_record({"channel": "MICROSOFT-WINDOWS-SYSMON/OPERATIONAL", "event_id": 11}),
            id="channel-upper-case",
        ),
        pytest.param(orjson.dumps({"winlog": None, "Event": {"System": {}}}), id="winlog-null"),
        pytest.param(orjson.dumps({"winlog": "Security"}), id="winlog-text"),
        pytest.param(orjson.dumps([{"winlog": SYSMON_WINLOG}]), id="array-document"),
    ],
)
def test_where_the_parsers_could_differ(raw: bytes) -> None:
    assert_as_decoded(raw)


def test_a_sysmon_id_nothing_keeps_is_dropped_from_the_header() -> None:
    # The outcome is the decoded one (above); here, that it came from the header.
    assert winlog_header(SYSMON_11) == (*SYSMON_WINLOG.values(), 11)
    assert winlog_header(winlog_record(SECURITY | {"event_id": 4624})) == (
        *SECURITY.values(),
        4624,
    )


def test_duplicate_keys_are_read_by_their_first_occurrence() -> None:
    # The one difference the module documents: no shipper writes such a record,
    # and orjson keeps the last of a repeated key.
    raw = (
        b'{"winlog":{"channel":"Security","event_id":4624},'
        b'"winlog":{"channel":"Microsoft-Windows-Sysmon/Operational","event_id":1}}'
    )
    assert winlog_header(raw) == ("Security", None, 4624)
    assert orjson_header(raw) == ("Microsoft-Windows-Sysmon/Operational", None, 1)


def test_a_parser_still_in_use_decodes_the_record() -> None:
    # pysimdjson refuses to parse while a document of its last parse is alive
    # (another thread): the record is decoded, not misread.
    from sysmon_faust.core import winlog_header as module

    held = module._PARSER.parse(SYSMON_11)
    try:
        assert winlog_header(SYSMON_11) is None
        assert normalize(SYSMON_11) == decoded(SYSMON_11, ())
    finally:
        del held
    assert winlog_header(SYSMON_11) is not None


def _mix_samples() -> list[bytes]:
    config = WorkloadConfig(events=200, hosts=5)
    return [event.value for event in Workload(config)]


@settings(max_examples=1000, deadline=None, derandomize=CI)
@given(
    st.sampled_from(_mix_samples()),
    st.lists(
        st.tuples(
            st.integers(0, 4_000),
            st.sampled_from(["replace", "insert", "delete"]),
            st.binary(min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_records_as_decoded(raw: bytes, edits: list[tuple[int, str, bytes]]) -> None:
    mutated = bytearray(raw)
    for at, how, data in edits:
        at %= len(mutated) + 1
        if how == "replace":
            mutated[at : at + len(data)] = data
        elif how == "insert":
            mutated[at:at] = data
        else:
            del mutated[at : at + len(data)]
    assert_as_decoded(bytes(mutated))
