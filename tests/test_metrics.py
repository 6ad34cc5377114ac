"""Metric helpers: bulk histogram updates equal one observe() per value."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from stream_features.metrics import FRESHNESS_BUCKETS, observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_observe_many_equals_observe_per_value() -> None:
    rng = random.Random(3)
    values = [rng.expovariate(2.0) for _ in range(500)] + [0.002, 0.005, 1e9]
    one = Histogram("one", "x", buckets=FRESHNESS_BUCKETS, registry=CollectorRegistry())
    many = Histogram("many", "x", buckets=FRESHNESS_BUCKETS, registry=CollectorRegistry())
    for value in values:
        one.observe(value)
    counts = [0] * (len(FRESHNESS_BUCKETS) + 1)
    for value in values:
        counts[next((i for i, bound in enumerate(FRESHNESS_BUCKETS) if value <= bound), len(FRESHNESS_BUCKETS))] += 1
    assert sum(1 for count in counts if count) >= 12  # the values spread over most buckets
    observe_many(many, counts, sum(values))
    expected = {(name.replace("one", "many"), le): v for (name, le), v in _samples(one).items()}
    assert _samples(many) == expected
