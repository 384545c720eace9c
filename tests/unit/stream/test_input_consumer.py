"""The intake's librdkafka consumer properties."""

from __future__ import annotations

from sysmon_faust.stream.input_consumer import config

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
