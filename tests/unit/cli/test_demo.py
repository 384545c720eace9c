"""The demo replays the real recording beside the repository (moved, it fell back to a sample)."""

from __future__ import annotations

import pytest

from sysmon_faust.cli import demo
from tests.support import DATASETS


def test_the_demo_replays_the_empire_wmi_recording_when_it_is_there() -> None:
    # Both look for ../shared the same way (SYSMON_SHARED_DIR, else beside the repository).
    if not (DATASETS / demo.RECORDING).is_file():
        pytest.skip(f"{DATASETS} not found")
    assert demo.find_recording() == DATASETS / demo.RECORDING
