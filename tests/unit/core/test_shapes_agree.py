"""One Sysmon event, rendered in every shape a shipper writes, normalizes to one record.

Property-based (hypothesis): a canonical Sysmon 1, 3 or 5 — Sysmon's field
names, the values Sysmon writes — is rendered here, independently of
``sysmon_faust.core.shapes``, the way each shipper writes it (docs/shapes.md):
Winlogbeat 6, Winlogbeat 7/8 raw and through the Sysmon module (ECS), flat
(NXLog), Azure Monitor Agent, Log Analytics' Event table, evtx JSON, the
rendered XML whole and inside a JSON field. Every rendering must give the
same record, field for field (the shape it came in aside).

Values avoid what a shape cannot carry: XML turns a CR LF into LF and has
no control characters, so text here has neither; the Sysmon module's ECS
fields carry no "-" (it drops empty values), so those fields are either set
or absent.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import uuid
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from hypothesis import given, settings
from hypothesis import strategies as st

from sysmon_faust.core.normalize import (
    FIELD_MAPS,
    NETWORK_CONNECT,
    PROCESS_CREATE,
    PROCESS_TERMINATE,
    NormalizedEvent,
    canonical_guid,
    normalize,
    to_bool,
    to_int,
)

CI = bool(os.environ.get("CI"))
CHANNEL = "Microsoft-Windows-Sysmon/Operational"
PROVIDER = "Microsoft-Windows-Sysmon"
NAMESPACE = "http://schemas.microsoft.com/win/2004/08/events/event"

# Any character XML 1.0 carries but CR and the other controls; & < > " ' included.
TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="\ufffe\uffff",
    )
    | st.sampled_from("&<>\"'\\é ;"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() not in ("", "-"))


def _guid(n: int) -> str:
    return "{" + str(uuid.UUID(int=n)).upper() + "}"


GUIDS = st.integers(min_value=1, max_value=2**128 - 1).map(_guid)
UINTS = st.integers(min_value=0, max_value=2**32 - 1)
PORTS = st.integers(min_value=0, max_value=65535)


@st.composite
def utc_times(draw: st.DrawFn) -> str:
    """Sysmon's UtcTime: ``YYYY-MM-DD hh:mm:ss.fff``."""
    seconds = draw(st.integers(min_value=1_400_000_000, max_value=2_000_000_000))
    millis = draw(st.integers(min_value=0, max_value=999))
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S") + f".{millis:03d}"


def _value_strategy(name: str, convert: Callable[..., Any]) -> st.SearchStrategy[Any]:
    if convert is canonical_guid:
        return GUIDS
    if convert is to_bool:
        return st.booleans().map(lambda b: "true" if b else "false")
    if convert is to_int or name.endswith("Port"):
        return (PORTS if name.endswith("Port") else UINTS).map(str)
    return TEXT


@st.composite
def sysmon_events(draw: st.DrawFn) -> tuple[int, dict[str, str]]:
    """(event id, Sysmon fields as Sysmon writes them: every value a string)."""
    event_id = draw(st.sampled_from([PROCESS_CREATE, NETWORK_CONNECT, PROCESS_TERMINATE]))
    data = {"RuleName": "-", "UtcTime": draw(utc_times()), "ProcessGuid": draw(GUIDS)}
    for source, _, convert in FIELD_MAPS[event_id]:
        if source == "Hashes":
            continue  # below
        if source == "User":
            data[source] = f"{draw(TEXT).replace(chr(92), '/')}\\{draw(TEXT)}"
        elif draw(st.booleans()) or source == "ProcessId":
            data[source] = draw(_value_strategy(source, convert))
    if event_id == NETWORK_CONNECT:
        # Sysmon logs one address family per connection.
        ipv6 = draw(st.sampled_from(["true", "false"]))
        data["SourceIsIpv6"] = data["DestinationIsIpv6"] = ipv6
    if event_id == PROCESS_CREATE and draw(st.booleans()):
        algorithms = draw(st.lists(st.sampled_from(["SHA1", "MD5", "SHA256", "IMPHASH"]),
                                   min_size=1, max_size=4, unique=True))  # fmt: skip
        digest = st.text("0123456789ABCDEF", min_size=32, max_size=32)
        data["Hashes"] = ",".join(f"{a}={draw(digest)}" for a in algorithms)
    return event_id, data


# --- the renderings -----------------------------------------------------------------


def winlogbeat_6(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    return {"event_id": event_id, "log_name": CHANNEL, "source_name": PROVIDER,
            "computer_name": computer, "event_data": data,
            "beat": {"hostname": "collector"}}  # fmt: skip


def winlogbeat_7(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    return {"@timestamp": "2030-01-01T00:00:00.000Z", "host": {"name": "collector"},
            "winlog": {"event_id": event_id, "channel": CHANNEL, "provider_name": PROVIDER,
                       "computer_name": computer, "event_data": data}}  # fmt: skip


# The Sysmon module's renames (x-pack/winlogbeat/module/sysmon/config/winlogbeat-sysmon.js).
MODULE_RENAMES = {
    "ProcessGuid": "process.entity_id", "ProcessId": "process.pid", "Image": "process.executable",
    "CommandLine": "process.command_line", "CurrentDirectory": "process.working_directory",
    "ParentProcessGuid": "process.parent.entity_id", "ParentProcessId": "process.parent.pid",
    "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "SourceIp": "source.ip", "SourcePort": "source.port", "SourceHostname": "source.domain",
    "DestinationIp": "destination.ip", "DestinationPort": "destination.port",
    "DestinationHostname": "destination.domain", "Protocol": "network.transport",
    "DestinationPortName": "network.protocol",
}  # fmt: skip
NUMBERS = {"ProcessId", "ParentProcessId", "SourcePort", "DestinationPort"}


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        doc = doc.setdefault(name, {})
    doc[leaf] = value


def sysmon_module(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    left = dict(data)
    doc = winlogbeat_7(event_id, left, computer)
    doc["@timestamp"] = left.pop("UtcTime").replace(" ", "T") + "Z"
    for name, path in MODULE_RENAMES.items():
        if name in left:
            value = left.pop(name)
            _put(doc, path, int(value) if name in NUMBERS else value)
    if "User" in left:
        domain, user = left.pop("User").split("\\", 1)
        doc["user"] = {"domain": domain, "name": user}
    if "Initiated" in left:
        doc.setdefault("network", {})["direction"] = (
            "egress" if left.pop("Initiated") == "true" else "ingress"
        )
    if "SourceIsIpv6" in left:
        left.pop("DestinationIsIpv6")
        ipv6 = left.pop("SourceIsIpv6") == "true"
        doc.setdefault("network", {})["type"] = "ipv6" if ipv6 else "ipv4"
    if "Hashes" in left:
        pairs = (pair.split("=") for pair in left.pop("Hashes").split(","))
        doc["hash"] = {name.lower(): value.lower() for name, value in pairs}
    doc["event"] = {"code": event_id, "module": "sysmon", "provider": PROVIDER}
    return doc


def flat(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    every = {source for source, _, _ in FIELD_MAPS[event_id]}
    dashes = {name: "-" for name in every - set(data)}
    return {"EventID": event_id, "Channel": CHANNEL, "SourceName": PROVIDER,
            "Hostname": computer, "host": "collector", **dashes, **data}  # fmt: skip


def azure_ama(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    # UtcTime in 100 ns ticks, T and Z (../shared/cases/azure_ama_windowsevent).
    amended = dict(data, UtcTime=data["UtcTime"].replace(" ", "T") + "0000Z")
    return {"TimeGenerated": "2030-01-01T00:00:00Z", "Provider": PROVIDER, "Channel": CHANNEL,
            "Computer": computer, "EventID": event_id,
            "EventData": json.dumps(amended)}  # fmt: skip


def _event_data_xml(data: dict[str, str]) -> ElementTree.Element:
    element = ElementTree.Element(f"{{{NAMESPACE}}}EventData")
    for name, value in data.items():
        ElementTree.SubElement(element, f"{{{NAMESPACE}}}Data", Name=name).text = value
    return element


def event_xml(event_id: int, data: dict[str, str], computer: str) -> str:
    ElementTree.register_namespace("", NAMESPACE)
    root = ElementTree.Element(f"{{{NAMESPACE}}}Event")
    system = ElementTree.SubElement(root, f"{{{NAMESPACE}}}System")
    ElementTree.SubElement(system, f"{{{NAMESPACE}}}Provider", Name=PROVIDER,
                           Guid="{5770385F-C22A-43E0-BF4C-06F5698FFBD9}")  # fmt: skip
    ElementTree.SubElement(system, f"{{{NAMESPACE}}}EventID").text = str(event_id)
    ElementTree.SubElement(system, f"{{{NAMESPACE}}}Channel").text = CHANNEL
    ElementTree.SubElement(system, f"{{{NAMESPACE}}}Computer").text = computer
    root.append(_event_data_xml(data))
    return ElementTree.tostring(root, encoding="unicode")


def xml_in_json(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    # Splunk's XmlWinEventLog, exported: the rendered event in _raw.
    return {"sourcetype": "XmlWinEventLog", "host": "collector",
            "_raw": event_xml(event_id, data, computer)}  # fmt: skip


def log_analytics_event(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    ElementTree.register_namespace("", NAMESPACE)
    item = ElementTree.Element("DataItem", type="System.XmlData", time="2030-01-01T00:00:00Z")
    item.append(_event_data_xml(data))
    return {"Source": PROVIDER, "EventLog": CHANNEL, "Computer": computer,
            "EventID": event_id, "EventLevelName": "Information",
            "EventData": ElementTree.tostring(item, encoding="unicode"),
            "ParameterXml": "<Param>-</Param>"}  # fmt: skip


def evtx_json(event_id: int, data: dict[str, str], computer: str) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, value in data.items():
        if name in NUMBERS or name == "TerminalSessionId":
            typed[name] = int(value)
        elif value in ("true", "false"):
            typed[name] = value == "true"
        elif name.endswith("Guid"):
            typed[name] = value.strip("{}")  # the evtx package writes GUIDs bare
        else:
            typed[name] = value
    return {"Event": {"#attributes": {"xmlns": NAMESPACE},
                      "System": {"Provider": {"#attributes": {"Name": PROVIDER}},
                                 "EventID": event_id, "Channel": CHANNEL, "Computer": computer},
                      "EventData": typed}}  # fmt: skip


JSON_SHAPES = {
    "winlogbeat-6": winlogbeat_6,
    "winlogbeat-7": winlogbeat_7,
    "winlogbeat-7 sysmon module": sysmon_module,
    "flat": flat,
    "azure-ama": azure_ama,
    "log-analytics-event": log_analytics_event,
    "evtx-json": evtx_json,
    "xml-in-json": xml_in_json,
}


def renderings(event_id: int, data: dict[str, str], computer: str) -> dict[str, bytes]:
    rendered = {
        name: json.dumps(render(event_id, data, computer)).encode()
        for name, render in JSON_SHAPES.items()
    }
    rendered["xml"] = event_xml(event_id, data, computer).encode()
    return rendered


def comparable(outcome: Any) -> Any:
    return (
        dataclasses.replace(outcome, shape="") if isinstance(outcome, NormalizedEvent) else outcome
    )


@settings(max_examples=300, derandomize=CI, deadline=None)
@given(sysmon_events(), TEXT)
def test_every_shape_gives_the_same_record(
    event: tuple[int, dict[str, str]], computer: str
) -> None:
    event_id, data = event
    outcomes = {name: normalize(raw) for name, raw in renderings(event_id, data, computer).items()}
    first = outcomes["winlogbeat-7"]
    assert isinstance(first, NormalizedEvent), first
    assert first.event_id == event_id
    assert first.fields["host_name"] == computer
    for name, outcome in outcomes.items():
        assert comparable(outcome) == comparable(first), name


def test_each_rendering_is_read_as_its_own_shape() -> None:
    data = {"UtcTime": "2019-03-18 16:57:39.012", "ProcessGuid": _guid(7), "ProcessId": "4",
            "Image": "C:\\a.exe", "User": "D\\u"}  # fmt: skip
    shapes = {
        name: outcome.shape
        for name, raw in renderings(PROCESS_CREATE, data, "HOST").items()
        if isinstance(outcome := normalize(raw), NormalizedEvent)
    }
    assert shapes == {
        "winlogbeat-6": "winlogbeat-6",
        "winlogbeat-7": "winlogbeat-7",
        "winlogbeat-7 sysmon module": "winlogbeat-7",
        "flat": "flat",
        "azure-ama": "azure-ama",
        "log-analytics-event": "log-analytics-event",
        "evtx-json": "evtx-json",
        "xml-in-json": "xml-in-json",
        "xml": "xml",
    }
