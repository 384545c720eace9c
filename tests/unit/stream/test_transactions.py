"""exactly_once: local state is kept after a clean stop, discarded after a crash."""

from __future__ import annotations

from pathlib import Path

from sysmon_faust.stream.transactions import discard_state_after_crash, mark_clean_stop


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
