from __future__ import annotations

import dataclasses
import random

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from sysmon_faust.core.normalize import NormalizedEvent
from sysmon_faust.core.rekey import (
    EVENT_ID_FIELD,
    EVENT_TIME_FIELD,
    MAX_BATCH_BYTES,
    RECEIVED_FIELD,
    BatchBuilder,
    decode_batch,
    event_record,
    kafka_partitioner,
    key_partition,
    murmur2,
)
from sysmon_faust.core.sigma.fields import EVENT_DATA


@pytest.mark.parametrize(
    "key",
    [b"{905cc552-43ac-5c91-0000-0010b44bb703}", b"", b"x", "ü{guid}".encode()],
)
@pytest.mark.parametrize("partitions", [1, 4, 6, 32])
def test_key_partition_is_kafkas_default_partitioner(key: bytes, partitions: int) -> None:
    # The table, HTTP routing and Kafka clients keying by GUID must all agree.
    expected = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    assert key_partition(key, partitions) == expected


def test_murmur2_equals_aiokafkas_for_every_length_and_byte() -> None:
    rng = random.Random(3)
    for length in range(0, 70):
        for _ in range(30):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), data


def test_kafka_partitioner_agrees_with_aiokafkas() -> None:
    partitions = list(range(12))
    for n in range(200):
        key = f"{{905cc552-43ac-5c91-0000-0010b44b{n:04x}}}".encode()
        assert kafka_partitioner(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
    assert kafka_partitioner(None, partitions, [3]) == 3


def test_batches_keep_input_order_per_partition() -> None:
    builder = BatchBuilder()
    for n in range(10):
        builder.add(n % 3, orjson.dumps({"n": n}))
    records = builder.finish()
    assert sorted(partition for partition, _ in records) == [0, 1, 2]
    for partition, value in records:
        assert [event["n"] for event in decode_batch(value)] == list(range(partition, 10, 3))
    assert builder.finish() == []


def test_a_full_batch_is_closed_and_nothing_is_lost() -> None:
    builder = BatchBuilder()
    event = orjson.dumps({"pad": "x" * 10_000})
    count = 3 * MAX_BATCH_BYTES // len(event)
    for _ in range(count):
        builder.add(0, event)
    records = builder.finish()
    assert len(records) >= 3
    assert all(len(value) <= MAX_BATCH_BYTES + len(event) + 2 for _, value in records)
    assert sum(len(decode_batch(value)) for _, value in records) == count


def test_a_single_event_record_reads_as_a_batch_of_one() -> None:
    assert decode_batch(b'{"_event_id": 1}') == [{"_event_id": 1}]


@pytest.mark.parametrize("value", [b"", b"not json", b"[1, 2]", b'"text"', None, b"[{}, 3]"])
def test_anything_else_is_refused_with_a_reason(value: bytes | None) -> None:
    with pytest.raises(ValueError, match="batch"):
        decode_batch(value)


def test_an_event_record_has_the_bookkeeping_the_fields_and_eventdata_only_when_there() -> None:
    fields = {"process_guid": "{g}", "process_id": 4}
    with_data = NormalizedEvent(
        event_id=13, timestamp_ms=1_000, process_guid="{g}", fields=fields, shape="winlogbeat",
        event_data={"TargetObject": "HKLM\\Run"},
    )  # fmt: skip
    assert event_record(with_data, 12.5) == {
        EVENT_ID_FIELD: 13, RECEIVED_FIELD: 12.5, EVENT_TIME_FIELD: 1_000, **fields,
        EVENT_DATA: {"TargetObject": "HKLM\\Run"},
    }  # fmt: skip
    # Offline (no Kafka timestamp) and without EventData: neither key is written.
    bare = dataclasses.replace(with_data, event_data={})
    assert event_record(bare) == {EVENT_ID_FIELD: 13, EVENT_TIME_FIELD: 1_000, **fields}
