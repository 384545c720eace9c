"""The join's output producer (librdkafka) against a real broker: Kafka's partitions for a key,
order and timestamps kept, every delivery reported by flush, a refusal reported and not hung on."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import confluent_kafka
import pytest

from sysmon_faust.core.rekey import key_partition
from sysmon_faust.settings import Settings
from sysmon_faust.stream import output_producer
from sysmon_faust.stream.output_producer import Delivery, OutputProducer
from tests.support import create_topic, read_topic, run

pytestmark = pytest.mark.integration

PARTITIONS = 6


def _producer(bootstrap: str, linger_ms: int | None = None) -> OutputProducer:
    settings = Settings.from_env({**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    properties = output_producer.config(settings, "test-outputs", 1024 * 1024)
    if linger_ms is not None:
        properties["linger.ms"] = linger_ms
    return OutputProducer(properties)


def test_keys_go_to_kafkas_partitions_in_order_and_flush_waits_for_every_delivery(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("outputs")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    keys = [f"{{5770385f-c22a-{n:04x}-0000-001000000000}}".encode() for n in range(40)]
    # Timestamps within the topic's retention (the broker's default, 7 days):
    # with 2023's, the test broker's time retention (every 5 s) deleted
    # partitions while they were read — 1,000 of 2,000 records in one CI run.
    first_ms = int(time.time() * 1000) - 60_000
    sent = [(keys[n % len(keys)], f'{{"n":{n}}}'.encode(), first_ms + n) for n in range(2000)]

    async def send_all() -> list[Delivery]:
        producer = _producer(kafka_bootstrap)
        deliveries = [
            await producer.send(topic, key, value, timestamp_ms=at) for key, value, at in sent
        ]
        await producer.flush()
        return deliveries

    deliveries = run(send_all())
    assert all(d.done() and d.exception() is None for d in deliveries)

    records = read_topic(kafka_bootstrap, topic, expect=len(sent))
    assert len(records) == len(sent)
    # Kafka's default partitioner (murmur2 of the key, as the Java client and
    # the re-keying topic's producers): the partition the intake would pick.
    for record in records:
        assert record.key is not None
        assert record.partition == key_partition(record.key, PARTITIONS)
    # Each delivery knows its record's offset: the changelog's persisted
    # offsets (Outputs.note_persisted) are these.
    offset_of = {record.json()["n"]: (record.partition, record.offset) for record in records}
    for n, delivery in enumerate(deliveries):
        assert delivery.result().offset == offset_of[n][1]
    by_key: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        by_key.setdefault(record.key, []).append(record.json()["n"])
        assert record.timestamp_ms == first_ms + record.json()["n"]
    assert all(ns == sorted(ns) for ns in by_key.values())  # each key's records in send order


def test_an_explicit_partition_is_kept(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("outputs-partition")
    create_topic(kafka_bootstrap, topic, PARTITIONS)

    async def send() -> None:
        producer = _producer(kafka_bootstrap)
        for partition in range(PARTITIONS):
            await producer.send(topic, b"the-same-key", b"{}", partition=partition)
        await producer.flush()

    run(send())
    records = read_topic(kafka_bootstrap, topic, expect=PARTITIONS)
    assert sorted(r.partition for r in records) == list(range(PARTITIONS))


def test_a_record_the_broker_refuses_fails_its_delivery_and_flush_returns(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("outputs-refused")
    create_topic(kafka_bootstrap, topic, 1, max_message_bytes="100")
    seen: list[BaseException | None] = []

    async def send() -> tuple[Delivery, Delivery]:
        producer = _producer(kafka_bootstrap)
        small = await producer.send(topic, None, b"{}")
        await producer.flush()  # its own batch: Kafka refuses a batch whole
        # Random bytes: no codec shrinks them under the topic's limit.
        large = await producer.send(topic, None, os.urandom(5000))
        large.add_done_callback(lambda done: seen.append(done.exception()))
        await asyncio.wait_for(producer.flush(), 60)
        return small, large

    small, large = run(send())
    assert small.done() and small.exception() is None
    assert large.done() and isinstance(large.exception(), confluent_kafka.KafkaException)
    assert seen == [large.exception()]  # what Faults.watch_send is told
    error = large.exception()
    assert isinstance(error, confluent_kafka.KafkaException)
    assert error.args[0].code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE


def test_a_flush_waits_for_what_was_sent_before_it_not_for_what_keeps_coming(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The join goes on producing while a commit flushes: a flush that waited
    # for an empty queue held the commit for as long as the join was busy.
    topic = unique_name("outputs-busy")
    create_topic(kafka_bootstrap, topic, PARTITIONS)

    async def flush_while_busy() -> tuple[list[Delivery], int]:
        producer = _producer(kafka_bootstrap)
        before = [await producer.send(topic, b"k%d" % n, b"{}") for n in range(500)]
        sending = True

        async def keep_sending() -> None:
            n = 0
            while sending:
                await producer.send(topic, b"k%d" % n, b"{}")
                n += 1
                if n % 50 == 0:
                    await asyncio.sleep(0)

        busy = asyncio.ensure_future(keep_sending())
        await asyncio.sleep(0.05)
        await asyncio.wait_for(producer.flush(), 30)
        done_before = sum(d.done() and d.exception() is None for d in before)
        sending = False
        await busy
        await producer.flush()
        return before, done_before

    before, done_before = run(flush_while_busy())
    assert done_before == len(before)


def test_a_flush_leaves_the_linger_to_batch_what_it_waits_for(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Under at_least_once an output is read as soon as it is sent: the linger
    # is what batches the outputs, and a commit's flush waits for it rather
    # than cut it short (a transaction's commit does: its records are read
    # only once it is committed; test_transactional_producer).
    topic = unique_name("outputs-linger")
    create_topic(kafka_bootstrap, topic, 1)
    linger_s = 2.0

    async def flush_after_one() -> float:
        producer = _producer(kafka_bootstrap, linger_ms=int(linger_s * 1000))
        delivery = await producer.send(topic, b"k", b"{}")
        started = time.monotonic()
        await producer.flush()
        assert delivery.done() and delivery.exception() is None
        return time.monotonic() - started

    took = run(flush_after_one())
    assert took >= linger_s / 2, f"the flush took {took:.2f} s: it cut the linger short"


def test_a_group_reports_its_partitions_last_offset_and_a_flush_waits_for_it_to_close(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The join sends what one record makes as one group, and each changelog
    # partition's writes as another: the persisted offset is the group's.
    topic = unique_name("outputs-group")
    create_topic(kafka_bootstrap, topic, 2)

    async def scenario() -> tuple[Delivery, bool, bool]:
        producer = _producer(kafka_bootstrap, linger_ms=5)
        group = producer.group()
        for n in range(300):
            assert producer.send_nowait(topic, b"k", b"%d" % n, 1, None, group) is group
        flushing = asyncio.ensure_future(producer.flush())
        await asyncio.sleep(1.0)  # every record reported long since (5 ms linger)
        reported_while_open = group._left == 0
        waited_for_the_close = not flushing.done() and not group.done()
        group.close()
        await asyncio.wait_for(flushing, 30)
        return group, reported_while_open, waited_for_the_close

    group, reported_while_open, waited_for_the_close = run(scenario())
    assert reported_while_open and waited_for_the_close
    assert group.done() and group.exception() is None
    records = read_topic(kafka_bootstrap, topic, 300)
    assert {record.partition for record in records} == {1}
    assert group.result().offset == max(record.offset for record in records) == 299


def test_a_flush_waits_for_what_was_sent_before_the_call_not_before_its_first_await(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The intake takes a batch's flush as it ends the batch and awaits it in a
    # task while the next batch is read (sysmon_faust.stream.intake): what the
    # next batch sends in between is not the flush's to wait for. A group left
    # open after the call stands for it: a flush that took its epoch at its
    # first await would wait for that group for ever.
    topic = unique_name("outputs-flush-epoch")
    create_topic(kafka_bootstrap, topic, 1)

    async def scenario() -> tuple[Delivery, Delivery]:
        producer = _producer(kafka_bootstrap, linger_ms=5)
        before = await producer.send(topic, b"k", b"before")
        flushed = producer.flush()
        after = producer.group()
        producer.send_nowait(topic, b"k", b"after", None, None, after)
        await asyncio.wait_for(flushed, 30)
        after.close()
        await asyncio.wait_for(producer.flush(), 30)
        return before, after

    before, after = run(scenario())
    assert before.done() and before.exception() is None
    assert after.done() and after.exception() is None
