"""Where each shipper puts a Windows event's id, channel, provider, computer and data: one place.

Pure functions. :func:`envelope` tries the shapes of :data:`SHAPES` in that
order and says which one it found; :data:`LOOKED_FOR` is what it looked for
when none matched (the reason a record is filtered as "not a Windows event").
Every shape has a real sample in ``docs/shapes.md`` and a table test
(``tests/unit/core/test_shapes.py``); one event rendered in every shape
normalizes to the same record (``tests/unit/core/test_shapes_agree.py``).

======================  =====================================  ==================================
shape                   found by                               Sysmon fields
======================  =====================================  ==================================
winlogbeat-7            ``winlog`` object                      ``winlog.event_data``, and the ECS
                                                               fields the Sysmon module moved
evtx-json               ``Event.System`` object                ``Event.EventData``
azure-ama               ``EventData`` string holding JSON      that JSON object
log-analytics-event     ``EventData`` string holding XML       its ``<Data Name=…>`` elements
flat                    ``EventID``/``Channel``/``SourceName`` the top level
winlogbeat-6            ``event_id``/``log_name``/…            ``event_data``
xml-in-json             ``_raw``/``event``/``xml``/… holding   ``<EventData>`` of that XML
                        an ``<Event>`` XML string
xml                     the whole value is ``<Event>`` XML     ``<EventData>``
======================  =====================================  ==================================

XML is read with defusedxml and no DTD at all (a Windows event has none):
an entity bomb or an external entity is refused (:class:`ShapeError`),
never expanded or fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeGuard
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree
import orjson
from defusedxml import DefusedXmlException

WINLOGBEAT_7: Final = "winlogbeat-7"
EVTX_JSON: Final = "evtx-json"
AZURE_AMA: Final = "azure-ama"
LOG_ANALYTICS_EVENT: Final = "log-analytics-event"
FLAT: Final = "flat"
WINLOGBEAT_6: Final = "winlogbeat-6"
XML_IN_JSON: Final = "xml-in-json"
XML: Final = "xml"

#: Every shape, in the order :func:`envelope` tries them (XML last: it is
#: the only one read from bytes that are not JSON).
SHAPES: Final = (
    WINLOGBEAT_7, EVTX_JSON, AZURE_AMA, LOG_ANALYTICS_EVENT, FLAT, WINLOGBEAT_6, XML_IN_JSON, XML,
)  # fmt: skip

#: JSON fields that may carry a whole rendered event XML: Splunk's ``_raw``
#: (XmlWinEventLog) and HEC ``event``, ECS ``event.original`` (Winlogbeat's
#: ``include_xml``), and the names exporters commonly give it.
XML_FIELDS: Final = ("_raw", "event", "xml", "Xml", "EventXml", "EventXML", "EventXML_s")

#: What :func:`envelope` looked for, for a document that matched no shape.
LOOKED_FOR: Final = (
    "no Windows event shape matched: looked for a winlog object (Winlogbeat 7/8, Elastic "
    "Agent), Event.System (evtx JSON), an EventData string (Azure Monitor Agent, Log "
    "Analytics Event), EventID/Channel/SourceName/ProviderName (flat: NXLog and similar), "
    "event_id/log_name/source_name (Winlogbeat 6), an <Event> XML string in "
    + "/".join(XML_FIELDS)
    + " or event.original, or a whole <Event> XML value"
)


class ShapeError(ValueError):
    """A value of a known shape that cannot be read (broken or refused XML): says why."""


# Not frozen: one is made per input record, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs 0.71 µs here against 0.15
# (timeit, 7 fields); nothing changes one after it is made.
@dataclass(slots=True)
class Envelope:
    """Where one shape keeps the event id, channel, provider, origin computer and Sysmon fields.

    ``data`` is the Sysmon fields by their Sysmon names (a dict), or whatever
    the shape held there (the normalizer refuses a non-dict): read it with
    :meth:`sysmon_data`.
    """

    shape: str
    event_id: Any
    channel: Any
    provider: Any
    computer: Any
    data: Any
    #: The whole document, where the Sysmon module may have moved fields out
    #: of ``data`` into ECS (Winlogbeat 7/8, Elastic Agent).
    ecs: Mapping[str, Any] | None = None

    def sysmon_data(self) -> Any:
        """The Sysmon fields, those the Sysmon module moved into ECS put back.

        Only asked of Sysmon 1/3/5: putting them back costs ~10 µs, and 94 %
        of what Winlogbeat sends is filtered by its event id first (``make
        bench``, normalizer row: done for every record, it made the
        normalizer 1.6x slower).
        """
        return with_ecs_fields(self.ecs, self.data) if self.ecs is not None else self.data


# --- Winlogbeat 7/8 and Elastic Agent, raw or through the Sysmon module -----

#: Where Winlogbeat's and Elastic Agent's Sysmon module moves a Sysmon field
#: to (x-pack/winlogbeat/module/sysmon/config/winlogbeat-sysmon.js, mode
#: "rename"): ECS path → the Sysmon field name.
_ECS_TO_SYSMON: Final = (
    (("process", "entity_id"), "ProcessGuid"),
    (("process", "pid"), "ProcessId"),
    (("process", "executable"), "Image"),
    (("process", "command_line"), "CommandLine"),
    (("process", "working_directory"), "CurrentDirectory"),
    (("process", "parent", "entity_id"), "ParentProcessGuid"),
    (("process", "parent", "pid"), "ParentProcessId"),
    (("process", "parent", "executable"), "ParentImage"),
    (("process", "parent", "command_line"), "ParentCommandLine"),
    (("source", "ip"), "SourceIp"),
    (("source", "port"), "SourcePort"),
    (("source", "domain"), "SourceHostname"),
    (("destination", "ip"), "DestinationIp"),
    (("destination", "port"), "DestinationPort"),
    (("destination", "domain"), "DestinationHostname"),
    (("network", "transport"), "Protocol"),
    (("network", "protocol"), "DestinationPortName"),
)
#: network.direction → Sysmon's Initiated (the module's mapping, and ECS 8's names).
_DIRECTION_INITIATED: Final = {
    "egress": "true",
    "outbound": "true",
    "ingress": "false",
    "inbound": "false",
}


_ECS_BY_OBJECT: Final = tuple(
    (top, tuple((path[1:], name) for path, name in _ECS_TO_SYSMON if path[0] == top))
    for top in dict.fromkeys(path[0] for path, _ in _ECS_TO_SYSMON)
)


def _path(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def with_ecs_fields(doc: Mapping[str, Any], event_data: Any) -> Any:
    """``winlog.event_data`` with the Sysmon fields the Sysmon module moved into ECS put back.

    The module (Winlogbeat 7/8, Elastic Agent) renames ProcessGuid, Image,
    parents, UtcTime, addresses, ports, protocol and direction into ECS fields
    (../shared/cases/wlb7_sysmon_module_ecs) and deletes an emptied
    ``event_data``; what it left stays. Where both hold a field, the ECS
    value wins. A raw event (no module) has none of these ECS fields: unchanged.
    """
    data = dict(event_data) if isinstance(event_data, dict) else {}
    moved = {}
    # By top-level ECS object, so that an event without one skips its paths
    # (the merge runs for every Sysmon event a rule wants: make bench, rules row).
    for top, entries in _ECS_BY_OBJECT:
        section = doc.get(top)
        if not isinstance(section, dict):
            continue
        for rest, name in entries:
            value = _path(section, rest)
            if value is not None:
                moved[name] = value
    if not moved and not isinstance(doc.get("process"), dict):
        return event_data
    data |= moved
    if "UtcTime" not in data and isinstance(doc.get("@timestamp"), str):
        data["UtcTime"] = doc["@timestamp"]  # the module moves UtcTime there
    user = doc.get("user")
    if "User" not in moved and isinstance(user, dict) and isinstance(user.get("name"), str):
        domain = user.get("domain")
        data["User"] = f"{domain}\\{user['name']}" if isinstance(domain, str) else user["name"]
    direction = _path(doc, ("network", "direction"))
    if isinstance(direction, str) and direction.lower() in _DIRECTION_INITIATED:
        data["Initiated"] = _DIRECTION_INITIATED[direction.lower()]
    network_type = _path(doc, ("network", "type"))
    if isinstance(network_type, str) and network_type.lower() in ("ipv4", "ipv6"):
        is_ipv6 = "true" if network_type.lower() == "ipv6" else "false"
        data.setdefault("SourceIsIpv6", is_ipv6)
        data.setdefault("DestinationIsIpv6", is_ipv6)
    hashes = doc.get("hash")
    if "Hashes" not in data and isinstance(hashes, dict) and hashes:
        data["Hashes"] = ",".join(
            f"{name.upper()}={value.upper()}"
            for name, value in hashes.items()
            if isinstance(value, str)
        )
    return data


# --- XML ----------------------------------------------------------------------


def _local(tag: Any) -> str:
    """An element's name without its namespace (``{http://…/event}EventID`` → ``EventID``)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _descendant(element: Element, name: str) -> Element | None:
    for node in element.iter():
        if _local(node.tag) == name:
            return node
    return None


def parse_xml(text: str | bytes) -> Element:
    """One XML document → its root element; :class:`ShapeError` if broken or with a DTD."""
    try:
        return defusedxml.ElementTree.fromstring(text, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ShapeError(f"XML refused ({type(exc).__name__}): a Windows event has no DTD") from exc
    except ParseError as exc:
        raise ShapeError(f"not valid XML: {exc}") from exc


def event_data(element: Element | None) -> dict[str, str | None] | None:
    """``<EventData><Data Name="X">v</Data>…`` → ``{"X": "v", …}`` (an empty element → ``None``)."""
    if element is None:
        return None
    data: dict[str, str | None] = {}
    for item in element:
        name = item.get("Name")
        if _local(item.tag) == "Data" and name is not None:
            data[name] = item.text
    return data


def xml_envelope(text: str | bytes, shape: str = XML) -> Envelope:
    """A rendered Windows event (``<Event xmlns=…><System>…<EventData>``) → its envelope.

    What Windows Event Forwarding, ``wevtutil qe /f:xml``, Splunk's
    XmlWinEventLog and Get-WinEvent's ``ToXml()`` write (the event schema,
    http://schemas.microsoft.com/win/2004/08/events/event). Raises
    :class:`ShapeError` for XML that is broken, refused, or not an ``<Event>``.
    """
    root = parse_xml(text)
    if _local(root.tag) != "Event":
        raise ShapeError(f"XML root is <{_local(root.tag)}>, not a Windows <Event>")
    system = _child(root, "System")
    if system is None:
        raise ShapeError("Windows <Event> XML without <System>")
    provider = _child(system, "Provider")
    return Envelope(
        shape,
        _text(_child(system, "EventID")),
        _text(_child(system, "Channel")),
        provider.get("Name") if provider is not None else None,
        _text(_child(system, "Computer")),
        event_data(_child(root, "EventData")),
    )


def _text(element: Element | None) -> str | None:
    return element.text if element is not None else None


def _starts_xml(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.lstrip()[:1] == "<"


# --- the shapes, in order ------------------------------------------------------


def envelope(doc: Mapping[str, Any]) -> Envelope | None:
    """The envelope of a decoded JSON object, or ``None`` when it is no Windows event we know.

    Raises :class:`ShapeError` for a known shape holding XML that cannot be read.
    """
    winlog = doc.get("winlog")
    if isinstance(winlog, dict):  # Winlogbeat 7.x / 8.x (ECS), raw or through the Sysmon module
        return Envelope(
            WINLOGBEAT_7,
            winlog.get("event_id"),
            winlog.get("channel"),
            winlog.get("provider_name"),
            winlog.get("computer_name"),
            winlog.get("event_data"),
            doc,  # the ECS fields: Envelope.sysmon_data
        )
    event = doc.get("Event")
    if isinstance(event, dict) and isinstance(event.get("System"), dict):
        # The event's XML as JSON, attributes under "#attributes": what
        # evtx_dump, chainsaw and python-evtx converters write, and SigmaHQ's
        # regression data (../shared/sigma/regression_data).
        system = event["System"]
        return Envelope(
            EVTX_JSON,
            _json_text(system.get("EventID")),
            _json_text(system.get("Channel")),
            _path(system, ("Provider", "#attributes", "Name")),
            _json_text(system.get("Computer")),
            event.get("EventData"),
        )
    data = doc.get("EventData")
    if isinstance(data, str) and ("Computer" in doc or "Provider" in doc or "Source" in doc):
        if _starts_xml(data):
            # Log Analytics' Event table (the Log Analytics agent, SCOM):
            # columns, and the event's <EventData> inside a <DataItem> XML
            # string. Its ParameterXml holds the same values without their
            # names, so it is not read.
            root = parse_xml(data)
            fields = root if _local(root.tag) == "EventData" else _descendant(root, "EventData")
            return Envelope(
                LOG_ANALYTICS_EVENT,
                doc.get("EventID"),
                doc.get("EventLog") or doc.get("Channel"),
                doc.get("Source") or doc.get("Provider"),
                doc.get("Computer"),
                event_data(fields),
            )
        # Azure Monitor Agent's WindowsEvent rows (Log Analytics, exported to
        # Event Hubs): the Sysmon fields are a JSON object serialised into the
        # string EventData (../shared/cases/azure_ama_windowsevent).
        return Envelope(
            AZURE_AMA,
            doc.get("EventID"),
            doc.get("Channel"),
            doc.get("Provider"),
            doc.get("Computer"),
            _json_object_or_text(data),
        )
    # A shape is known by its event id, channel or provider key: a document
    # with its channel or provider but no event id is a broken event of that
    # shape (a Sysmon one is dead-lettered, as in the ECS shape), not "not a
    # Windows event".
    if "EventID" in doc or "Channel" in doc or "SourceName" in doc or "ProviderName" in doc:
        # flat Windows event (NXLog and similar exports)
        return Envelope(
            FLAT,
            doc.get("EventID"),
            doc.get("Channel"),
            doc.get("SourceName") or doc.get("ProviderName"),
            doc.get("Hostname"),
            doc,
        )
    if "event_id" in doc or "log_name" in doc or "source_name" in doc:  # Winlogbeat 6.x
        return Envelope(
            WINLOGBEAT_6,
            doc.get("event_id"),
            doc.get("log_name"),
            doc.get("source_name"),
            doc.get("computer_name"),
            doc.get("event_data"),
        )
    for name in XML_FIELDS:
        if _starts_xml(value := doc.get(name)):
            return xml_envelope(value, XML_IN_JSON)
    if _starts_xml(original := _path(doc, ("event", "original"))):
        return xml_envelope(original, XML_IN_JSON)
    return None


def _json_text(value: Any) -> Any:
    """An XML element as evtx JSON: its text, whether it came with attributes (``#text``) or not."""
    return value.get("#text") if isinstance(value, dict) else value


def _json_object_or_text(text: str) -> Any:
    """A JSON object serialised in a string field, or the string when it holds none."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return value if isinstance(value, dict) else text
