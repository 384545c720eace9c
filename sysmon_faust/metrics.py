"""Prometheus text exposition (format 0.0.4) of the pipeline's figures; no client library.

Pure: :func:`render` turns plain values into the text ``GET /metrics`` serves.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Seconds. Processing latency (Kafka append of the input record → enriched
#: record emitted) lives in the first buckets; event age (Sysmon UtcTime →
#: emitted) can be hours for late or replayed data, hence the long tail.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 3600.0, 86400.0,
)  # fmt: skip


@dataclass
class Histogram:
    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip([*map(_number, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{int(value)}"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


@dataclass(frozen=True)
class Sample:
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: Iterable[Sample]


def render(metrics: Iterable[Metric], histograms: Mapping[str, tuple[str, Histogram]]) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for sample in metric.samples:
            lines.append(f"{metric.name}{_labels(sample.labels)} {_number(sample.value)}")
    for name, (text, histogram) in histograms.items():
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} histogram")
        for bound, count in histogram.cumulative():
            lines.append(f'{name}_bucket{{le="{bound}"}} {count}')
        lines.append(f"{name}_sum {_number(histogram.total)}")
        lines.append(f"{name}_count {histogram.count}")
    return "\n".join(lines) + "\n"
