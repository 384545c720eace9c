"""Wiring of faust_fixes 17 and 19 into Faust's consumer thread and assignor (no broker).

The behaviour against a real broker is in tests/integration/test_unknown_topics.py
and test_static_membership.py; here, that the worker's classes call it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.assignor.partition_assignor import PartitionAssignor
from faust.transport.drivers import aiokafka as faust_aiokafka

from sysmon_faust.compat import faust_fixes


def test_every_assignment_starts_the_metadata_refresh_with_the_threads_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = object()
    started: list[Any] = []

    async def refresh(of: Any) -> None:
        started.append(of)
        await asyncio.sleep(3600)  # cancelled by the next assignment

    async def faust_own(self: Any, assigned: Any, generation_id: int = 0) -> None:
        return None

    monkeypatch.setattr(faust_fixes, "refresh_while_topics_unknown", refresh)
    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "on_partitions_assigned", faust_own)
    thread = object.__new__(faust_fixes._ConsumerThread)
    thread._ensure_consumer = lambda: consumer  # type: ignore[method-assign]

    async def two_assignments() -> tuple[Any, Any]:
        await thread.on_partitions_assigned(set(), 1)
        first = thread._refreshing
        await asyncio.sleep(0)
        await thread.on_partitions_assigned(set(), 2)
        await asyncio.sleep(0)
        second = thread._refreshing
        assert second is not None
        second.cancel()
        return first, second

    first, second = asyncio.run(two_assignments())
    assert started == [consumer, consumer]
    assert first is not second and first.cancelled()


def test_an_assignment_made_for_another_url_is_told_before_fausts_assert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told: list[tuple[str, str]] = []
    monkeypatch.setattr(faust_fixes, "ASSIGNED_TO_ANOTHER_URL", [lambda a, b: told.append((a, b))])

    class Metadata:
        url = "http://worker-a:6066"

    class ThisWorkers(PartitionAssignor):
        _url = "http://worker-b:6067"  # Faust's is a property of the app's settings

        def _decompress(self, data: Any) -> Any:
            return data

    assignor = object.__new__(ThisWorkers)
    monkeypatch.setattr(faust_fixes.ClientMetadata, "loads", staticmethod(lambda data: Metadata()))

    class Assignment:
        user_data = b""

    # Faust's own on_assignment then fails on the rest of the fake: the hook came first.
    with pytest.raises(AttributeError):  # the fake has no assignment in it
        PartitionAssignor.on_assignment(assignor, Assignment())
    assert told == [("http://worker-a:6066", "http://worker-b:6067")]
