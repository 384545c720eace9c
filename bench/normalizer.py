"""The normalizer's CPU per event, now and before issue 16 (more shapes), side by side.

Pure Python, no Kafka: both versions normalize the same generated workload in
one process, rounds alternating, and the fastest round of each counts (the
least disturbed by the rest of the machine). The version before is read from
git (BASELINE_REV): it imported nothing of the project, so it loads alone.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from sysmon_faust.core.normalize import normalize
from sysmon_faust.core.synthetic import Workload, WorkloadConfig

REPO = Path(__file__).resolve().parents[1]
#: The last commit before issue 16 changed the normalizer (then sysmon_faust/normalize.py).
BASELINE_REV = "dec7b56"
ROUNDS = 5


def baseline_module(rev: str = BASELINE_REV) -> ModuleType | None:
    """The normalizer as it was at ``rev`` (sysmon_faust/normalize.py then); None without it."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:sysmon_faust/normalize.py"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="bench-normalize-"))
    path = folder / "normalize_before_issue_16.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _round(function: Callable[[bytes], Any], values: list[bytes]) -> float:
    started = time.perf_counter()
    for value in values:
        function(value)
    return time.perf_counter() - started


def measure(events: int = 100_000) -> dict[str, Any]:
    """µs per event of :func:`normalize` now and at :data:`BASELINE_REV`, and their ratio."""
    values = [event.value for event in Workload(WorkloadConfig(events=events, hosts=200))]
    before = baseline_module()
    now_s, before_s = [], []
    for _ in range(ROUNDS):
        now_s.append(_round(normalize, values))
        if before is not None:
            before_s.append(_round(before.normalize, values))
    now_us = min(now_s) / len(values) * 1e6
    before_us = min(before_s) / len(values) * 1e6 if before_s else None
    return {
        "events": len(values),
        "us_per_event": round(now_us, 2),
        "baseline_rev": BASELINE_REV if before is not None else None,
        "baseline_us_per_event": round(before_us, 2) if before_us else None,
        "ratio_to_baseline": round(now_us / before_us, 3) if before_us else None,
    }


if __name__ == "__main__":
    print(measure())
