from __future__ import annotations

import pytest

from sysmon_faust.alignment import ALIGN_MS, partitions_to_pause

NOW = 1_764_000_000_000
T = 1_553_009_293_000  # event times of a 2019 recording


@pytest.mark.parametrize(
    ("latest", "lag", "paused"),
    [
        # In step: nobody waits.
        ({0: T, 1: T + ALIGN_MS, 2: T + 10}, {0: 5, 1: 5, 2: 5}, set()),
        # One partition ran ahead of the slowest that still has records.
        ({0: T, 1: T + ALIGN_MS + 1, 2: T + 10}, {0: 5, 1: 5, 2: 5}, {1}),
        ({0: T, 1: T + 600_000, 2: T + 300_000}, {0: 5, 1: 5, 2: 5}, {1, 2}),
        # The slow partition has nothing left to read: it holds nobody back.
        ({0: T, 1: T + 600_000, 2: T + 300_000}, {0: 0, 1: 5, 2: 5}, {1}),
        ({0: T, 1: T + 600_000}, {0: 0, 1: 0}, set()),
        # Lag not known yet counts as records to read.
        ({0: T, 1: T + 600_000}, {}, {1}),
        # A partition not read yet has no time: no reason to pause the others.
        ({1: T + 600_000}, {0: 9, 1: 9}, set()),
        # A host years ahead of the wall clock counts as a little ahead of it,
        # and it is the one that waits.
        ({0: NOW, 1: NOW + 10 * 365 * 86_400_000}, {0: 5, 1: 5}, {1}),
        ({0: NOW - 60_000, 1: NOW + 10 * 365 * 86_400_000}, {0: 0, 1: 5}, set()),
    ],
)
def test_partitions_ahead_of_the_slowest_readable_one_pause(
    latest: dict[int, int], lag: dict[int, int | None], paused: set[int]
) -> None:
    assert partitions_to_pause([0, 1, 2], latest, lag, NOW) == paused


def test_unassigned_partitions_are_ignored() -> None:
    assert partitions_to_pause([1], {0: T, 1: T + 600_000}, {0: 5, 1: 5}, NOW) == set()
