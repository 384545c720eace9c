"""An independent reference for what the pipeline must produce from a recording.

Written apart from ``sysmon_faust.core.normalize`` on purpose (stdlib json, its
own field lookups), following the counting rule of ../shared/datasets/README.md:
Sysmon events are those whose channel is Microsoft-Windows-Sysmon/Operational
(any case) or whose provider is Microsoft-Windows-Sysmon; a NetworkConnect
joins when a ProcessCreate with the same ProcessGuid came earlier in file
order; the zero GUID never joins.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ZERO = "{00000000-0000-0000-0000-000000000000}"

#: The recordings in ../shared/datasets (file names without .jsonl.gz).
RECORDINGS = [
    "empire_invoke_wmi_2019-03-19152813",
    "empire_invoke_psremoting_2019-05-18211456",
    "covenant_installutil_2019-10-27223020",
    "remoteinteractive_taskmngr_lsass_dump_2019-10-27055035",
    "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod_2020-09-21001437",
]


@dataclass(frozen=True)
class Expected:
    events: int
    sysmon: int
    process_creates: dict[str, dict[str, Any]]  # guid → raw Sysmon fields
    joined: list[tuple[dict[str, Any], dict[str, Any]]]  # (connect fields, create fields)
    unmatched: list[dict[str, Any]]
    wmi_alerts: int
    #: Sysmon 5 with a process GUID, and among them those whose creation came earlier.
    terminates: int = 0
    terminated: dict[str, str] = field(default_factory=dict)  # guid → its UtcTime
    #: What the pipeline counts and drops, by reason: not Sysmon, or a Sysmon
    #: event other than 1, 3 and 5 (``sysmon_event_<id>``).
    filtered: Counter[str] = field(default_factory=Counter)
    #: Per joined connect (same order as ``joined``): its process's ancestors,
    #: nearest first, as the creations read before it name them.
    joined_ancestry: list[list[dict[str, Any]]] = field(default_factory=list)
    #: Every Sysmon event of an id that names its process (``ENRICHED_IDS``),
    #: in file order: what sysmon-enriched carries by default.
    enriched: list[Enriched] = field(default_factory=list)


#: Sysmon event ids that name the process they are about, restated from
#: ../shared/docs/DATA.md ("Which events carry a process GUID", schema 4.90).
ENRICHED_IDS = frozenset({1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 22, 23, 24, 25,
                          26, 27, 28, 29})  # fmt: skip


@dataclass(frozen=True)
class Enriched:
    """One event of ``ENRICHED_IDS`` and its process as the file names it before it."""

    event_id: int
    data: dict[str, Any]
    #: Its process's creation (itself for a ProcessCreate), or None when none came earlier.
    create: dict[str, Any] | None
    ancestry: list[dict[str, Any]]
    #: Sysmon 8/10: the target process's creation if one came earlier, and its ancestry.
    target_create: dict[str, Any] | None = None
    target_ancestry: list[dict[str, Any]] = field(default_factory=list)


def target_guid(data: dict[str, Any]) -> str | None:
    """The target process of a Sysmon 8 (``TargetProcessGuid``) or 10 (``TargetProcessGUID``)."""
    for name in ("TargetProcessGuid", "TargetProcessGUID"):
        if data.get(name) not in (None, "", "-"):
            return guid(data[name])
    return None


def acting_guid(event_id: int, data: dict[str, Any]) -> str | None:
    """The GUID of the process an event is about: for 8 and 10 the source (who acted),
    spelled ``SourceProcessGuid`` (8) or ``SourceProcessGUID`` (10)."""
    names = ("SourceProcessGuid", "SourceProcessGUID") if event_id in (8, 10) else ("ProcessGuid",)
    for name in names:
        if data.get(name) not in (None, "", "-"):
            return guid(data[name])
    return None


def lines(path: Path) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return [line.rstrip(b"\r\n") for line in handle if line.strip()]


def _sysmon_parts(doc: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    if isinstance(doc.get("winlog"), dict):
        w = doc["winlog"]
        channel, provider, event_id, data = (
            w.get("channel"),
            w.get("provider_name"),
            w.get("event_id"),
            w.get("event_data"),
        )
    elif "EventID" in doc:
        channel, provider, event_id, data = (
            doc.get("Channel"),
            doc.get("SourceName"),
            doc.get("EventID"),
            doc,
        )
    else:
        channel, provider, event_id, data = (
            doc.get("log_name"),
            doc.get("source_name"),
            doc.get("event_id"),
            doc.get("event_data"),
        )
    is_sysmon = (
        str(channel or "").lower() == "microsoft-windows-sysmon/operational"
        or str(provider or "").lower() == "microsoft-windows-sysmon"
    )
    if not is_sysmon:
        return None
    return int(event_id), dict(data or {})


def guid_of(data: dict[str, Any]) -> str:
    return str(data.get("ProcessGuid", "")).lower()


#: The pipeline's default for SYSMON_JOIN_GRACE (ms): how long a Sysmon 8/10's
#: target may be created after the event and still be its target's row.
DEFAULT_GRACE_MS = 300_000


def compute(path: Path, grace_ms: int = DEFAULT_GRACE_MS) -> Expected:
    """The reference for one recording; ``grace_ms``: the join grace (the target of a
    Sysmon 8/10 whose creation comes later in the file, at most that much later in
    event time, is found: Defender opens processes before their creation is logged)."""
    events = sysmon = 0
    creates: dict[str, dict[str, Any]] = {}
    joined: list[tuple[dict[str, Any], dict[str, Any]]] = []
    unmatched: list[dict[str, Any]] = []
    terminates = 0
    terminated: dict[str, str] = {}
    filtered: Counter[str] = Counter()
    joined_ancestry: list[list[dict[str, Any]]] = []
    enriched: list[Enriched] = []
    for line in lines(path):
        events += 1
        parts = _sysmon_parts(json.loads(line))
        if parts is None:
            filtered["not_sysmon"] += 1
            continue
        sysmon += 1
        event_id, data = parts
        if event_id not in (1, 3, 5) and event_id not in ENRICHED_IDS:
            filtered[f"sysmon_event_{event_id}"] += 1
        guid = guid_of(data)
        if event_id == 1:
            creates[guid] = data
        elif event_id == 3:
            if guid != ZERO and guid in creates:
                joined.append((data, creates[guid]))
                joined_ancestry.append(ancestors(creates[guid], creates))
            else:
                unmatched.append(data)
        elif event_id == 5 and guid not in ("", ZERO):
            terminates += 1
            if guid in creates:
                terminated[guid] = str(data["UtcTime"])
        if event_id in ENRICHED_IDS:
            acting = acting_guid(event_id, data)
            create = creates.get(acting) if acting is not None else None
            chain = ancestors(create, creates) if create is not None else []
            target = target_guid(data) if event_id in (8, 10) else None
            target_create = creates.get(target) if target is not None else None
            target_chain = ancestors(target_create, creates) if target_create is not None else []
            enriched.append(Enriched(event_id, data, create, chain, target_create, target_chain))
    # A target created after the event opened it (within the grace) is its row.
    for n, event in enumerate(enriched):
        target = target_guid(event.data) if event.event_id in (8, 10) else None
        late = creates.get(target) if target is not None and event.target_create is None else None
        if (
            late is not None
            and 0
            <= epoch_ms(str(late["UtcTime"])) - epoch_ms(str(event.data["UtcTime"]))
            <= grace_ms
        ):
            chain = ancestors(late, creates)
            enriched[n] = replace(event, target_create=late, target_ancestry=chain)
    wmi = sum(
        1
        for _, create in joined
        if re.search(r"\\wmiprvse\.exe$", str(create.get("ParentImage", "")), re.I)
    )
    return Expected(
        events, sysmon, creates, joined, unmatched, wmi, terminates, terminated, filtered,
        joined_ancestry, enriched,
    )  # fmt: skip


#: The pipeline's default for SYSMON_ANCESTRY_DEPTH.
ANCESTRY_DEPTH = 4


def ancestors(
    create: dict[str, Any], creates: dict[str, dict[str, Any]], depth: int = ANCESTRY_DEPTH
) -> list[dict[str, Any]]:
    """Parent, grandparent, ...: each named by its child's creation (ParentImage, ...)."""
    found: list[dict[str, Any]] = []
    seen = {guid_of(create)}
    child: dict[str, Any] | None = create
    while child is not None and len(found) < depth:
        parent = guid(child.get("ParentProcessGuid", "")) or None
        if parent is None and sysmon_value(child, "ParentImage") is None:
            break
        if parent is not None and parent in seen:
            break
        seen.add(parent)
        found.append(
            {
                "process_guid": parent,
                "process_path": sysmon_value(child, "ParentImage"),
                "process_command_line": sysmon_value(child, "ParentCommandLine"),
            }
        )
        # A parent named by its image alone ends the walk: nothing to look up.
        child = creates.get(parent) if parent is not None else None
    return found


SHIPPED_RULES = Path(__file__).resolve().parents[1] / "sysmon_faust" / "core" / "default_rules"


def shipped_rule_id(name: str) -> str:
    """The Sigma id of the shipped rule tagged ``sysmon-faust.<name>`` (read with PyYAML)."""
    import yaml

    for path in sorted(SHIPPED_RULES.glob("*.yml")):
        rule = yaml.safe_load(path.read_text(encoding="utf-8"))
        if f"sysmon-faust.{name}" in rule.get("tags", []):
            return str(rule["id"])
    raise KeyError(name)


#: The shipped default rules, restated over file names (not read from the
#: Sigma files in sysmon_faust/core/default_rules): rule name (its
#: ``sysmon-faust.*`` tag) → (the connecting image must be one of, or None;
#: one ancestor's image must be one of, or None; and no ancestor's image may
#: be one of these).
DEFAULT_RULES: dict[str, tuple[set[str] | None, set[str] | None, set[str]]] = {
    "sysmon-wmi-child-network-connect": (None, {"wmiprvse.exe"}, set()),
    "sysmon-psremoting-network-connect": (None, {"wsmprovhost.exe"}, set()),
    "sysmon-service-shell-network-connect": (
        {"cmd.exe", "powershell.exe", "pwsh.exe"}, {"services.exe"}, {"svchost.exe"}
    ),
    "sysmon-office-descendant-network-connect": (
        None, {"winword.exe", "excel.exe", "powerpnt.exe", "outlook.exe"}, set()
    ),
    "sysmon-script-host-descendant-network-connect": (
        None, {"wscript.exe", "cscript.exe", "mshta.exe"}, set()
    ),
    "sysmon-msbuild-network-connect": ({"msbuild.exe"}, None, set()),
    "sysmon-signed-binary-proxy-network-connect": (
        {"installutil.exe", "regsvr32.exe", "rundll32.exe"}, None, set()
    ),
}  # fmt: skip


def image_name(path: Any) -> str:
    return str(path or "").replace("/", "\\").rsplit("\\", 1)[-1].lower()


def expected_alerts(expected: Expected) -> Counter[tuple[str, tuple[Any, ...]]]:
    """(rule id, network identity) of every alert the default rules make of the joins."""
    alerts: Counter[tuple[str, tuple[Any, ...]]] = Counter()
    for (connect, _), chain in zip(expected.joined, expected.joined_ancestry, strict=True):
        image = image_name(sysmon_value(connect, "Image"))
        above = {image_name(hop["process_path"]) for hop in chain}
        for rule_id, (images, ancestor_images, not_through) in DEFAULT_RULES.items():
            if images is not None and image not in images:
                continue
            if ancestor_images is not None and not above & ancestor_images:
                continue
            if above & not_through:
                continue
            alerts[(shipped_rule_id(rule_id), network_identity(connect))] += 1
    return alerts


def readme_counts(readme: Path) -> dict[str, dict[str, int]]:
    """The table 'What a correct pipeline produces from each' of the datasets README."""
    counts: dict[str, dict[str, int]] = {}
    columns = ["events", "sysmon", "process_creates", "joined", "unmatched", "alerts"]
    for row in readme.read_text().splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"\d+", cells[1] or ""):
            counts[cells[0]] = {
                name: int(re.match(r"\d+", cell).group(0))  # type: ignore[union-attr]
                for name, cell in zip(columns, cells[1:], strict=True)
            }
    return counts


def sysmon_value(data: dict[str, Any], name: str) -> Any:
    """A raw Sysmon value as the contract wants it: '-'/'' → None, XML escapes undone."""
    value = data.get(name)
    if value in (None, "", "-"):
        return None
    if isinstance(value, str):
        for entity, char in (
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&quot;", '"'),
            ("&apos;", "'"),
            ("&amp;", "&"),
        ):
            value = value.replace(entity, char)
    return value


# --- identities: one network event, in the raw file and in an output record ---


def iso(utc_time: str) -> str:
    """Sysmon UtcTime → the contract's form (independent of the normalizer)."""
    moment = datetime.strptime(utc_time, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(utc_time: str) -> int:
    moment = datetime.strptime(utc_time, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000 + 0.5)


def guid(value: Any) -> str | None:
    text = str(value).lower()
    return None if text == "{00000000-0000-0000-0000-000000000000}" else text


def port(value: Any) -> int | None:
    text = sysmon_value({"v": value}, "v")
    return None if text is None else int(text)


def network_identity(data: dict[str, Any]) -> tuple[Any, ...]:
    return (
        guid(data["ProcessGuid"]),
        iso(data["UtcTime"]),
        sysmon_value(data, "SourceIp"),
        port(data.get("SourcePort")),
        sysmon_value(data, "DestinationIp"),
        port(data.get("DestinationPort")),
    )


def output_identity(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["process_guid"],
        record["event_date_creation"],
        record["src_ip_addr"],
        record["src_port"],
        record["dst_ip_addr"],
        record["dst_port"],
    )


# --- sysmon-enriched: one event with its process, in the raw file and in a record ---

#: Sysmon names → the contract's names for 1, 3 and 5 (../shared/docs/DATA.md's
#: table), with how the contract writes the value.
_COMMON_NAMES = {"ProcessGuid": ("process_guid", "guid"), "ProcessId": ("process_id", "int"),
                 "Image": ("process_path", "text"), "User": ("user_account", "text")}  # fmt: skip
CONTRACT_NAMES: dict[int, dict[str, tuple[str, str]]] = {
    1: _COMMON_NAMES | {
        "CommandLine": ("process_command_line", "text"),
        "CurrentDirectory": ("process_current_directory", "text"),
        "IntegrityLevel": ("process_integrity_level", "text"),
        "LogonGuid": ("user_logon_guid", "guid"), "LogonId": ("user_logon_id", "text"),
        "TerminalSessionId": ("user_session_id", "int"), "Hashes": ("hashes", "text"),
        "FileVersion": ("file_version", "text"), "Description": ("file_description", "text"),
        "Company": ("file_company", "text"),
        "ParentProcessGuid": ("parent_process_guid", "guid"),
        "ParentProcessId": ("parent_process_id", "int"),
        "ParentImage": ("parent_process_path", "text"),
        "ParentCommandLine": ("parent_process_command_line", "text"),
    },
    3: _COMMON_NAMES | {
        "Protocol": ("network_protocol", "text"),
        "Initiated": ("network_connection_initiated", "bool"),
        "SourceIsIpv6": ("src_is_ipv6", "bool"), "SourceIp": ("src_ip_addr", "text"),
        "SourceHostname": ("src_host_name", "text"), "SourcePort": ("src_port", "int"),
        "SourcePortName": ("src_port_name", "text"),
        "DestinationIsIpv6": ("dst_is_ipv6", "bool"), "DestinationIp": ("dst_ip_addr", "text"),
        "DestinationHostname": ("dst_host_name", "text"), "DestinationPort": ("dst_port", "int"),
        "DestinationPortName": ("dst_port_name", "text"),
    },
    5: _COMMON_NAMES,
}  # fmt: skip


def _contract_value(data: dict[str, Any], name: str, kind: str) -> Any:
    value = sysmon_value(data, name)
    if value is None:
        return None
    if kind == "guid":
        return guid(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return str(value).lower() == "true"
    return value


def enriched_expected(event: Enriched) -> tuple[Any, ...]:
    """What the sysmon-enriched record of ``event`` must hold, as a comparable value:
    the event id, time and process; its own fields (1/3/5: under the contract's
    names, the rest as written; other ids: its EventData as written); its
    process's creation fields; whether it joined; its ancestry."""
    names = CONTRACT_NAMES.get(event.event_id, {})
    own = {target: _contract_value(event.data, n, kind) for n, (target, kind) in names.items()}
    rest = {name: value for name, value in event.data.items() if name not in names}
    target: tuple[Any, ...] = ()
    if event.event_id in (8, 10):
        target = (
            target_guid(event.data),
            _process_side(event.target_create),
            json.dumps(event.target_ancestry, sort_keys=True),
        )
    return (
        event.event_id,
        iso(str(event.data["UtcTime"])),
        acting_guid(event.event_id, event.data),
        json.dumps(own, sort_keys=True),
        json.dumps(rest, sort_keys=True),
        _process_side(event.create),
        event.create is not None,
        json.dumps(event.ancestry, sort_keys=True),
        target,
    )


def _process_side(create: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if create is None:
        return None
    return tuple(
        _contract_value(create, name, CONTRACT_NAMES[1][name][1]) for name in _PROCESS_SIDE
    )


#: The creation fields compared on the process side of an enriched record.
_PROCESS_SIDE = ("ProcessGuid", "Image", "CommandLine", "CurrentDirectory", "IntegrityLevel",
                 "User", "LogonId", "Hashes", "ParentProcessGuid", "ParentImage",
                 "ParentCommandLine")  # fmt: skip


def enriched_identity(record: dict[str, Any]) -> tuple[Any, ...]:
    """:func:`enriched_expected`'s value, read from a sysmon-enriched record."""
    event_id = record["event_id"]
    names = CONTRACT_NAMES.get(event_id, {})
    own = {target: record[target] for target, _ in names.values()}
    target: tuple[Any, ...] = ()
    if event_id in (8, 10):
        target = (
            record["target_process_guid"],
            _record_side(record["target_process"]),
            json.dumps(record["target_process_ancestry"], sort_keys=True),
        )
        assert (record["target_process"] is None) == (record["target_unmatched_reason"] is not None)
    return (
        event_id,
        record["event_date_creation"],
        record["process_guid"],
        json.dumps(own, sort_keys=True),
        json.dumps(record["event_data"], sort_keys=True),
        _record_side(record["process"]),
        record["unmatched_reason"] is None,
        json.dumps(record["process_ancestry"], sort_keys=True),
        target,
    )


def _record_side(process: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if process is None:
        return None
    return tuple(process[CONTRACT_NAMES[1][name][0]] for name in _PROCESS_SIDE)
