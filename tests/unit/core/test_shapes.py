"""Rendered Windows event XML, whole or inside a JSON field, and what no shape matches.

Real XML: each record of SigmaHQ's regression ``.evtx`` files rendered as
XML by the ``evtx`` package (as ``evtx_dump``, ``wevtutil qe /f:xml`` and
Windows Event Forwarding render it) reads as the same record as the
package's JSON rendering of it. Then the ways XML is refused: a DTD (an
entity bomb, an external entity), broken XML, XML that is no ``<Event>``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import evtx
import orjson
import pytest

from sysmon_faust.core import shapes
from sysmon_faust.core.normalize import (
    NOT_WINDOWS_EVENT,
    Filtered,
    Invalid,
    NormalizedEvent,
    normalize,
)
from tests.support import SHARED

REGRESSION_DATA = SHARED / "sigma" / "regression_data"


def regression_records() -> list[tuple[str, bytes, bytes]]:
    """(file, XML, JSON) of every record of the regression ``.evtx`` files."""
    if not REGRESSION_DATA.is_dir():
        pytest.skip(f"{REGRESSION_DATA} not found (set SYSMON_SHARED_DIR)")
    records = []
    for path in sorted(REGRESSION_DATA.rglob("*.evtx")):
        as_xml = [r["data"] for r in evtx.PyEvtxParser(str(path)).records()]
        as_json = [r["data"] for r in evtx.PyEvtxParser(str(path)).records_json()]
        assert len(as_xml) == len(as_json), path
        records += [
            (path.name, x.encode(), j.encode()) for x, j in zip(as_xml, as_json, strict=True)
        ]
    return records


def same(outcome: Any) -> Any:
    if isinstance(outcome, NormalizedEvent):
        return dataclasses.replace(outcome, shape="")
    return outcome


def test_every_regression_event_as_xml_reads_as_its_evtx_json() -> None:
    normalized = 0
    for name, xml, as_json in regression_records():
        from_xml, from_json = normalize(xml), normalize(as_json)
        assert not isinstance(from_xml, Invalid), (name, from_xml)
        assert same(from_xml) == same(from_json), name
        if isinstance(from_xml, NormalizedEvent):
            assert from_xml.shape == shapes.XML
            normalized += 1
    assert normalized > 100  # 112 Sysmon 1 among the 148 events


def test_the_xml_inside_a_json_field_reads_as_the_whole_xml() -> None:
    for name, xml, _ in regression_records()[:40]:
        whole = normalize(xml)
        text = xml.decode()
        for doc in ({"_raw": text, "sourcetype": "XmlWinEventLog"}, {"event": text},
                    {"event": {"original": text}}, {"EventXML": text}):  # fmt: skip
            inside = normalize(orjson.dumps(doc))
            assert same(inside) == same(whole), (name, list(doc))
            if isinstance(inside, NormalizedEvent):
                assert inside.shape == shapes.XML_IN_JSON


def test_log_analytics_event_rows_read_their_event_data_xml() -> None:
    # Log Analytics' Event table: columns, and <EventData> inside <DataItem>
    # (Microsoft Sentinel's Sysmon parser reads DataItem.EventData.Data).
    for name, xml, _ in regression_records()[:40]:
        whole = normalize(xml)
        text = xml.decode()
        start, end = text.index("<EventData"), text.index("</EventData>") + len("</EventData>")
        system = orjson.loads(orjson.dumps(shapes.xml_envelope(xml)))  # dataclass as dict
        row = {
            "Source": system["provider"], "EventLog": system["channel"],
            "Computer": system["computer"], "EventID": int(system["event_id"]),
            "EventData": '<DataItem type="System.XmlData" time="2025-01-01T00:00:00Z">'
            + text[start:end] + "</DataItem>",
            "ParameterXml": "<Param>-</Param>",
        }  # fmt: skip
        outcome = normalize(orjson.dumps(row))
        assert same(outcome) == same(whole), name


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Event [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<Event><System><Provider Name="Microsoft-Windows-Sysmon"/><EventID>1</EventID>
<Channel>Microsoft-Windows-Sysmon/Operational</Channel></System>
<EventData><Data Name="CommandLine">&f;</Data></EventData></Event>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Event [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Event><System><Provider Name="Microsoft-Windows-Sysmon"/><EventID>1</EventID></System>
<EventData><Data Name="CommandLine">&secret;</Data></EventData></Event>"""


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (BILLION_LAUGHS, "XML refused (DTDForbidden)"),
        (EXTERNAL_ENTITY, "XML refused (DTDForbidden)"),
        (orjson.dumps({"_raw": BILLION_LAUGHS.decode()}), "XML refused (DTDForbidden)"),
        (b"<Event><System><EventID>1</System></Event>", "not valid XML: mismatched tag"),
        (b"<Events><Event/></Events>", "XML root is <Events>, not a Windows <Event>"),
        (b"<Event><EventData/></Event>", "Windows <Event> XML without <System>"),
        (
            b'<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
            b'<Provider Name="Microsoft-Windows-Sysmon"/><EventID>1</EventID></System></Event>',
            "Sysmon event 1 (xml) has no event data object",
        ),
        (
            orjson.dumps(
                {
                    "Source": "Microsoft-Windows-Sysmon",
                    "EventLog": "x",
                    "EventID": 1,
                    "Computer": "c",
                    "EventData": "<DataItem><EventData>",
                }
            ),
            "not valid XML",
        ),
    ],
)
def test_xml_that_cannot_be_read_is_a_dead_letter_that_says_why(raw: bytes, error: str) -> None:
    started = time.perf_counter()
    outcome = normalize(raw)
    assert time.perf_counter() - started < 1.0  # nothing expanded
    assert isinstance(outcome, Invalid), outcome
    assert error in outcome.error, outcome.error
    assert "root:" not in outcome.error  # /etc/passwd was never read


def test_a_document_of_no_shape_is_filtered_and_says_what_was_looked_for() -> None:
    outcome = normalize(b'{"message": "heartbeat", "host": {"name": "collector"}}')
    assert outcome == Filtered(NOT_WINDOWS_EVENT)
    assert isinstance(outcome, Filtered) and outcome.detail == shapes.LOOKED_FOR
    for looked_for in ("winlog", "Event.System", "EventData", "EventID", "event_id", "_raw"):
        assert looked_for in shapes.LOOKED_FOR


def test_every_shape_is_named_once() -> None:
    assert len(set(shapes.SHAPES)) == len(shapes.SHAPES) == 8
