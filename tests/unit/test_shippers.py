"""The shipper configurations in docker/shippers/ deliver what the worker reads.

Each file is read the way its shipper reads it — the YAML ones with PyYAML and
Beats' dotted keys expanded (``output.kafka:`` is ``output: {kafka: …}``),
nxlog.conf with the small parser below — and checked against the worker's
settings: the topic is ``Settings().topic_input``, the codec one the worker
reads, only the Sysmon channel is read, a host's events share a partition,
every replica acknowledges, and the input reaches the Kafka output.

Then an event as each shipper writes it goes through
:func:`sysmon_faust.core.normalize.normalize` and must come out in the shape
docs/shapes.md gives for that shipper, with ``host_name`` equal to what the
config partitions by. Real samples come from ../shared (skipped when absent):
Winlogbeat 7.4 raw and NXLog im_msvistalog + to_json() lines of the OTRF
recordings, Winlogbeat 7 with the Sysmon module from the
``wlb7_sysmon_module_ecs`` case. The Elastic Agent sample is written here, in
the structure of elastic/integrations' sysmon_operational pipeline-test input
(what the agent's winlog input emits: ``winlog.event_id`` a string).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.shapes import FLAT, WINLOGBEAT_7
from sysmon_faust.settings import COMPRESSION_TYPES, Settings
from tests.support import SHARED, case_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPERS = ROOT / "docker" / "shippers"
WINLOGBEAT = SHIPPERS / "winlogbeat.yml"
WINLOGBEAT_MODULE = SHIPPERS / "winlogbeat-sysmon-module.yml"
ELASTIC_AGENT = SHIPPERS / "elastic-agent.yml"
NXLOG = SHIPPERS / "nxlog.conf"
DOCS = ROOT / "docs" / "shipping.md"

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
#: Codecs the worker reads on its input topic (what it writes is another setting).
READ_CODECS = frozenset(COMPRESSION_TYPES) - {"none"}
#: What Beats' Kafka output (Winlogbeat, Elastic Agent) accepts as `compression`
#: besides none (libbeat/outputs/kafka/config.go, compressionModes: no zstd).
BEATS_CODECS = frozenset({"gzip", "lz4", "snappy"})
#: The field Beats shippers partition by: the computer the event happened on,
#: which the worker reads as host_name (never the collector's host.name).
COMPUTER_FIELD = "winlog.computer_name"
COMPUTER_KEY = "%{[winlog.computer_name]}"

OTRF_WINLOGBEAT_74 = "covenant_installutil_2019-10-27223020.jsonl.gz"
OTRF_NXLOG = "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod_2020-09-21001437.jsonl.gz"


# --- reading the YAML configs as Beats do ------------------------------------------


def expand_dotted(value: Any) -> Any:
    """Beats' reading of a dotted key: ``{"a.b": 1}`` is ``{"a": {"b": 1}}`` (merged)."""
    if isinstance(value, list):
        return [expand_dotted(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        *parents, last = str(key).split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            assert isinstance(node, dict), f"{key}: {part} is both a value and a section"
        item = expand_dotted(item)
        if isinstance(node.get(last), dict) and isinstance(item, dict):
            node[last] = {**node[last], **item}
        else:
            assert last not in node, f"{key} set twice"
            node[last] = item
    return out


def load_beats_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return expand_dotted(data)


_FIELD_REF = re.compile(r"%\{\[([^\]]+)\]\}")


def field_value(doc: Any, dotted: str) -> Any:
    """An event's field by its dotted path, as Beats' selectors read it; None if absent."""
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def format_string(template: str, doc: dict[str, Any]) -> str | None:
    """A Beats format string (``%{[a.b]}`` references) on an event; None if a field is missing."""
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        value = field_value(doc, match.group(1))
        if value is None:
            missing = True
            return ""
        return str(value)

    rendered = _FIELD_REF.sub(one, template)
    return None if missing else rendered


# --- a small parser for nxlog.conf ------------------------------------------------


@dataclass
class NxBlock:
    """One ``<Kind name> … </Kind>`` block: its directives in order, nested blocks as text."""

    kind: str
    name: str
    directives: list[tuple[str, str]] = field(default_factory=list)
    nested: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """The value of a directive given once (directive names are case-insensitive)."""
        found = [value for key, value in self.directives if key.lower() == name.lower()]
        assert len(found) <= 1, f"<{self.kind} {self.name}>: {name} given {len(found)} times"
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.directives if key.lower() == name.lower()]


@dataclass
class NxConfig:
    defines: dict[str, str]
    globals: list[tuple[str, str]]
    blocks: list[NxBlock]

    def of_kind(self, kind: str) -> list[NxBlock]:
        return [block for block in self.blocks if block.kind.lower() == kind.lower()]

    def block(self, kind: str, name: str) -> NxBlock:
        found = [block for block in self.of_kind(kind) if block.name == name]
        assert len(found) == 1, f"<{kind} {name}> defined {len(found)} times"
        return found[0]


_OPEN = re.compile(r"^<(\w+)(?:\s+([^>]*?))?\s*>$")
_CLOSE = re.compile(r"^</(\w+)\s*>$")
_DEFINE_USE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")


def _logical_lines(text: str) -> Iterator[str]:
    """Lines without comments and blank lines; a trailing backslash continues a line."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        yield pending + line
        pending = ""
    assert not pending, "the file ends in a continued line"


def parse_nxlog(text: str) -> NxConfig:
    """NXLog's configuration format, the part these files use.

    Line based: ``#`` at the start of a line is a comment (NXLog has no
    trailing comments), ``define NAME value`` makes ``%NAME%`` stand for the
    value wherever it is used, ``<Kind name>`` … ``</Kind>`` is a module or
    route block whose lines are ``Directive value``; a block opened inside a
    block (``<QueryXML>``, ``<Exec>``) is kept as raw text. ``include`` and
    other unknown structure fail loudly instead of being skipped.
    """
    defines: dict[str, str] = {}
    lines = list(_logical_lines(text))
    for line in lines:
        if line.split(None, 1)[0].lower() == "define":
            _, name, value = line.split(None, 2)
            defines[name] = value.strip()

    def expand(value: str) -> str:
        def one(match: re.Match[str]) -> str:
            assert match.group(1) in defines, f"%{match.group(1)}% is not defined"
            return expand(defines[match.group(1)])

        return _DEFINE_USE.sub(one, value)

    config = NxConfig(defines, [], [])
    current: NxBlock | None = None
    nested: tuple[str, list[str]] | None = None
    for line in lines:
        if nested is not None:
            close = _CLOSE.match(line)
            if close and close.group(1).lower() == nested[0].lower():
                assert current is not None
                current.nested[nested[0]] = expand("\n".join(nested[1]))
                nested = None
            else:
                nested[1].append(line)
            continue
        opening, closing = _OPEN.match(line), _CLOSE.match(line)
        if opening and current is None:
            current = NxBlock(opening.group(1), (opening.group(2) or "").strip())
        elif opening:
            nested = (opening.group(1), [])
        elif closing:
            assert current is not None and closing.group(1).lower() == current.kind.lower(), (
                f"{line} closes nothing open"
            )
            config.blocks.append(current)
            current = None
        else:
            directive, _, value = line.partition(" ")
            assert directive.lower() != "include", "include is not followed by this parser"
            if directive.lower() == "define":
                continue
            target = config.globals if current is None else current.directives
            target.append((directive, expand(value.strip())))
    assert current is None and nested is None, "a block is not closed"
    return config


def route_edges(path: str) -> list[tuple[str, str]]:
    """``in1, in2 => proc => out`` → every (from, to) pair of consecutive stages."""
    stages = [[name.strip() for name in stage.split(",")] for stage in path.split("=>")]
    assert len(stages) >= 2 and all(all(stage) for stage in stages), path
    return [(a, b) for left, right in pairwise(stages) for a in left for b in right]


def reaches(edges: list[tuple[str, str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                todo.append(b)
    return goal in seen


# --- the configs, read once -------------------------------------------------------


@pytest.fixture(scope="module")
def winlogbeat() -> dict[str, Any]:
    return load_beats_yaml(WINLOGBEAT)


@pytest.fixture(scope="module")
def winlogbeat_module() -> dict[str, Any]:
    return load_beats_yaml(WINLOGBEAT_MODULE)


@pytest.fixture(scope="module")
def agent() -> dict[str, Any]:
    return load_beats_yaml(ELASTIC_AGENT)


@pytest.fixture(scope="module")
def nxlog() -> NxConfig:
    return parse_nxlog(NXLOG.read_text(encoding="utf-8"))


def agent_kafka_output(agent: dict[str, Any]) -> dict[str, Any]:
    outputs = agent["outputs"]
    kafka = [out for out in outputs.values() if out.get("type") == "kafka"]
    assert len(kafka) == 1, outputs
    return kafka[0]


def nxlog_kafka(nxlog: NxConfig) -> NxBlock:
    found = [b for b in nxlog.of_kind("Output") if (b.get("Module") or "") == "om_kafka"]
    assert len(found) == 1, nxlog.blocks
    return found[0]


def nxlog_sysmon_input(nxlog: NxConfig) -> NxBlock:
    found = [b for b in nxlog.of_kind("Input") if (b.get("Module") or "") == "im_msvistalog"]
    assert len(found) == 1, nxlog.blocks
    return found[0]


BEATS_FILES = (WINLOGBEAT, WINLOGBEAT_MODULE)


def beats_kafka(path: Path) -> dict[str, Any]:
    config = load_beats_yaml(path)
    return config["output"]["kafka"]


def kafka_settings(shipper: str) -> dict[str, Any]:
    """topic, codec, acks, hosts of one shipper's Kafka output, as plain values."""
    if shipper in ("winlogbeat", "winlogbeat-sysmon-module"):
        out = beats_kafka(SHIPPERS / f"{shipper}.yml")
        return {
            "topic": out["topic"],
            "codec": out.get("compression", "gzip"),  # Beats' default codec is gzip
            "acks": out.get("required_acks", 1),
            "hosts": out["hosts"],
        }
    if shipper == "elastic-agent":
        out = agent_kafka_output(load_beats_yaml(ELASTIC_AGENT))
        return {
            "topic": out["topic"],
            "codec": out.get("compression", "gzip"),
            "acks": out.get("required_acks", 1),
            "hosts": out["hosts"],
        }
    kafka = nxlog_kafka(parse_nxlog(NXLOG.read_text(encoding="utf-8")))
    options = dict(option.split(None, 1) for option in kafka.all("Option"))
    return {
        "topic": kafka.get("Topic"),
        "codec": kafka.get("Compression") or "none",  # om_kafka's default is none
        "acks": int(options.get("acks", options.get("request.required.acks", "-1"))),
        "hosts": [host.strip() for host in (kafka.get("BrokerList") or "").split(",")],
    }


SHIPPER_NAMES = ("winlogbeat", "winlogbeat-sysmon-module", "elastic-agent", "nxlog")


# --- the Kafka side: topic, codec, acks, brokers ----------------------------------


def test_the_four_shipper_files_are_there() -> None:
    assert sorted(p.name for p in SHIPPERS.iterdir()) == sorted(
        p.name for p in (WINLOGBEAT, WINLOGBEAT_MODULE, ELASTIC_AGENT, NXLOG)
    )


@pytest.mark.parametrize("shipper", SHIPPER_NAMES)
def test_topic_is_the_workers_input_topic(shipper: str) -> None:
    assert kafka_settings(shipper)["topic"] == Settings().topic_input


@pytest.mark.parametrize("shipper", SHIPPER_NAMES)
def test_codec_is_one_the_worker_reads(shipper: str) -> None:
    # "none" would work too; each file compresses, with a codec its shipper has.
    codec = kafka_settings(shipper)["codec"]
    assert codec in READ_CODECS
    if shipper != "nxlog":
        assert codec in BEATS_CODECS


@pytest.mark.parametrize("shipper", SHIPPER_NAMES)
def test_every_in_sync_replica_acknowledges(shipper: str) -> None:
    assert kafka_settings(shipper)["acks"] == -1


@pytest.mark.parametrize("shipper", SHIPPER_NAMES)
def test_brokers_are_named_with_the_workers_port_not_loopback(shipper: str) -> None:
    # The shippers run on other machines than the broker: 127.0.0.1 (the
    # worker's default) would point each endpoint at itself.
    port = Settings().bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    hosts = kafka_settings(shipper)["hosts"]
    assert hosts
    for host in hosts:
        name, _, host_port = host.rpartition(":")
        assert host_port == port, host
        assert name not in ("127.0.0.1", "localhost", "::1", "[::1]"), host


@pytest.mark.parametrize("path", [*BEATS_FILES, ELASTIC_AGENT], ids=lambda p: p.name)
def test_beats_protocol_version_is_one_kafka_4_accepts(path: Path) -> None:
    out = agent_kafka_output(load_beats_yaml(path)) if path == ELASTIC_AGENT else beats_kafka(path)
    version = tuple(int(part) for part in str(out["version"]).split("."))
    assert version >= (2, 1, 0)


@pytest.mark.parametrize("path", [*BEATS_FILES, ELASTIC_AGENT], ids=lambda p: p.name)
def test_beats_write_json(path: Path) -> None:
    out = agent_kafka_output(load_beats_yaml(path)) if path == ELASTIC_AGENT else beats_kafka(path)
    assert "format" not in (out.get("codec") or {})


# --- the key: one computer's events in one partition -------------------------------


@pytest.mark.parametrize("path", BEATS_FILES, ids=lambda p: p.name)
def test_winlogbeat_keys_by_the_computer_and_partitions_by_the_key(path: Path) -> None:
    out = beats_kafka(path)
    assert out["key"] == COMPUTER_KEY
    partition = out.get("partition", {})
    # No partitioner is Beats' hash partitioner; hash without fields hashes the key.
    assert set(partition) <= {"hash"}
    assert (partition.get("hash") or {}).get("hash", []) in ([], [COMPUTER_FIELD])


def test_elastic_agent_partitions_by_the_computer(agent: dict[str, Any]) -> None:
    out = agent_kafka_output(agent)
    assert set(out["partition"]) == {"hash"}
    assert out["partition"]["hash"]["hash"] == [COMPUTER_FIELD]
    assert out.get("key", COMPUTER_KEY) == COMPUTER_KEY


def test_nxlog_pins_this_hosts_events_to_one_partition(nxlog: NxConfig) -> None:
    # om_kafka sets no message key: one fixed partition per agent keeps this
    # host's order. The agent must read its own host's log (no remote source),
    # so that one agent is one host.
    partition = nxlog_kafka(nxlog).get("Partition")
    assert partition is not None and 0 <= int(partition) < Settings().partitions
    source = nxlog_sysmon_input(nxlog)
    assert not [key for key, _ in source.directives if key.lower().startswith("remote")]


# --- what is read: only the Sysmon channel -----------------------------------------


@pytest.mark.parametrize("path", BEATS_FILES, ids=lambda p: p.name)
def test_winlogbeat_reads_only_the_sysmon_channel(path: Path) -> None:
    logs = load_beats_yaml(path)["winlogbeat"]["event_logs"]
    assert [log["name"] for log in logs] == [SYSMON_CHANNEL]


def test_elastic_agent_reads_only_the_sysmon_channel(agent: dict[str, Any]) -> None:
    streams = [s for i in agent["inputs"] if i["type"] == "winlog" for s in i["streams"]]
    assert [stream["name"] for stream in streams] == [SYSMON_CHANNEL]
    assert len({stream["id"] for stream in streams}) == len(streams)


def test_nxlog_reads_only_the_sysmon_channel(nxlog: NxConfig) -> None:
    source = nxlog_sysmon_input(nxlog)
    channel = source.get("Channel")
    if channel is None:  # a QueryXML block instead: every <Select Path=…> in it
        query = next(v for k, v in source.nested.items() if k.lower() == "queryxml")
        assert set(re.findall(r'Path="([^"]+)"', query)) == {SYSMON_CHANNEL}
    else:
        assert channel == SYSMON_CHANNEL


def test_raw_winlogbeat_runs_no_processors(winlogbeat: dict[str, Any]) -> None:
    assert "processors" not in winlogbeat
    assert all("processors" not in log for log in winlogbeat["winlogbeat"]["event_logs"])


def test_module_winlogbeat_runs_the_sysmon_modules_script(
    winlogbeat_module: dict[str, Any],
) -> None:
    (log,) = winlogbeat_module["winlogbeat"]["event_logs"]
    (processor,) = log["processors"]
    script = processor["script"]
    assert script["lang"] == "javascript"
    assert script["file"] == "${path.home}/module/sysmon/config/winlogbeat-sysmon.js"


# --- the input reaches the Kafka output ---------------------------------------------


@pytest.mark.parametrize("path", BEATS_FILES, ids=lambda p: p.name)
def test_winlogbeat_has_kafka_as_its_one_output(path: Path) -> None:
    # Beats run exactly one output: every event of event_logs goes there.
    assert list(load_beats_yaml(path)["output"]) == ["kafka"]


def test_elastic_agent_sends_the_sysmon_input_to_the_kafka_output(agent: dict[str, Any]) -> None:
    (winlog,) = [i for i in agent["inputs"] if i["type"] == "winlog"]
    assert agent["outputs"][winlog.get("use_output", "default")]["type"] == "kafka"


def test_nxlog_routes_the_sysmon_input_to_kafka_as_json(nxlog: NxConfig) -> None:
    source, kafka = nxlog_sysmon_input(nxlog), nxlog_kafka(nxlog)
    edges = [
        edge
        for route in nxlog.of_kind("Route")
        for p in route.all("Path")
        for edge in route_edges(p)
    ]
    assert reaches(edges, source.name, kafka.name)
    # to_json() is xm_json's, and runs on the way (in the input or the output).
    assert [b for b in nxlog.of_kind("Extension") if b.get("Module") == "xm_json"]
    assert any("to_json()" in e for b in (source, kafka) for e in b.all("Exec"))


# --- the nxlog parser itself ------------------------------------------------------


def test_nxlog_parser_reads_defines_continuations_and_nested_blocks() -> None:
    config = parse_nxlog(
        "define T winlogbeat\n"
        "# a comment\n"
        "<Input in>\n"
        "    Module im_msvistalog\n"
        "    <QueryXML>\n"
        '        <QueryList><Query Id="0"><Select Path="%T%">*</Select></Query></QueryList>\n'
        "    </QueryXML>\n"
        "    Exec $a = 1; \\\n"
        "         to_json();\n"
        "</Input>\n"
        "<Route r>\n    Path in => out\n</Route>\n"
    )
    (block,) = config.of_kind("Input")
    assert block.get("module") == "im_msvistalog"
    assert block.get("Exec") == "$a = 1; to_json();"
    assert 'Path="winlogbeat"' in block.nested["QueryXML"]
    assert route_edges(config.block("Route", "r").get("Path") or "") == [("in", "out")]
    assert route_edges("a, b => p => o") == [("a", "p"), ("b", "p"), ("p", "o")]


@pytest.mark.parametrize(
    "text",
    [
        "<Input in>\n  Module im_file\n",  # never closed
        "include other.conf\n",  # not followed
        "<Output o>\n  Topic %NOPE%\n</Output>\n",  # undefined
        "</Output>\n",  # closes nothing
    ],
)
def test_nxlog_parser_refuses_what_it_does_not_follow(text: str) -> None:
    with pytest.raises(AssertionError):
        parse_nxlog(text)


# --- an event as each shipper writes it, through the normalizer ---------------------


def dataset_line(name: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first JSON line of ../shared/datasets/<name> that ``wanted`` accepts."""
    path = SHARED / "datasets" / name
    if not path.exists():
        pytest.skip(f"{path} not found (set SYSMON_SHARED_DIR to the shared/ folder)")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            if isinstance(doc, dict) and wanted(doc):
                return doc
    raise AssertionError(f"no such line in {path}")


def normalized(doc: dict[str, Any]) -> NormalizedEvent:
    event = normalize(json.dumps(doc).encode())
    assert isinstance(event, NormalizedEvent), event
    return event


def test_winlogbeat_raw_event_is_read_as_winlogbeat_7(winlogbeat: dict[str, Any]) -> None:
    # Winlogbeat 7.4's raw output to topic "winlogbeat" (its @metadata says so).
    doc = dataset_line(
        OTRF_WINLOGBEAT_74,
        lambda d: (
            field_value(d, "winlog.channel") == SYSMON_CHANNEL
            and field_value(d, "winlog.event_id") == 3
        ),
    )
    assert doc["@metadata"]["topic"] == Settings().topic_input
    assert "process" not in doc  # raw: the Sysmon fields are only in winlog.event_data
    event = normalized(doc)
    assert event.shape == WINLOGBEAT_7
    assert event.process_guid == doc["winlog"]["event_data"]["ProcessGuid"]
    key = format_string(winlogbeat["output"]["kafka"]["key"], doc)
    # A collector shipped it (agent.hostname): the key is the computer it happened on.
    assert key == event.fields["host_name"] == "HFDC01.shire.com" != doc["agent"]["hostname"]


def test_winlogbeat_module_events_are_read_as_winlogbeat_7(
    winlogbeat_module: dict[str, Any],
) -> None:
    lines = case_file("wlb7_sysmon_module_ecs").read_bytes().splitlines()
    template = winlogbeat_module["output"]["kafka"]["key"]
    for line in lines:
        doc = json.loads(line)
        event = normalized(doc)
        assert event.shape == WINLOGBEAT_7
        assert doc["winlog"]["channel"] == SYSMON_CHANNEL
        assert format_string(template, doc) == event.fields["host_name"] == "wkstn01"
        # The module moved ProcessGuid into ECS; the worker reads it from there.
        assert "ProcessGuid" not in (doc["winlog"].get("event_data") or {})
        assert event.process_guid == doc["process"]["entity_id"]


#: A Sysmon 3 as the Elastic Agent's winlog input writes it (the structure of
#: elastic/integrations' sysmon_operational pipeline-test input, our values):
#: the Sysmon fields in winlog.event_data, strings; winlog.event_id a string.
AGENT_EVENT: dict[str, Any] = {
    "@timestamp": "2024-02-01T10:15:30.125Z",
    "agent": {"type": "filebeat", "name": "WKSTN01", "version": "8.12.0"},
    "data_stream": {
        "type": "logs",
        "dataset": "windows.sysmon_operational",
        "namespace": "default",
    },
    "ecs": {"version": "8.0.0"},
    "event": {"code": "3", "kind": "event", "provider": "Microsoft-Windows-Sysmon"},
    "host": {"name": "wkstn01"},
    "input": {"type": "winlog"},
    "log": {"level": "information"},
    "winlog": {
        "channel": SYSMON_CHANNEL,
        "computer_name": "WKSTN01.example.org",
        "event_id": "3",
        "provider_name": "Microsoft-Windows-Sysmon",
        "provider_guid": "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}",
        "record_id": 4711,
        "version": 5,
        "process": {"pid": 3044, "thread": {"id": 4112}},
        "user": {"identifier": "S-1-5-18"},
        "event_data": {
            "RuleName": "-",
            "UtcTime": "2024-02-01 10:15:29.870",
            "ProcessGuid": "{5f3a2b1c-6d7e-65bb-0a01-000000000700}",
            "ProcessId": "5120",
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "User": "EXAMPLE\\alice",
            "Protocol": "tcp",
            "Initiated": "true",
            "SourceIsIpv6": "false",
            "SourceIp": "192.0.2.15",
            "SourceHostname": "WKSTN01.example.org",
            "SourcePort": "50211",
            "SourcePortName": "-",
            "DestinationIsIpv6": "false",
            "DestinationIp": "203.0.113.10",
            "DestinationHostname": "-",
            "DestinationPort": "443",
            "DestinationPortName": "https",
        },
    },
}


def test_elastic_agent_event_is_read_as_winlogbeat_7(agent: dict[str, Any]) -> None:
    event = normalized(AGENT_EVENT)
    assert event.shape == WINLOGBEAT_7
    assert event.event_id == 3
    want = {
        "process_guid": "{5f3a2b1c-6d7e-65bb-0a01-000000000700}",
        "process_id": 5120,
        "dst_ip_addr": "203.0.113.10",
        "dst_port": 443,
        "network_connection_initiated": True,
    }
    assert {k: event.fields[k] for k in want} == want
    (field_name,) = agent_kafka_output(agent)["partition"]["hash"]["hash"]
    assert field_value(AGENT_EVENT, field_name) == event.fields["host_name"]
    key = format_string(agent_kafka_output(agent)["key"], AGENT_EVENT)
    assert key == "WKSTN01.example.org"


def test_nxlog_event_is_read_as_flat(nxlog: NxConfig) -> None:
    # im_msvistalog + to_json(), as OTRF shipped it (SourceModuleType says so).
    doc = dataset_line(
        OTRF_NXLOG, lambda d: d.get("Channel") == SYSMON_CHANNEL and d.get("EventID") == 1
    )
    assert doc["SourceModuleType"] == nxlog_sysmon_input(nxlog).get("Module")
    assert doc["Channel"] == nxlog_sysmon_input(nxlog).get("Channel")
    event = normalized(doc)
    assert event.shape == FLAT
    assert event.process_guid == doc["ProcessGuid"]
    # Hostname is the computer the event happened on (host: the collector).
    assert event.fields["host_name"] == doc["Hostname"] != doc["host"]


# --- the docs page ---------------------------------------------------------------------


def test_docs_page_covers_every_file_and_the_readme_links_it() -> None:
    page = DOCS.read_text(encoding="utf-8")
    for path in SHIPPERS.iterdir():
        assert f"docker/shippers/{path.name}" in page, path.name
    assert "docs/shapes.md" in page or "shapes.md" in page
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("](docs/shipping.md)") == 1
