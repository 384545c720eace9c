"""The transactional producer (librdkafka) the intake and the join write with under exactly_once,
against a real broker: a committed batch is read whole with its input offsets, an aborted one
leaves neither, and offsets sent with the group metadata of a member that has left the group are
refused (KIP-447)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable

import confluent_kafka
import pytest
from confluent_kafka import TopicPartition

from sysmon_faust.settings import Settings
from sysmon_faust.stream import input_consumer, output_producer
from sysmon_faust.stream.input_consumer import InputConsumer
from sysmon_faust.stream.transactional_producer import TransactionalProducer
from tests.support import create_topic, produce, read_topic, run

pytestmark = pytest.mark.integration

INPUT_RECORDS = 50


def _settings(bootstrap: str) -> Settings:
    return Settings.from_env({**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap})


def _producer(
    bootstrap: str, transactional_id: str, linger_ms: int | None = None
) -> TransactionalProducer:
    settings = _settings(bootstrap)
    properties = output_producer.config(settings, "test-intake", 1024 * 1024)
    properties["transactional.id"] = transactional_id
    if linger_ms is not None:
        properties["linger.ms"] = linger_ms
    return TransactionalProducer(properties)


def _consumer(bootstrap: str, topic: str, group: str) -> InputConsumer:
    properties = input_consumer.config(
        output_producer.client_config(_settings(bootstrap), "test-intake"), group, 10.0, True
    )
    return InputConsumer(properties, topic, lambda _: None, lambda _: None)


async def _read_some(consumer: InputConsumer) -> int:
    """Reads until a batch comes (the consumer holds the partition): the next offset to read."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "nothing read"
        if batch := await consumer.batch(INPUT_RECORDS):
            return batch[-1].offset() + 1


@contextlib.asynccontextmanager
async def _member_with_producer(
    bootstrap: str, topic: str, group: str, transactional_id: str, linger_ms: int | None = None
) -> AsyncIterator[tuple[InputConsumer, TransactionalProducer, int]]:
    """A member of ``group`` that has read ``topic`` (and the next offset it would read), with a
    started transactional producer (librdkafka's ``linger.ms``: the worker's, or
    ``linger_ms``); both closed at the end."""
    consumer = _consumer(bootstrap, topic, group)
    producer = _producer(bootstrap, transactional_id, linger_ms)
    try:
        await producer.start()
        up_to = await _read_some(consumer)
        yield consumer, producer, up_to
    finally:
        producer.close()
        await consumer.close()


def _committed(bootstrap: str, topic: str, group: str) -> int:
    """The group's committed offset of partition 0 (-1001: none)."""
    reader = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [committed] = reader.committed([TopicPartition(topic, 0)], timeout=30)
        return int(committed.offset)
    finally:
        reader.close()


@pytest.fixture
def topics(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> tuple[str, str, str]:
    """An input topic with records, an empty output topic, and a group name."""
    source, output = unique_name("input"), unique_name("output")
    create_topic(kafka_bootstrap, source, 1)
    create_topic(kafka_bootstrap, output, 2)
    produce(kafka_bootstrap, source, (b"%d" % n for n in range(INPUT_RECORDS)), partition=0)
    return source, output, unique_name("group")


def test_a_committed_batch_is_read_whole_with_its_input_offsets(
    kafka_bootstrap: str, topics: tuple[str, str, str], unique_name: Callable[[str], str]
) -> None:
    source, output, group = topics

    async def scenario() -> int:
        member = _member_with_producer(kafka_bootstrap, source, group, unique_name("txn"))
        async with member as (consumer, producer, up_to):
            for n in range(100):
                await producer.send(output, b"k%d" % n, b"v%d" % n, partition=n % 2)
            assert producer.in_transaction
            await producer.commit([TopicPartition(source, 0, up_to)], consumer.group_metadata())
            assert not producer.in_transaction
            return up_to

    up_to = run(scenario())
    records = read_topic(kafka_bootstrap, output, expect=100)  # read_committed
    assert sorted(r.value for r in records) == sorted(b"v%d" % n for n in range(100))
    assert _committed(kafka_bootstrap, source, group) == up_to


def test_a_commit_sends_what_lingers_at_once(
    kafka_bootstrap: str, topics: tuple[str, str, str], unique_name: Callable[[str], str]
) -> None:
    # A transaction's records are read once it is committed: its commit has
    # librdkafka send them now rather than wait out linger.ms (20 s here; a
    # transactional producer's must stay below transaction.timeout.ms).
    source, output, group = topics
    linger_s = 20

    async def scenario() -> float:
        member = _member_with_producer(
            kafka_bootstrap, source, group, unique_name("txn"), linger_ms=linger_s * 1000
        )
        async with member as (consumer, producer, up_to):
            for n in range(10):
                await producer.send(output, None, b"v%d" % n)
            started = time.monotonic()
            await producer.commit([TopicPartition(source, 0, up_to)], consumer.group_metadata())
            return time.monotonic() - started

    took = run(scenario())
    assert took < linger_s / 2, f"the commit took {took:.1f} s: it waited for the linger"
    records = read_topic(kafka_bootstrap, output, expect=10)  # read_committed
    assert sorted(r.value for r in records) == sorted(b"v%d" % n for n in range(10))


def test_an_aborted_batch_leaves_neither_records_nor_offsets(
    kafka_bootstrap: str, topics: tuple[str, str, str], unique_name: Callable[[str], str]
) -> None:
    source, output, group = topics

    async def scenario() -> None:
        member = _member_with_producer(kafka_bootstrap, source, group, unique_name("txn"))
        async with member as (consumer, producer, _):
            for n in range(100):
                await producer.send(output, None, b"aborted %d" % n)
            await producer.flush()  # in the log, not yet committed
            await producer.abort()
            await producer.send(output, None, b"committed")
            await producer.commit(None, consumer.group_metadata())

    run(scenario())
    records = read_topic(kafka_bootstrap, output, expect=1, settle=2.0)
    assert [r.value for r in records] == [b"committed"]
    assert _committed(kafka_bootstrap, source, group) < 0, "no offset was committed"


def test_offsets_of_a_member_that_left_the_group_are_refused(
    kafka_bootstrap: str, topics: tuple[str, str, str], unique_name: Callable[[str], str]
) -> None:
    # A worker that lost its partitions (it left the group, or was taken for
    # dead) but still holds a batch: its transaction must not commit them.
    source, output, group = topics

    async def scenario() -> None:
        member = _member_with_producer(kafka_bootstrap, source, group, unique_name("txn"))
        async with member as (gone, producer, up_to):
            stale = gone.group_metadata()
            await gone.close()
            successor = _consumer(kafka_bootstrap, source, group)
            try:
                await _read_some(successor)  # the group's next generation holds the partition
                await producer.send(output, None, b"from the member that left")
                with pytest.raises(confluent_kafka.KafkaException):
                    await producer.commit([TopicPartition(source, 0, up_to)], stale)
                await producer.abort()
            finally:
                await successor.close()

    run(scenario())
    assert read_topic(kafka_bootstrap, output, settle=2.0) == []
    assert _committed(kafka_bootstrap, source, group) < 0, "the stale offsets were committed"
