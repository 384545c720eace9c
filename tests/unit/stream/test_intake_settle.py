"""The intake's batch settled while the next is read, and a revocation in between
(``Intake._settle``, ``Intake._settle_now``): event by event, at each of the task's states.

The consumer and the producer are stand-ins recording what is asked of them;
librdkafka's side (a commit inside ``on_revoke`` really holds the handover)
is tests/integration/test_scale_out.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from sysmon_faust.stream.intake import Intake, _Unsettled
from sysmon_faust.stream.output_producer import Delivery

OFFSETS = {0: 120, 1: 75}


class Consumer:
    """Records the commits: those of the task (awaited, in a thread in the product) and those
    made inside the callback."""

    def __init__(self) -> None:
        self.committed: list[tuple[str, dict[int, int]]] = []
        self.hold: asyncio.Event | None = None

    async def commit(
        self, offsets: dict[int, int], still_wanted: Callable[[], bool] | None = None
    ) -> bool:
        if self.hold is not None:
            await self.hold.wait()  # the thread not yet at the commit
        if still_wanted is not None and not still_wanted():
            return False
        self.committed.append(("task", offsets))
        return True

    def commit_in_callback(self, offsets: dict[int, int]) -> bool:
        self.committed.append(("callback", offsets))
        return True


class Producer:
    def __init__(self, acknowledged: bool = True) -> None:
        self.acknowledged = acknowledged
        self.blocking_flushes = 0

    def flush_blocking(self, _timeout_s: float) -> bool:
        self.blocking_flushes += 1
        return self.acknowledged


def delivered(error: KafkaError | None = None) -> Delivery:
    delivery = Delivery()
    delivery._report(error, None)
    return delivery


def intake(consumer: Consumer, producer: Producer) -> Any:
    # Only what _settle and _settle_now use: no Faust service, no Kafka.
    made: Any = Intake.__new__(Intake)
    made.consumer, made.producer = consumer, producer
    made._committed, made._unsettled, made._settling = {}, None, None
    return made


def start(made: Any, unsettled: _Unsettled, acknowledged: Any) -> None:
    made._unsettled = unsettled
    made._settling = asyncio.ensure_future(made._settle(unsettled, acknowledged))


async def nothing() -> None:
    return None


def test_a_revocation_before_the_task_ran_commits_in_the_callback_and_the_task_does_not() -> None:
    async def scenario() -> tuple[Consumer, Any]:
        consumer = Consumer()
        made = intake(consumer, Producer())
        start(made, _Unsettled([delivered()], OFFSETS), nothing())
        made._settle_now()
        await made._settling
        return consumer, made

    consumer, made = asyncio.run(scenario())
    assert consumer.committed == [("callback", OFFSETS)]
    assert made._committed == OFFSETS


def test_a_revocation_while_the_task_waits_for_acknowledgements() -> None:
    async def scenario() -> Consumer:
        consumer = Consumer()
        made = intake(consumer, Producer())
        acknowledged = asyncio.get_running_loop().create_future()
        start(made, _Unsettled([delivered()], OFFSETS), acknowledged)
        await asyncio.sleep(0)  # the task now waits for them
        made._settle_now()
        acknowledged.set_result(None)
        await made._settling
        return consumer

    assert asyncio.run(scenario()).committed == [("callback", OFFSETS)]


def test_a_revocation_while_the_tasks_commit_is_on_its_way_leaves_it_uncommitted() -> None:
    # Its thread looks right before it commits: once the group moved on,
    # those offsets would take the next owner's backwards.
    async def scenario() -> tuple[Consumer, Any]:
        consumer = Consumer()
        consumer.hold = asyncio.Event()
        made = intake(consumer, Producer())
        start(made, _Unsettled([delivered()], OFFSETS), nothing())
        for _ in range(3):
            await asyncio.sleep(0)  # the task is in the commit
        made._settle_now()
        consumer.hold.set()
        await made._settling
        return consumer, made

    consumer, made = asyncio.run(scenario())
    assert consumer.committed == [("callback", OFFSETS)]
    assert made._committed == OFFSETS


def test_a_batch_whose_task_committed_is_not_committed_again() -> None:
    async def scenario() -> Consumer:
        consumer = Consumer()
        made = intake(consumer, Producer())
        start(made, _Unsettled([delivered()], OFFSETS), nothing())
        await made._settling
        made._settle_now()
        return consumer

    assert asyncio.run(scenario()).committed == [("task", OFFSETS)]


@pytest.mark.parametrize("case", ["refused", "not acknowledged in time"])
def test_a_batch_not_acknowledged_is_not_committed_at_revocation(case: str) -> None:
    async def scenario() -> tuple[Consumer, Any]:
        consumer = Consumer()
        refused = case == "refused"
        made = intake(consumer, Producer(acknowledged=refused))
        sent = [delivered(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if refused else None)]
        if not refused:
            sent.append(Delivery())  # still in flight
        acknowledged = asyncio.get_running_loop().create_future()
        start(made, _Unsettled(sent, OFFSETS), acknowledged)
        await asyncio.sleep(0)
        made._settle_now()
        acknowledged.set_result(None)
        await asyncio.wait([made._settling])
        return consumer, made._settling

    consumer, settling = asyncio.run(scenario())
    assert consumer.committed == []
    if case == "refused":
        assert settling.exception() is not None  # the worker stops at the next batch
