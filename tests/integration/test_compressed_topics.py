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

from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.reference import Expected, compute, lines
from tests.support import WorkerProcess, create_topic, produce, run

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
    assert stats["alerts"] == stats["alerts_by_rule"]["sysmon-wmi-child-network-connect"] > 0
