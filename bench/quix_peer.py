"""The benchmark's peer: HELK's Sysmon 1/3 join as a Quix Streams 3.28 application.

``make bench`` runs it as a subprocess on the input topic the product's rows
read (bench/run.py, ``run_quix``), so both are measured the same way: input
events per second from the first event read to the last joined record out,
and the process's CPU per input event.

What it does, with Quix Streams' own building blocks:

1. reads the input topic (Winlogbeat 7 JSON, keyed by host; Quix's JSON
   deserializer, which is orjson, like the product's);
2. keeps Sysmon 1 (ProcessCreate) and 3 (NetworkConnect) of the channel
   ``Microsoft-Windows-Sysmon/Operational``;
3. re-keys them by ProcessGuid with ``group_by``, which goes through a
   repartition topic;
4. keeps, per ProcessGuid, the creation's Image, CommandLine, ParentImage and
   User in Quix's stateful ``State`` (RocksDB, with a changelog topic);
5. for each NetworkConnect whose creation is in the state, writes one record
   to the output topic: the connect's ``event_data`` fields, the host, and the
   creation's four fields (``process_path``, ``process_command_line``,
   ``parent_process_path``, ``user_account``), keyed by ProcessGuid.

What it does not do, and the product does (so the peer does less work per
event): it reads one input shape (Winlogbeat 7's ``winlog`` object) and
normalizes nothing (no type conversion, no HELK field names beyond the four
above, no dead letters for unreadable input: a value that is not JSON stops
it); it keeps no other Sysmon event type and enriches none; a connect that
arrives before its creation is dropped, not held in a grace buffer; no
ancestry (parent, grandparent, …), no process-tree topic; no detection rules
and no alerts; no unmatched-connects topic, no keyed per-type topics, no
counters, no HTTP. Processing guarantee: at-least-once, Quix's default (the
product's row it is compared with is at-least-once too); every other setting
is Quix's default.

Usage::

    python bench/quix_peer.py --bootstrap 127.0.0.1:9092 --input winlogbeat \\
        --output quix-join --app-id quix-peer --state-dir /tmp/quix-state \\
        [--first-file PATH]

``--first-file``: when the first input event is read, the peer writes there
its ``time.monotonic()`` and its CPU seconds so far (``time.process_time()``),
so the bench measures from the first event on, as it does for the product.
It runs until SIGTERM or SIGINT, with the Python of a venv of its own
(``.venv/quix``, made by ``make bench`` from the ``bench`` extra): quixstreams
brings rocksdict, which Faust's RocksDB store would take up in the workers' venv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from quixstreams import Application, State
from quixstreams.models import TopicConfig

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
PROCESS_CREATE = 1
NETWORK_CONNECT = 3
#: The creation's fields a joined record carries, and their names there.
PROCESS_FIELDS = {
    "Image": "process_path",
    "CommandLine": "process_command_line",
    "ParentImage": "parent_process_path",
    "User": "user_account",
}


def keep(event: Any) -> bool:
    """Sysmon 1 and 3 of the Sysmon channel that name their process."""
    winlog = event.get("winlog") if isinstance(event, dict) else None
    if not isinstance(winlog, dict) or winlog.get("channel") != SYSMON_CHANNEL:
        return False
    if winlog.get("event_id") not in (PROCESS_CREATE, NETWORK_CONNECT):
        return False
    data = winlog.get("event_data")
    return isinstance(data, dict) and isinstance(data.get("ProcessGuid"), str)


def process_guid(event: dict[str, Any]) -> str:
    guid: str = event["winlog"]["event_data"]["ProcessGuid"]
    return guid.lower()


def join(event: dict[str, Any], state: State) -> dict[str, Any] | None:
    """A creation goes into the state; a connect whose creation is there comes out joined."""
    winlog = event["winlog"]
    data = winlog["event_data"]
    if winlog["event_id"] == PROCESS_CREATE:
        state.set("process", {name: data.get(field) for field, name in PROCESS_FIELDS.items()})
        return None
    process = state.get("process")
    if process is None:
        return None  # its creation is not (yet) known: no grace buffer, dropped
    return {**data, "host_name": winlog.get("computer_name"), **process}


class FirstEvent:
    """Writes the moment and CPU time of the first input event to a file, once."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, event: Any) -> bool:
        if self.path is not None:
            self.path.write_text(f"{time.monotonic()} {time.process_time()}\n")
            self.path = None
        return keep(event)


def build(args: argparse.Namespace) -> Application:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel=args.log_level,
    )
    source = app.topic(args.input, value_deserializer="json")
    # The output topic: as many partitions as the input (the repartition topic
    # and the changelog derive theirs from the input topic too).
    partitions = source.broker_config.num_partitions
    target = app.topic(
        args.output,
        key_serializer="str",
        value_serializer="json",
        config=TopicConfig(num_partitions=partitions, replication_factor=1),
    )
    sdf = app.dataframe(source)
    sdf = sdf.filter(FirstEvent(args.first_file))
    sdf = sdf.group_by(process_guid, name="process_guid")
    sdf = sdf.apply(join, stateful=True)
    sdf = sdf.filter(lambda row: row is not None)
    sdf.to_topic(target)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True, help="the Winlogbeat topic to read")
    parser.add_argument("--output", required=True, help="the topic for joined records")
    parser.add_argument("--app-id", required=True, help="consumer group, names internal topics")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--first-file", type=Path, help="written when the first event is read")
    parser.add_argument("--log-level", default="WARNING")
    build(parser.parse_args()).run()


if __name__ == "__main__":
    main()
