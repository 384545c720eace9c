"""The outputs' producer without a broker: delivery reports as the join reads them, and
librdkafka's properties for the worker's settings (librdkafka itself checks them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from sysmon_faust.settings import Settings
from sysmon_faust.stream import output_producer
from sysmon_faust.stream.output_producer import Delivery


class _Message:
    """What librdkafka hands a delivery report: the record, with its offset once written."""

    def __init__(self, offset: int | None) -> None:
        self._offset = offset

    def offset(self) -> int | None:
        return self._offset


def test_a_delivery_runs_its_callbacks_once_reported_and_keeps_the_error() -> None:
    acknowledged, refused = Delivery(), Delivery()
    seen: list[tuple[str, BaseException | None]] = []
    acknowledged.add_done_callback(lambda d: seen.append(("ok", d.exception())))
    refused.add_done_callback(lambda d: seen.append(("refused", d.exception())))
    assert not acknowledged.done() and seen == []

    with pytest.raises(asyncio.InvalidStateError):
        acknowledged.result()
    acknowledged._report(None, _Message(offset=41))
    error = confluent_kafka.KafkaError(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE)
    refused._report(error, _Message(offset=-1001))

    assert acknowledged.done() and not acknowledged.cancelled()
    assert acknowledged.exception() is None
    failed = refused.exception()
    assert isinstance(failed, confluent_kafka.KafkaException)
    assert failed.args[0].code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
    assert seen == [("ok", None), ("refused", failed)]
    # Read as aiokafka's RecordMetadata is by note_persisted: the record's offset.
    assert acknowledged.result().offset == 41
    with pytest.raises(confluent_kafka.KafkaException):
        refused.result()
    late: list[Delivery] = []
    acknowledged.add_done_callback(late.append)  # added after the report: at once
    assert late == [acknowledged]


def test_an_acknowledgement_without_an_offset_is_never_taken_for_one() -> None:
    # librdkafka's -1001 up to 2.13; None from confluent-kafka 2.16 (after a
    # broker restart): the changelog offset persisted must not move to it
    # (transactions.Outputs.note_persisted), nor fail on it.
    for lacking in (None, -1001):
        delivery = Delivery()
        delivery._report(None, _Message(offset=lacking))
        assert delivery.exception() is None and delivery.result().offset == -1


def test_plaintext_properties_are_kafkas_defaults_with_the_workers_codec() -> None:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    properties = output_producer.config(settings, "app-join-outputs", 16 * 1024 * 1024)
    assert properties["bootstrap.servers"] == "k1:9092,k2:9092"
    assert properties["compression.type"] == settings.compression
    assert properties["partitioner"] == "murmur2_random"  # Kafka's (Java) default
    assert properties["enable.idempotence"] is True
    assert properties["linger.ms"] == settings.producer_linger_ms == 100  # Kafka Streams'
    assert properties["security.protocol"] == "PLAINTEXT"
    assert not any(name.startswith(("ssl.", "sasl.")) for name in properties)
    confluent_kafka.Producer(properties)  # librdkafka takes every property


def test_sasl_ssl_properties_carry_the_credentials_and_files_librdkafka_loads(
    pem: dict[str, Path],
) -> None:
    settings = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "sysmon",
            "KAFKA_SASL_PASSWORD": "s3cret",
            "KAFKA_SSL_CAFILE": str(pem["cert"]),
            "KAFKA_SSL_CERTFILE": str(pem["cert"]),
            "KAFKA_SSL_KEYFILE": str(pem["key"]),
        }
    )
    properties = output_producer.config(settings, "app-join-outputs", 1024 * 1024)
    assert properties["security.protocol"] == "SASL_SSL"
    assert properties["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (properties["sasl.username"], properties["sasl.password"]) == ("sysmon", "s3cret")
    assert properties["ssl.ca.location"] == str(pem["cert"])
    assert properties["ssl.certificate.location"] == str(pem["cert"])
    assert properties["ssl.key.location"] == str(pem["key"])
    # librdkafka reads the CA, certificate and key when the client is made:
    # a wrong property name or an unreadable file raises here.
    confluent_kafka.Producer(properties)


def test_tls_without_a_ca_file_trusts_the_systems_cas() -> None:
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL"})
    properties = output_producer.config(settings, "app-join-outputs", 1024 * 1024)
    assert properties["ssl.ca.location"] == "probe"
    confluent_kafka.Producer(properties)


def _without_a_broker(properties: dict[str, Any] | None = None) -> output_producer.OutputProducer:
    """A producer whose broker is a closed port: its queue holds one record, which fails
    after 0.5 s (``message.timeout.ms``)."""
    return output_producer.OutputProducer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "queue.buffering.max.messages": 1,
            "message.timeout.ms": 500,
            "log_level": 0,
        }
        | (properties or {})
    )


def test_a_send_cancelled_while_the_queue_is_full_leaves_no_flush_waiting() -> None:
    # No broker (a closed port): the one record librdkafka's queue holds fails
    # after message.timeout.ms; the second send waits for room and is cancelled.
    producer = _without_a_broker()

    async def scenario() -> Delivery:
        first = await producer.send("t", b"k", b"1", partition=0)
        with pytest.raises(BufferError):
            producer.send_nowait("t", b"k", b"2", partition=0)  # nothing queued: no flush waits
        waiting = asyncio.ensure_future(producer.send("t", b"k", b"2", partition=0))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the queue is full
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.wait_for(producer.flush(), 10)  # waited for ever before
        return first

    first = asyncio.run(scenario())
    assert isinstance(first.exception(), confluent_kafka.KafkaException)  # timed out


def test_a_group_is_done_once_closed_and_every_record_reported() -> None:
    outstanding: dict[int, int] = {}
    group = Delivery(0, outstanding, group=True)
    seen: list[Delivery] = []
    group.add_done_callback(seen.append)
    for _ in range(3):
        group._left += 1  # three records sent with it (OutputProducer.send_nowait)
    group._report(None, _Message(offset=12))
    group._report(None, _Message(offset=10))  # another partition's, or reported late
    group._report(None, _Message(offset=11))
    # Every record reported, but more may still be sent: a flush keeps waiting.
    assert not group.done() and seen == [] and outstanding == {0: 1}
    group.close()
    assert group.done() and seen == [group] and outstanding == {}
    assert group.result().offset == 12  # the last of one partition's writes
    group.close()  # a second close finishes nothing twice
    assert seen == [group]

    # Closed before its reports came: done with the last of them.
    late = Delivery(0, outstanding, group=True)
    late._left += 1
    late.close()
    assert not late.done()
    late._report(None, _Message(offset=3))
    assert late.done() and late.offset == 3 and outstanding == {}

    # Closed with nothing sent: done at once.
    empty = Delivery(group=True)
    empty.close()
    assert empty.done() and empty.exception() is None and empty.offset == -1


def test_a_group_with_one_failed_record_fails_with_the_first_error() -> None:
    group = Delivery(group=True)
    for _ in range(3):
        group._left += 1
    too_large = confluent_kafka.KafkaError(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE)
    timed_out = confluent_kafka.KafkaError(confluent_kafka.KafkaError._MSG_TIMED_OUT)
    group._report(None, _Message(offset=5))
    group._report(too_large, None)
    group._report(timed_out, None)
    group.close()
    failed = group.exception()
    assert isinstance(failed, confluent_kafka.KafkaException)
    assert failed.args[0].code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
    with pytest.raises(confluent_kafka.KafkaException):
        group.result()


def test_a_groups_record_refused_at_once_or_never_queued() -> None:
    # librdkafka without a broker (a closed port): a record over
    # message.max.bytes is refused by produce() itself; a full queue raises
    # BufferError with nothing queued.
    producer = _without_a_broker({"message.max.bytes": 1000})

    async def scenario() -> tuple[Delivery, Delivery]:
        refused = producer.group()
        with pytest.raises(confluent_kafka.KafkaException):
            producer.send_nowait("t", b"k", b"x" * 5000, 0, None, refused)
        refused.close()
        cancelled = producer.group()
        assert await producer.send("t", b"k", b"1", 0, None, cancelled) is cancelled
        waiting = asyncio.ensure_future(producer.send("t", b"k", b"2", 0, None, cancelled))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the queue is full
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        cancelled.close()
        # The first record times out (no broker); the second was never queued.
        await asyncio.wait_for(producer.flush(), 10)
        return refused, cancelled

    refused, cancelled = asyncio.run(scenario())
    assert refused.done() and isinstance(refused.exception(), confluent_kafka.KafkaException)
    assert cancelled.done() and cancelled.cancelled()
    with pytest.raises(asyncio.CancelledError):
        cancelled.result()
