"""A group assigned while its topics were unknown gets their partitions in seconds (faust_fixes 17).

The broker can answer a leader's metadata request before it knows a topic
created a moment earlier; aiokafka's leader then assigns none of its
partitions and looks again only when its metadata is 5 minutes old. Here the
topic is created after the group's first assignment, which is the same state
made certain: the worker's refresh must bring the partitions long before that.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

import aiokafka.client
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.protocol.metadata import MetadataRequest

from sysmon_faust.compat.faust_fixes import refresh_while_topics_unknown
from tests.support import _create_topic

PARTITIONS = 3
#: Far below aiokafka's metadata_max_age_ms (300 s), far above the refresh's backoff.
DEADLINE_S = 30.0


class _AsTheWorkerDoes(ConsumerRebalanceListener):  # type: ignore[misc]
    """What the worker's consumer thread does on each assignment: start the refresh."""

    def __init__(self) -> None:
        self.consumer: AIOKafkaConsumer | None = None
        self.assignments: list[set[Any]] = []
        self.refresh: asyncio.Future[None] | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        assert self.consumer is not None
        if self.refresh is not None:
            self.refresh.cancel()
        self.refresh = asyncio.ensure_future(refresh_while_topics_unknown(self.consumer))
        self.assignments.append(set(assigned))


async def _wait(condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def test_partitions_of_a_topic_created_after_the_assignment_are_assigned(
    kafka_bootstrap: str, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = unique_name("late"), unique_name("group")
    # The project's broker creates a topic a client asks about, and aiokafka
    # always asks it to (no setting): this consumer's requests say not to,
    # so that the topic stays unknown until the test creates it.
    monkeypatch.setattr(
        aiokafka.client,
        "MetadataRequest",
        functools.partial(MetadataRequest, allow_auto_topic_creation=False),
    )

    async def scenario() -> tuple[list[set[Any]], float]:
        listener = _AsTheWorkerDoes()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
        )
        listener.consumer = consumer
        await consumer.start()  # then subscribe, as Faust does: start() would wait for the topic
        consumer.subscribe([topic], listener=listener)
        try:
            await _wait(lambda: len(listener.assignments) >= 1, DEADLINE_S)
            await _create_topic(kafka_bootstrap, topic, PARTITIONS, {})
            took = await _wait(lambda: len(consumer.assignment()) == PARTITIONS, DEADLINE_S)
            return listener.assignments, took
        finally:
            await consumer.stop()

    assignments, took = asyncio.run(scenario())
    assert assignments[0] == set(), "the topic was known at the first assignment"
    assert {tp.partition for tp in assignments[-1]} == set(range(PARTITIONS))
    print(f"assigned {took:.1f} s after the topic was created")
