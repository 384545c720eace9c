"""The intake's librdkafka consumer properties, and which failed commits are faults."""

from __future__ import annotations

from confluent_kafka import KafkaError

from sysmon_faust.stream.input_consumer import config, not_committed_now

CLIENT = {"bootstrap.servers": "127.0.0.1:9092", "client.id": "sf-intake"}


def test_a_worker_is_a_dynamic_member_unless_given_an_instance_id() -> None:
    dynamic = config(CLIENT, "sf-intake", 10.0, read_committed=False)
    assert "group.instance.id" not in dynamic
    static = config(CLIENT, "sf-intake", 10.0, read_committed=False, instance_id="pod-1")
    assert static["group.instance.id"] == "pod-1"
    assert {k: v for k, v in static.items() if k != "group.instance.id"} == dynamic


def test_the_session_timeout_is_in_milliseconds_with_heartbeats_a_third_of_it() -> None:
    properties = config(CLIENT, "sf-intake", 6.0, read_committed=True)
    assert (properties["session.timeout.ms"], properties["heartbeat.interval.ms"]) == (6000, 2000)
    assert properties["isolation.level"] == "read_committed"
    assert properties["group.id"] == "sf-intake"


def test_a_commit_the_coordinator_cannot_take_now_is_not_a_fault_but_a_fenced_member_is() -> None:
    # What a broker restart brings: the coordinator loading the group's offsets.
    busy = (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.REBALANCE_IN_PROGRESS)  # fmt: skip
    for code in busy:
        assert not_committed_now(KafkaError(code)), code
    faults = (KafkaError.FENCED_INSTANCE_ID, KafkaError.GROUP_AUTHORIZATION_FAILED,
              KafkaError.OFFSET_METADATA_TOO_LARGE, KafkaError._FATAL)  # fmt: skip
    for code in faults:
        assert not not_committed_now(KafkaError(code)), code
