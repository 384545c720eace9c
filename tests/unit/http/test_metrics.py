"""/metrics: the figures as prometheus_client writes them, read back with its own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sysmon_faust.http.metrics import Histogram, Metric, Sample, render


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram(buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2), ("1", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert abs(histogram.total - 2.65) < 1e-9


def test_render_is_prometheus_text_that_reads_back() -> None:
    histogram = Histogram(buckets=(1.0,))
    histogram.observe(0.5)
    text = render(
        [
            Metric("sysmon_joined_total", "counter", "Joined", [Sample(3)]),
            Metric(
                "sysmon_lag", "gauge", "Lag", [Sample(7, {"topic": 'a"b\\c', "partition": "0"})]
            ),
        ],
        {"sysmon_latency_seconds": ("Latency", histogram)},
    )
    assert "# TYPE sysmon_joined_total counter" in text
    assert "# TYPE sysmon_latency_seconds histogram" in text
    read = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert read == {
        ("sysmon_joined_total", ()): 3,
        ("sysmon_lag", (("partition", "0"), ("topic", 'a"b\\c'))): 7,
        ("sysmon_latency_seconds_bucket", (("le", "1"),)): 1,
        ("sysmon_latency_seconds_bucket", (("le", "+Inf"),)): 1,
        ("sysmon_latency_seconds_sum", ()): 0.5,
        ("sysmon_latency_seconds_count", ()): 1,
    }
