"""exactly_once: local state is kept after a clean stop, discarded after a crash; where the
join's records and changelog writes go under each guarantee."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import confluent_kafka
import pytest
from faust.types import TP

from sysmon_faust.stream import faults
from sysmon_faust.stream.output_producer import Delivery
from sysmon_faust.stream.transactional_producer import FaustTransactionProducer
from sysmon_faust.stream.transactions import Outputs, discard_state_after_crash, mark_clean_stop


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "v1" / "tables"
    state.mkdir(parents=True)
    (state / "process-create-0.db").write_text("rows")
    return state


def test_state_is_kept_after_a_clean_stop(tmp_path: Path) -> None:
    state = _state(tmp_path)
    mark_clean_stop(tmp_path)
    assert discard_state_after_crash(tmp_path, state) is False
    assert (state / "process-create-0.db").exists()


def test_state_is_discarded_when_the_last_stop_was_not_clean(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert discard_state_after_crash(tmp_path, state) is True
    assert not state.exists()


def test_a_start_takes_the_marker_so_a_crash_after_it_counts(tmp_path: Path) -> None:
    state = _state(tmp_path)
    mark_clean_stop(tmp_path)
    discard_state_after_crash(tmp_path, state)  # a start: state kept, marker gone
    assert discard_state_after_crash(tmp_path, state) is True  # the next start, after a crash


def test_a_first_start_has_nothing_to_discard(tmp_path: Path) -> None:
    assert discard_state_after_crash(tmp_path, tmp_path / "v1" / "tables") is False


class _RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    async def send(self, *args: Any) -> str:
        self.sent.append(args)
        return "delivery"

    def send_nowait(self, *args: Any) -> str:
        if len(self.sent) >= 1:
            raise BufferError("Local: Queue full")  # librdkafka's, with nothing queued
        self.sent.append(args)
        return "delivery at once"


def test_at_least_once_outputs_go_to_the_outputs_producer_with_their_timestamp_in_ms() -> None:
    recording = _RecordingProducer()
    outputs = Outputs(None, "by-guid", False, recording)  # type: ignore[arg-type]
    made = asyncio.run(outputs.send("enriched", b"{g}", b"{}", 2, 1_764_000_000_123, 3))
    assert made == "delivery"
    assert recording.sent == [("enriched", b"{g}", b"{}", 3, 1_764_000_000_123, None)]
    # Under exactly_once the transaction's producer sends them, never this one.
    assert Outputs(None, "by-guid", True, recording).output_producer is None  # type: ignore[arg-type]


def test_a_send_at_once_is_the_outputs_producers_or_none_when_it_would_have_to_wait() -> None:
    recording = _RecordingProducer()
    outputs = Outputs(None, "by-guid", False, recording)  # type: ignore[arg-type]
    assert outputs.send_nowait("enriched", b"{g}", b"{}", 2, 1_764_000_000_123, 3) == (
        "delivery at once"
    )
    assert recording.sent == [("enriched", b"{g}", b"{}", 3, 1_764_000_000_123, None)]
    # Its queue is full: nothing sent, the caller awaits send().
    assert outputs.send_nowait("enriched", b"{h}", b"{}", 2) is None
    assert len(recording.sent) == 1


def _app_with_transactions(producers: dict[str, Any]) -> Any:
    """A Faust app as Outputs reads it under exactly_once: the transactional ids of the
    re-keying topic's partitions (``<id>-<topic group>-<partition>``) and their producers."""
    return SimpleNamespace(
        conf=SimpleNamespace(id="app"),
        assignor=SimpleNamespace(group_for_topic=lambda topic: 0),
        producer=SimpleNamespace(_transaction_producers=producers),
    )


def test_under_exactly_once_a_send_goes_straight_to_its_partitions_transaction() -> None:
    # The partition's transaction on librdkafka (faust_fixes 12): sent at once
    # and in groups, as under at_least_once, not through Faust's layers.
    ours = FaustTransactionProducer({"transactional.id": "app-0-2"}, {})
    recording = _RecordingProducer()
    ours._producer = recording  # type: ignore[assignment]
    other = object()  # a transaction producer that is not ours (aiokafka's)
    outputs = Outputs(_app_with_transactions({"app-0-2": ours, "app-0-3": other}), "by-guid", True)
    assert outputs.send_nowait("enriched", b"{g}", b"{}", 2, None, 5) == "delivery at once"
    assert recording.sent == [("enriched", b"{g}", b"{}", 5, None, None)]
    assert outputs.send_nowait("enriched", b"{h}", b"{}", 2) is None  # its queue is full
    assert outputs.send_nowait("enriched", b"{g}", b"{}", 3) is None  # Faust's: awaited
    assert outputs.group(3) is None
    assert outputs.output_producer is None  # under exactly_once nothing goes outside it


class _DeliveringProducer:
    """Sends become :class:`Delivery` objects, reported when the test says."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.deliveries: list[Delivery] = []

    def group(self) -> Delivery:
        group = Delivery(group=True)
        group.producer = self  # type: ignore[assignment]
        return group

    async def send(self, *args: Any) -> Delivery:
        return self.send_nowait(*args)

    def send_nowait(self, *args: Any) -> Delivery:
        *record, group = args
        self.sent.append(tuple(record))
        delivery = Delivery() if group is None else group
        if group is not None:
            group._left += 1  # as OutputProducer.send_nowait: one record more to report
        self.deliveries.append(delivery)
        return delivery


class _Offset:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class _Table:
    """A Faust table as send_changelog reads it: its changelog topic, its store's offsets."""

    def __init__(self) -> None:
        topic = "app-process-create-changelog"
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: topic)
        self.persisted: dict[TP, int] = {}
        self.data = SimpleNamespace(set_persisted_offset=self.persisted.__setitem__)


def test_changelog_writes_go_to_the_outputs_producer_and_persist_acknowledged_offsets() -> None:
    producer = _DeliveringProducer()
    outputs = Outputs(None, "by-guid", False, producer)  # type: ignore[arg-type]
    table = _Table()
    changes = [(0, b"a", b"1"), (0, b"b", None), (1, b"c", b"3")]
    sent = asyncio.run(outputs.send_changelog(table, changes))  # type: ignore[arg-type]
    topic = "app-process-create-changelog"
    # Partition explicit, timestamp None (now): as Faust's producer wrote them.
    assert producer.sent == [
        (topic, b"a", b"1", 0, None),
        (topic, b"b", None, 0, None),
        (topic, b"c", b"3", 1, None),
    ]
    # One delivery per changelog partition, reported to by each of its writes.
    first, second, other = producer.deliveries
    assert sent == [first, other] and first is second

    second._report(None, _Offset(8))  # acknowledged before the one sent before it
    other._report(None, _Offset(4))
    outputs.note_persisted()
    # Partition 0 waits for its first write: recovery must not start past it.
    assert table.persisted == {TP(topic, 1): 4}
    first._report(None, _Offset(7))
    outputs.note_persisted()
    assert table.persisted == {TP(topic, 0): 8, TP(topic, 1): 4}


def test_the_persisted_offset_never_passes_a_failed_write_nor_goes_back() -> None:
    producer = _DeliveringProducer()
    outputs = Outputs(None, "by-guid", False, producer)  # type: ignore[arg-type]
    table = _Table()
    topic = "app-process-create-changelog"
    for changes in ([(0, b"a", b"1")], [(0, b"b", b"2"), (0, b"c", b"3")], [(0, b"d", b"4")]):
        asyncio.run(outputs.send_changelog(table, changes))  # type: ignore[arg-type]
    first, failed, after_it, later = producer.deliveries
    first._report(None, _Offset(7))
    failed._report(confluent_kafka.KafkaError(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE), None)
    after_it._report(None, _Offset(9))  # the same call's: its delivery failed all the same
    later._report(None, _Offset(10))
    outputs.note_persisted()
    outputs.note_persisted()
    # A restart reads the changelog from after 7: the failed write's key is
    # whatever the records before it made (the worker stops for the failure).
    assert table.persisted == {TP(topic, 0): 7}

    # A report without an offset (librdkafka's -1001) moves nothing, nor back.
    outputs = Outputs(None, "by-guid", False, producer)  # type: ignore[arg-type]
    table = _Table()
    asyncio.run(outputs.send_changelog(table, [(0, b"a", b"1"), (0, b"b", b"2")]))  # type: ignore[arg-type]
    written, unknown = producer.deliveries[-2:]
    written._report(None, _Offset(12))
    unknown._report(None, _Offset(-1001))
    outputs.note_persisted()
    assert table.persisted == {TP(topic, 0): 12}


def test_a_stopped_worker_persists_no_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    # That write could block the event loop on a full disk, before /health says why.
    producer = _DeliveringProducer()
    outputs = Outputs(None, "by-guid", False, producer)  # type: ignore[arg-type]
    table = _Table()
    asyncio.run(outputs.send_changelog(table, [(0, b"a", b"1")]))  # type: ignore[arg-type]
    producer.deliveries[0]._report(None, _Offset(3))
    monkeypatch.setattr(faults.faults, "stopping", True)
    outputs.note_persisted()
    assert table.persisted == {}
    monkeypatch.setattr(faults.faults, "stopping", False)
    outputs.note_persisted()
    assert table.persisted == {TP("app-process-create-changelog", 0): 3}
