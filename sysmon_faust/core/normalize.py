"""Raw input value (bytes) → a normalized Sysmon event, or the reason it is not one.

Pure functions, no Faust and no Kafka: everything here is table-tested on real
recorded lines (tests/unit/core/test_normalize.py). :func:`normalize` never raises;
whatever it cannot read becomes an :class:`Invalid` with a reason that goes to
the dead-letter topic.

Where each shipper keeps the event (eight shapes, JSON and XML) is found in
one place, :mod:`sysmon_faust.core.shapes`; here its Sysmon fields become the
record (docs/shapes.md lists every shape with a sample).

Field names follow HELK's KSQL recipe. The collector's host name
(``host.name``, ``beat.hostname``, NXLog's ``host``) and the Sysmon service's
own pid are deliberately never read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from sysmon_faust.core import shapes
from sysmon_faust.core.shapes import Envelope
from sysmon_faust.core.winlog_header import winlog_header

UTF8_BOM: Final = b"\xef\xbb\xbf"
SYSMON_CHANNEL: Final = "microsoft-windows-sysmon/operational"
SYSMON_PROVIDER: Final = "microsoft-windows-sysmon"

PROCESS_CREATE: Final = 1
PROCESS_TERMINATE: Final = 5
NETWORK_CONNECT: Final = 3

ZERO_GUID: Final = "{00000000-0000-0000-0000-000000000000}"

#: The Sysmon event ids that name the process they are about (schema 4.90, as
#: OSSEM lists them): ``ProcessGuid``, or for 8 and 10 ``SourceProcessGuid``
#: (10 spells it ``SourceProcessGUID``) and a target. 4, 6, 16, 19-21 and 255
#: name none. The ids ``SYSMON_ENRICH_EVENTS`` may enable.
PROCESS_EVENT_IDS: Final[tuple[int, ...]] = (
    1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 22, 23, 24, 25, 26, 27, 28, 29,
)  # fmt: skip

_GUID = re.compile(r"^\{?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}?$")
_UTC_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:?00)?$"
)
_XML_ENTITY = re.compile(r"&(lt|gt|amp|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


# Not frozen, as shapes.Envelope: one per event kept, and nothing changes it.
@dataclass(slots=True)
class NormalizedEvent:
    """A Sysmon event the pipeline handles, with HELK field names.

    ``fields`` holds every field of its kind (``None`` where the source lacks
    it), ready to become a :mod:`sysmon_faust.core.records` record.
    """

    event_id: int
    process_guid: str | None
    timestamp_ms: int
    fields: dict[str, Any]
    #: Unpaired UTF-16 surrogates in the input were replaced by U+FFFD.
    surrogates_replaced: bool = False
    #: The shape it came in (:data:`sysmon_faust.core.shapes.SHAPES`).
    shape: str = ""
    #: EventData fields not in ``fields``, Sysmon's names and values as
    #: written: for Sysmon 1/3/5 what the map leaves (OriginalFileName,
    #: RuleName, UtcTime...), for the others all of it. The rules read it
    #: (:mod:`sysmon_faust.core.sigma.fields`); the derived topics do not carry it.
    event_data: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Filtered:
    """A well-formed event that the pipeline does not handle (counted, then dropped)."""

    reason: str
    event_id: int | None = None
    #: What was looked for, when ``reason`` alone does not say (``not_a_windows_event``).
    detail: str | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input the pipeline cannot read: it goes to the dead-letter topic with ``error``."""

    error: str


Outcome = NormalizedEvent | Filtered | Invalid

NOT_SYSMON: Final = "not_sysmon"
NOT_WINDOWS_EVENT: Final = "not_a_windows_event"


class _FieldError(ValueError):
    """One field has a value of the wrong type; the message names it."""


# --- value conversion -------------------------------------------------------


def clean_text(value: Any, name: str) -> str | None:
    """A Sysmon string value: ``"-"``, ``""`` and missing become ``None``; XML escapes undone."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        raise _FieldError(f"{name}: expected a string, got {type(value).__name__}")
    if text == "" or text == "-":
        return None
    if "&" in text:
        text = _XML_ENTITY.sub(_unescape_entity, text)
    return text


def _unescape_entity(match: re.Match[str]) -> str:
    entity = match.group(1)
    if entity[0] != "#":
        return _NAMED_ENTITIES[entity]
    code = int(entity[2:], 16) if entity[1] in "xX" else int(entity[1:])
    # A code point that is out of range, NUL or a lone surrogate (which no
    # UTF-8 encoder accepts) is left as it was written rather than guessed at.
    valid = 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF
    return chr(code) if valid else match.group(0)


def to_int(value: Any, name: str, low: int = 0, high: int = 2**32 - 1) -> int | None:
    """Sysmon sends numbers as strings (``"904"``); ``None``/``"-"``/``""`` → ``None``."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise _FieldError(f"{name}={value!r} is not an integer")
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text in ("", "-"):
            return None
        try:
            number = int(text, 16) if text[:2].lower() == "0x" else int(text)
        except ValueError:
            raise _FieldError(f"{name}={value!r} is not an integer") from None
    else:
        raise _FieldError(f"{name}={value!r} is not an integer")
    if not low <= number <= high:
        raise _FieldError(f"{name}={number} is out of range ({low}..{high})")
    return number


def to_bool(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "-"):
            return None
        if text == "true":
            return True
        if text == "false":
            return False
    raise _FieldError(f"{name}={value!r} is not a boolean")


def canonical_guid(value: Any, name: str = "guid") -> str | None:
    """Lower-case braced GUID; the zero GUID and empty values are no process → ``None``.

    Raises ``ValueError`` (naming ``name``) for text that is not a GUID.
    """
    text = clean_text(value, name)
    if text is None:
        return None
    match = _GUID.match(text.strip().lower())
    if match is None:
        raise _FieldError(f"{name}={text!r} is not a GUID")
    guid = "{" + match.group(1) + "}"
    return None if guid == ZERO_GUID else guid


def parse_utc_time(value: Any, name: str = "UtcTime") -> tuple[str, int]:
    """Sysmon ``UtcTime`` → (ISO 8601 UTC with milliseconds and ``Z``, epoch milliseconds)."""
    text = clean_text(value, name)
    if text is None:
        raise _FieldError(f"{name} is missing")
    if (
        len(text) == 23
        and text[10] == " "
        and text[19] == "."
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
        and text.isascii()
    ):
        # Sysmon's own layout (every UtcTime it writes: "2019-05-18
        # 21:14:56.123"), read by datetime's C parser: 1.1 instead of 2.7 µs a
        # call (timeit, best of 5), on the path of every normalized event. It
        # checks the ranges; what it refuses, the general path below explains.
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                millis = ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1000
                return (
                    f"{text[:10]}T{text[11:]}Z",
                    _midnight_ms(moment.year, moment.month, moment.day)
                    + millis
                    + moment.microsecond // 1000,
                )
    match = _UTC_TIME.match(text.strip())
    if match is None:
        raise _FieldError(f"{name}={text!r} is not a time (YYYY-MM-DD hh:mm:ss.fff)")
    year, month, day, hour, minute, second, fraction = match.groups()
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    h, m, s = int(hour), int(minute), int(second)
    try:
        if h > 23 or m > 59 or s > 59:
            datetime(int(year), int(month), int(day), h, m, s)  # raises, saying which
        midnight_ms = _midnight_ms(int(year), int(month), int(day))
    except ValueError as exc:
        raise _FieldError(f"{name}={text!r}: {exc}") from None
    # From the digits matched (strftime's %Y drops the leading zeros of years
    # before 1000).
    iso = f"{year}-{month}-{day}T{hour}:{minute}:{second}.{millis:03d}Z"
    return iso, midnight_ms + ((h * 60 + m) * 60 + s) * 1000 + millis


@functools.lru_cache(maxsize=1024)
def _midnight_ms(year: int, month: int, day: int) -> int:
    """Epoch ms of a UTC day's start; ValueError for a day no calendar has (2019-02-30).

    Cached because every event's UtcTime needs it and a stream's events fall
    on a few days: without a datetime and its timestamp() per event,
    :func:`parse_utc_time` takes 2.56 instead of 3.15 µs a call (``python -m
    timeit -r 30``, best of each), on a path every input event takes.
    """
    # The midnight is whole seconds: int() truncates nothing (before 1970 a
    # fractional timestamp would be truncated toward zero, a second late).
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1000


def file_name(path: str | None) -> str | None:
    """``C:\\Windows\\System32\\cmd.exe`` → ``cmd.exe``."""
    if path is None:
        return None
    name = path.replace("/", "\\").rsplit("\\", 1)[-1]
    return name or None


# --- field maps (Sysmon name → HELK name, converter) ------------------------

_Convert = Callable[[Any, str], Any]


def _port(value: Any, name: str) -> int | None:
    return to_int(value, name, 0, 65535)


_COMMON: tuple[tuple[str, str, _Convert], ...] = (
    ("ProcessId", "process_id", to_int),
    ("Image", "process_path", clean_text),
    ("User", "user_account", clean_text),
)

PROCESS_CREATE_MAP: tuple[tuple[str, str, _Convert], ...] = (
    *_COMMON,
    ("CommandLine", "process_command_line", clean_text),
    ("CurrentDirectory", "process_current_directory", clean_text),
    ("IntegrityLevel", "process_integrity_level", clean_text),
    ("LogonGuid", "user_logon_guid", canonical_guid),
    ("LogonId", "user_logon_id", clean_text),
    ("TerminalSessionId", "user_session_id", to_int),
    ("Hashes", "hashes", clean_text),
    ("FileVersion", "file_version", clean_text),
    ("Description", "file_description", clean_text),
    ("Company", "file_company", clean_text),
    ("ParentProcessGuid", "parent_process_guid", canonical_guid),
    ("ParentProcessId", "parent_process_id", to_int),
    ("ParentImage", "parent_process_path", clean_text),
    ("ParentCommandLine", "parent_process_command_line", clean_text),
)

NETWORK_CONNECT_MAP: tuple[tuple[str, str, _Convert], ...] = (
    *_COMMON,
    ("Protocol", "network_protocol", clean_text),
    ("Initiated", "network_connection_initiated", to_bool),
    ("SourceIsIpv6", "src_is_ipv6", to_bool),
    ("SourceIp", "src_ip_addr", clean_text),
    ("SourceHostname", "src_host_name", clean_text),
    ("SourcePort", "src_port", _port),
    ("SourcePortName", "src_port_name", clean_text),
    ("DestinationIsIpv6", "dst_is_ipv6", to_bool),
    ("DestinationIp", "dst_ip_addr", clean_text),
    ("DestinationHostname", "dst_host_name", clean_text),
    ("DestinationPort", "dst_port", _port),
    ("DestinationPortName", "dst_port_name", clean_text),
)

PROCESS_TERMINATE_MAP: tuple[tuple[str, str, _Convert], ...] = _COMMON

FIELD_MAPS: Mapping[int, tuple[tuple[str, str, _Convert], ...]] = {
    PROCESS_CREATE: PROCESS_CREATE_MAP,
    NETWORK_CONNECT: NETWORK_CONNECT_MAP,
    PROCESS_TERMINATE: PROCESS_TERMINATE_MAP,
}
# The EventData names a mapped event keeps under HELK names: the rest is
# kept as written (NormalizedEvent.event_data) for the rules.
_MAPPED_NAMES: Final[Mapping[int, frozenset[str]]] = {
    event_id: frozenset({"ProcessGuid", *(source for source, _, _ in mapping)})
    for event_id, mapping in FIELD_MAPS.items()
}


# --- shapes (sysmon_faust.core.shapes) ------------------------------------------


def _is_sysmon(channel: Any, provider: Any) -> bool:
    return (isinstance(channel, str) and channel.lower() == SYSMON_CHANNEL) or (
        isinstance(provider, str) and provider.lower() == SYSMON_PROVIDER
    )


# --- entry points -----------------------------------------------------------


#: What an unpaired UTF-16 surrogate becomes: U+FFFD, as Winlogbeat writes it.
REPLACEMENT_CHARACTER: Final = "\ufffd"
# Built with chr(): mypyc compiles this module and refuses surrogates in string
# literals (sysmon_faust.core.compiled).
_LONE_SURROGATE = re.compile("[" + chr(0xD800) + "-" + chr(0xDFFF) + "]")


def parse_json_object(raw: bytes) -> dict[str, Any] | Invalid:
    """Decode one input value; anything that is not a UTF-8 JSON object is :class:`Invalid`.

    A ``\\udcXX`` escape with no partner (legal JSON grammar, RFC 8259 §7:
    Python's and .NET's JSON writers emit it for the unpaired UTF-16 units NTFS
    names may hold) is read, the unit becoming U+FFFD (see
    :func:`with_surrogates_replaced`): a crafted file name must not hide a
    process from the join (``../shared/cases/lone_surrogate_escape``).
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            return _object_or_invalid(with_surrogates_replaced(raw, exc))
        if isinstance(exc.__cause__, UnicodeDecodeError) or "utf-8" in str(exc).lower():
            return Invalid(f"not valid UTF-8: {exc}")
        return Invalid(f"not valid JSON: {exc}")
    return doc if isinstance(doc, dict) else _object_or_invalid(doc)


def _object_or_invalid(doc: Any) -> dict[str, Any] | Invalid:
    if isinstance(doc, Invalid | dict):
        return doc
    return Invalid(f"JSON value is {type(doc).__name__}, not an object")


class SurrogatesReplaced(dict[str, Any]):
    """A decoded object whose unpaired UTF-16 surrogates were replaced (the intake counts them)."""


def with_surrogates_replaced(raw: bytes, refused: Exception) -> Any:
    """``raw`` decoded, its unpaired surrogate escapes as U+FFFD; :class:`Invalid` if no JSON.

    Only for what orjson refused for a surrogate (``refused``): the standard
    library's decoder takes them but is slower than orjson, so it runs only
    for these records. An object comes back as :class:`SurrogatesReplaced`.
    """

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError):
        return Invalid(f"not valid JSON: {refused}")
    doc = _replace_surrogates(doc)
    return SurrogatesReplaced(doc) if isinstance(doc, dict) else doc


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    return value


#: Decides from an event's id and EventData alone whether an event of another id
#: (not 1/3/5) is worth mapping; False: it is filtered as ``sysmon_event_<id>``.
OtherEventFilter = Callable[[int, Mapping[str, Any]], bool]


def normalize(
    raw: bytes, other_event_ids: Collection[int] = (), wants: OtherEventFilter | None = None
) -> Outcome:
    """One raw input value → :class:`NormalizedEvent`, :class:`Filtered` or :class:`Invalid`.

    The value is a JSON object of one of the shapes of :mod:`sysmon_faust.core.shapes`,
    or a whole rendered ``<Event>`` XML. Sysmon 1, 3 and 5 are always mapped;
    the other Sysmon event ids only when in ``other_event_ids`` (the rules'
    and enrichment's: the others are filtered before any mapping is paid for)
    and, with ``wants``, only when it wants the event (the intake: when a rule
    may; the mapping is not paid for the rest either).
    Never raises: a bug in here would otherwise stop a partition for good.

    A Winlogbeat record that is dropped is dropped from its ``winlog`` header,
    read without decoding the record (:mod:`sysmon_faust.core.winlog_header`),
    with the outcome decoding gives.
    """
    try:
        header = winlog_header(raw)
        if header is not None:
            dropped = _dropped_by_header(header, other_event_ids)
            if dropped is not None:
                return dropped
        doc = parse_json_object(raw)
        if isinstance(doc, Invalid):
            # Only what orjson refused pays for this look: JSON stays as fast.
            if raw.removeprefix(UTF8_BOM).lstrip()[:1] == b"<":
                outcome = normalize_xml(raw, other_event_ids, wants)
                if isinstance(outcome, Invalid) and outcome.error.startswith(NOT_XML):
                    # Bytes that only start like XML: both reasons.
                    return Invalid(f"{doc.error}; nor a Windows event XML: {outcome.error}")
                return outcome
            return doc
        outcome = normalize_document(doc, other_event_ids, wants)
        if isinstance(doc, SurrogatesReplaced) and isinstance(outcome, NormalizedEvent):
            return dataclasses.replace(outcome, surrogates_replaced=True)
        return outcome
    except Exception as exc:
        return Invalid(f"normalizer failed: {type(exc).__name__}: {exc}")


#: How :func:`shapes.parse_xml` starts its reason for text that is not XML at all.
NOT_XML: Final = "not valid XML"


def normalize_xml(
    raw: bytes | str, other_event_ids: Collection[int] = (), wants: OtherEventFilter | None = None
) -> Outcome:
    """A whole rendered Windows event XML → outcome (see :func:`shapes.xml_envelope`)."""
    try:
        envelope = shapes.xml_envelope(raw)
    except shapes.ShapeError as exc:
        return Invalid(str(exc))
    return normalize_envelope(envelope, other_event_ids, wants)


def normalize_document(
    doc: Mapping[str, Any],
    other_event_ids: Collection[int] = (),
    wants: OtherEventFilter | None = None,
) -> Outcome:
    """A decoded JSON object → outcome. See :func:`normalize`."""
    try:
        envelope = shapes.envelope(doc)
    except shapes.ShapeError as exc:
        return Invalid(str(exc))
    if envelope is None:
        return _NO_SHAPE
    return normalize_envelope(envelope, other_event_ids, wants)


# The outcomes of 94 % of what Winlogbeat sends: made once (they are frozen),
# not per record (make bench, normalizer row).
_NO_SHAPE: Final = Filtered(NOT_WINDOWS_EVENT, detail=shapes.LOOKED_FOR)
_NOT_SYSMON: Final = Filtered(NOT_SYSMON)
_OTHER_SYSMON: dict[int, Filtered] = {}


def normalize_envelope(
    envelope: Envelope, other_event_ids: Collection[int] = (), wants: OtherEventFilter | None = None
) -> Outcome:
    """An event found in its shape → outcome: Sysmon 1/3/5 and ``other_event_ids`` mapped
    (those ``wants``, when given, wants)."""
    if not _is_sysmon(envelope.channel, envelope.provider):
        return _NOT_SYSMON
    try:
        event_id = to_int(envelope.event_id, "event id", 0, 65535)
    except _FieldError as exc:
        return Invalid(str(exc))
    if event_id is None:
        return Invalid("Sysmon event without an event id")
    field_map = FIELD_MAPS.get(event_id)
    if field_map is None and event_id not in other_event_ids:
        return _other_sysmon(event_id)
    data = envelope.sysmon_data()
    if not isinstance(data, dict):
        return Invalid(f"Sysmon event {event_id} ({envelope.shape}) has no event data object")
    try:
        if field_map is None:
            if wants is not None and not wants(event_id, data):
                # Measured (make bench, Sigma rows): with SigmaHQ's corpus most
                # events of other ids match nothing; mapping them first cost ~3 µs each.
                return _other_sysmon(event_id)
            return _map_other_event(event_id, envelope, data)
        return _map_event(event_id, envelope, data, field_map)
    except _FieldError as exc:
        return Invalid(f"Sysmon event {event_id}: {exc}")


def _dropped_by_header(
    header: tuple[Any, Any, Any], other_event_ids: Collection[int]
) -> Filtered | None:
    """The outcome of a Winlogbeat record that its header settles, as :func:`normalize_envelope`
    gives it: not Sysmon, or a Sysmon event id neither mapped nor in ``other_event_ids``;
    None when the record is to be decoded."""
    channel, provider, event_id = header
    if not _is_sysmon(channel, provider):
        return _NOT_SYSMON
    # to_int's reading of the plain ids (a number, or its decimal digits);
    # anything else it reads, or refuses, the decoded record settles.
    if type(event_id) is str and event_id.isascii() and event_id.isdigit():
        event_id = int(event_id)
    if (
        type(event_id) is int
        and 0 <= event_id <= 65535
        and event_id not in FIELD_MAPS
        and event_id not in other_event_ids
    ):
        return _other_sysmon(event_id)
    return None


def _other_sysmon(event_id: int) -> Filtered:
    filtered = _OTHER_SYSMON.get(event_id)
    if filtered is None:
        filtered = _OTHER_SYSMON[event_id] = Filtered(f"sysmon_event_{event_id}", event_id)
    return filtered


def _map_event(
    event_id: int,
    envelope: Envelope,
    data: Mapping[str, Any],
    field_map: tuple[tuple[str, str, _Convert], ...],
) -> NormalizedEvent:
    if "ProcessGuid" not in data:
        raise _FieldError("ProcessGuid is missing")
    guid = canonical_guid(data["ProcessGuid"], "ProcessGuid")
    if guid is None and event_id in (PROCESS_CREATE, PROCESS_TERMINATE):
        # A creation or termination with no identity names no table row.
        raise _FieldError("ProcessGuid is empty or the zero GUID")
    iso_time, timestamp_ms = parse_utc_time(data.get("UtcTime"))

    fields: dict[str, Any] = {
        "event_date_creation": iso_time,
        "host_name": clean_text(envelope.computer, "computer name"),
        "process_guid": guid,
    }
    for source, target, convert in field_map:
        fields[target] = convert(data.get(source), source)
    fields["process_name"] = file_name(fields["process_path"])
    mapped = _MAPPED_NAMES[event_id]
    rest = {name: value for name, value in data.items() if name not in mapped}
    return NormalizedEvent(event_id, guid, timestamp_ms, fields, shape=envelope.shape,
                           event_data=rest)  # fmt: skip


# Sysmon 8 and 10 name two processes: the event is its source's (who acted).
# Sysmon 10 spells its GUIDs SourceProcessGUID/TargetProcessGUID (schema 4.90).
_PROCESS_GUID_NAMES: Final = ("ProcessGuid", "SourceProcessGuid", "SourceProcessGUID")
_IMAGE_NAMES: Final = ("Image", "SourceImage")
_PROCESS_ID_NAMES: Final = ("ProcessId", "SourceProcessId")
_USER_NAMES: Final = ("User", "SourceUser")
_TARGET_GUID_NAMES: Final = ("TargetProcessGuid", "TargetProcessGUID")
#: CreateRemoteThread (8) and ProcessAccess (10): a source process acts on a
#: target; their normalized fields add ``target_process_guid``.
TWO_PROCESS_EVENT_IDS: Final = frozenset({8, 10})


def _first(data: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if (value := data.get(name)) is not None:
            return value
    return None


def _map_other_event(event_id: int, envelope: Envelope, data: Mapping[str, Any]) -> NormalizedEvent:
    """Any other Sysmon event: who (process, host, when) in HELK names, the rest as written.

    A process GUID is optional here: Sysmon 6 (driver loaded), 19-21 (WMI)
    and 4/16/255 (Sysmon's own state) name no process.
    """
    guid = canonical_guid(_first(data, _PROCESS_GUID_NAMES), "ProcessGuid")
    iso_time, timestamp_ms = parse_utc_time(data.get("UtcTime"))
    process_path = clean_text(_first(data, _IMAGE_NAMES), "Image")
    fields: dict[str, Any] = {
        "event_date_creation": iso_time,
        "host_name": clean_text(envelope.computer, "computer name"),
        "process_guid": guid,
        "process_id": to_int(_first(data, _PROCESS_ID_NAMES), "ProcessId"),
        "process_path": process_path,
        "process_name": file_name(process_path),
        "user_account": clean_text(_first(data, _USER_NAMES), "User"),
    }
    if event_id in TWO_PROCESS_EVENT_IDS:
        fields["target_process_guid"] = canonical_guid(
            _first(data, _TARGET_GUID_NAMES), "TargetProcessGuid"
        )
    return NormalizedEvent(event_id, guid, timestamp_ms, fields, shape=envelope.shape,
                           event_data=dict(data))  # fmt: skip
