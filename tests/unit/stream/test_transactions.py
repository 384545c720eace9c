"""exactly_once: local state is kept after a clean stop, discarded after a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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


def test_at_least_once_outputs_go_to_the_outputs_producer_with_their_timestamp_in_ms() -> None:
    recording = _RecordingProducer()
    outputs = Outputs(None, "by-guid", False, recording)  # type: ignore[arg-type]
    made = asyncio.run(outputs.send("enriched", b"{g}", b"{}", 2, 1_764_000_000_123, 3))
    assert made == "delivery"
    assert recording.sent == [("enriched", b"{g}", b"{}", 3, 1_764_000_000_123)]
    # Under exactly_once the transaction's producer sends them, never this one.
    assert Outputs(None, "by-guid", True, recording).output_producer is None  # type: ignore[arg-type]
