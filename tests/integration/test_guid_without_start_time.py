"""GUIDs whose time groups are no start time join at once and never hold the join agent.

The input and the right output are ``../shared/cases/guid_without_start_time.*``:
80 Winlogbeat 7 events, 20 creations each followed by 3 connects, every
GUID well formed but its 2nd/3rd groups no Sysmon start time, every parent
never seen. Before the fix each join whose ancestor was missing waited
``SYSMON_ANCESTRY_WAIT`` inside the agent (80 events took 106 s). Asserted
from the worker's counters, not from a timer: no join waited out an
ancestry wait, and the times the GUIDs carry were counted as not believed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reference import Expected, compute, network_identity, output_identity
from tests.support import WorkerProcess, case_file, read_topic, run_recording

NAME = "guid_without_start_time"

pytestmark = pytest.mark.integration


@pytest.fixture
def case() -> Path:
    return case_file(NAME)


def test_guids_without_start_time_join_without_waiting(
    case: Path,
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    expected: Expected = compute(case)
    env = pipeline_env(partitions=4)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    worker, stats = run_recording(case, env, worker_factory)
    assert stats["consumed"] == stats["normalized"] == 80
    stats = worker.wait_for(lambda s: s["ancestry_parked"] == 0 and s["joined"] == 60)

    # The right output: 60 joined, nothing unmatched or dead-lettered.
    assert len(expected.joined) == stats["joined"] == 60
    assert stats["unmatched"] == 0 and stats["dead_lettered"] == 0
    # No join waited out SYSMON_ANCESTRY_WAIT: none was held for a link that
    # its GUID's time said "may still come" (a join parked before the first
    # watermark was read is released as soon as it is).
    assert stats["ancestry_wait_timeouts"] == 0
    # The parents' GUIDs carry times before Sysmon existed or in the future:
    # taken as unknown, and counted.
    implausible = stats["guid_start_time_implausible"]
    assert implausible.get("too_old", 0) > 0 and implausible.get("future", 0) > 0

    # Each joined record's ancestry is what the rows hold: the parent its
    # creation names, and nothing above it (the parents were never seen).
    joined = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_JOIN"], 60)]
    ancestry = {
        network_identity(connect): chain
        for (connect, _), chain in zip(expected.joined, expected.joined_ancestry, strict=True)
    }
    assert sorted(map(output_identity, joined)) == sorted(ancestry)
    for record in joined:
        assert record["process_ancestry"] == ancestry[output_identity(record)]
        assert len(record["process_ancestry"]) == 1
