"""Every codec Kafka has, on the topics the worker reads: the same joins as the reference.

Winlogbeat's ``output.kafka`` offers gzip, snappy and lz4, many producers use
zstd, and brokers are often set to ``compression.type=zstd`` (every batch
stored recompressed). Before aiokafka's codec extras were installed, an
input topic with ``compression.type=zstd`` crashed the intake with
``UnsupportedCodecError`` (issue 16). Here each codec is both the
producer's and the topics' ``compression.type`` — the input, and the
re-keying and process-tree topics the worker reads back — over a real
recording, compared with the independent reference (tests/reference.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.codec import zstd_encode

from tests.reference import Expected, compute, lines, shipped_rule_id
from tests.support import OwnBroker, WorkerProcess, create_topic, produce, run

pytestmark = pytest.mark.integration

RECORDING = "empire_invoke_wmi_2019-03-19152813"


async def _compress_topics(bootstrap: str, topics: list[str], codec: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"compression.type": codec}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs) for topic in topics]
        )
    finally:
        await admin.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_compressed_input_joins_like_the_reference(
    codec: str,
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / f"{RECORDING}.jsonl.gz"
    expected: Expected = compute(path)
    env = pipeline_env()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, env["SYSMON_TOPIC_INPUT"], compression_type=codec)
    worker = worker_factory(env)
    app_id = env["SYSMON_APP_ID"]
    run(
        _compress_topics(
            bootstrap, [f"{app_id}-events-by-process-guid", f"{app_id}-process-tree"], codec
        )
    )
    events = lines(path)
    produce(bootstrap, env["SYSMON_TOPIC_INPUT"], events, compression=codec)
    stats = worker.wait_for(
        lambda s: s["consumed"] == len(events) and s["join_handled"] == s["normalized"],
        timeout=180,
    )
    stats = worker.wait_for(
        lambda s: s["joined"] + s["unmatched"] == len(expected.joined) + len(expected.unmatched)
    )
    assert stats["joined"] == len(expected.joined)
    assert stats["unmatched"] == len(expected.unmatched)
    assert stats["dead_lettered"] == 0
    assert (
        stats["alerts"]
        == stats["alerts_by_rule"][shipped_rule_id("sysmon-wmi-child-network-connect")]
        > 0
    )


#: The codec bits of a record batch's attributes (Kafka's message format v2:
#: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic
#: int8, crc uint32, attributes int16; bits 0-2 the codec).
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


#: Bytes of a record batch's header (message format v2) before its records.
BATCH_HEADER_BYTES = 61


def batches(segment: Path) -> list[tuple[str, bytes]]:
    """Every record batch in a broker's log segment file, read from its bytes: its codec and its
    records as they are stored (compressed or not)."""
    data, at, found = segment.read_bytes(), 0, []
    while at + 23 <= len(data):
        length, magic = struct.unpack_from(">iB", data, at + 8)[0], data[at + 16]
        assert magic == 2, f"{segment}: message format {magic}"
        codec = CODECS[struct.unpack_from(">h", data, at + 21)[0] & 0x07]
        found.append((codec, data[at + BATCH_HEADER_BYTES : at + 12 + length]))
        at += 12 + length
    return found


def batch_codecs(segment: Path) -> set[str]:
    """The codec of every record batch in a broker's log segment file."""
    return {codec for codec, _records in batches(segment)}


def test_what_the_worker_writes_is_compressed_with_sysmon_compression(
    own_broker: OwnBroker,
    datasets_dir: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    path = datasets_dir / f"{RECORDING}.jsonl.gz"
    expected = compute(path)
    env = pipeline_env() | {
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap, "SYSMON_COMPRESSION": "zstd"
    }  # fmt: skip
    create_topic(own_broker.bootstrap, env["SYSMON_TOPIC_INPUT"])
    worker = worker_factory(env)
    produce(own_broker.bootstrap, env["SYSMON_TOPIC_INPUT"], lines(path))  # uncompressed
    stats = worker.wait_for(
        lambda s: s["joined"] + s["unmatched"] == len(expected.joined) + len(expected.unmatched),
        timeout=180,
    )
    assert (stats["joined"], stats["unmatched"]) == (len(expected.joined), len(expected.unmatched))
    app_id = env["SYSMON_APP_ID"]
    written = {
        "re-keying": f"{app_id}-events-by-process-guid",
        "process tree": f"{app_id}-process-tree",
        "sysmon-join": env["SYSMON_TOPIC_JOIN"],
        "sysmon-process-create": env["SYSMON_TOPIC_PROCESS_CREATE"],
        "a table changelog": f"{app_id}-process-create-changelog",
    }
    logs = own_broker.data_dir / "logs"
    for what, topic in written.items():
        segments = [s for s in logs.glob(f"{topic}-*/*.log") if s.stat().st_size]
        found = [batch for segment in segments for batch in batches(segment)]
        codecs = {codec for codec, _records in found}
        assert "zstd" in codecs and codecs <= {"zstd", "none"}, (what, topic, codecs)
        # librdkafka sends a batch uncompressed when compressing it would not make
        # it smaller (rdkafka_msgset_writer.c, rd_kafka_msgset_writer_compress): a
        # lone watermark of the process tree. Any other is a codec not applied.
        shrinkable = [
            len(records)
            for codec, records in found
            if codec == "none" and len(zstd_encode(records)) < len(records)
        ]
        assert shrinkable == [], (what, topic, f"uncompressed batches zstd shrinks: {shrinkable}")
    input_codecs = set().union(
        *map(batch_codecs, logs.glob(f"{env['SYSMON_TOPIC_INPUT']}-*/*.log"))
    )
    assert input_codecs == {"none"}  # the check tells codecs apart


def test_the_input_is_read_in_any_codec_without_aiokafkas_codec_libraries(
    tmp_path: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    # The input is read by librdkafka (stream/input_consumer.py), which has
    # every codec built in: a worker without aiokafka's codec libraries (as
    # before issue 16, when a zstd input stopped the intake) reads a zstd input.
    blocked = tmp_path / "no-cramjam"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text('import sys\nsys.modules["cramjam"] = None\n')
    env = pipeline_env() | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")])),
        "SYSMON_COMPRESSION": "gzip",  # what it writes and reads back: a codec aiokafka has
    }
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, [b'{"winlog": {}}'] * 10, compression="zstd")
    worker = worker_factory(env)
    stats = worker.wait_for(lambda stats: stats["consumed"] >= 10, timeout=120)
    assert stats["consumed"] == 10
    assert worker.process.poll() is None, worker.log_tail()
    assert "UnsupportedCodecError" not in worker.log_path.read_text(errors="replace")
