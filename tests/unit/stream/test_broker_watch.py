"""Which librdkafka clients have lost every broker, from their statistics."""

from __future__ import annotations

import time

import confluent_kafka
import orjson

from sysmon_faust.stream.broker_watch import LOST_AFTER_SECONDS, BrokerWatch


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stats(name: str, *sources: str) -> str:
    """librdkafka's statistics (STATISTICS.md) as far as the watch reads them."""
    brokers = {f"b{i}": {"name": f"b{i}", "source": source} for i, source in enumerate(sources)}
    return orjson.dumps({"name": name, "type": "producer", "brokers": brokers}).decode()


def test_a_client_is_lost_after_the_bound_without_a_broker_and_found_again_with_one() -> None:
    clock = _Clock()
    watch = BrokerWatch(clock=clock)
    watch(_stats("intake#producer-2", "learned"))
    watch(_stats("join-outputs#producer-3"))  # the answer that named no broker
    clock.now += LOST_AFTER_SECONDS - 1
    watch(_stats("join-outputs#producer-3"))
    watch(_stats("intake#producer-2", "learned"))
    assert watch.lost() == []
    clock.now += 1
    assert watch.lost() == [("join-outputs#producer-3", LOST_AFTER_SECONDS)]
    # A broker that is down is still known: a plain outage is a wait, not this.
    watch(_stats("join-outputs#producer-3", "configured"))
    assert watch.lost() == []


def test_a_group_coordinator_alone_is_no_broker_to_connect_to() -> None:
    clock = _Clock()
    watch = BrokerWatch(lost_after_s=0, clock=clock)
    watch(_stats("intake#consumer-1", "logical"))
    assert watch.lost() == [("intake#consumer-1", 0.0)]


def test_a_real_client_names_its_bootstrap_broker_while_it_cannot_reach_it() -> None:
    # Statistics as librdkafka writes them: the field names the watch reads.
    seen: list[str] = []
    watch = BrokerWatch(lost_after_s=0)

    def both(stats_json: str) -> None:
        seen.append(stats_json)
        watch(stats_json)

    properties = {"bootstrap.servers": "127.0.0.1:1", "statistics.interval.ms": 50}
    producer = confluent_kafka.Producer(properties | {"stats_cb": both, "log_level": 0})
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        producer.poll(0.05)
    stats = orjson.loads(seen[0])
    assert "#producer-" in stats["name"]
    assert {broker["source"] for broker in stats["brokers"].values()} == {"configured"}
    assert watch.lost() == []
