"""Prometheus metrics. Each process builds its own registry: nothing registers at import time."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# End-to-end delay: milliseconds when live, minutes or more while a backlog is worked off.
FRESHNESS_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def observe_many(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add many observations at once: ``counts[i]`` fell in bucket ``i`` (the last one: +Inf),
    ``total`` is their sum. What ``observe`` does per value, without a Python call per record."""
    buckets = histogram._buckets  # prometheus_client keeps per-bucket (not cumulative) counts
    if len(counts) != len(buckets):
        raise ValueError(f"{len(counts)} bucket counts for {len(buckets)} buckets")
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(total)


@dataclass(frozen=True)
class ConsumerMetrics:
    registry: CollectorRegistry
    events: Counter
    dead_letters: Counter
    duplicates: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    redis_write_seconds: Histogram
    lag: Gauge
    newest_event_time: Gauge
    last_batch_time: Gauge
    rebalances: Counter
    retries: Counter
    caps_reached: Counter
    rollbacks: Counter
    records_replayed: Counter
    replay_remaining: Gauge
    topic_resets: Counter
    records_unrecoverable: Counter
    quarantined: Counter
    end_to_end_delay: Histogram
    redis_used_memory: Gauge
    redis_maxmemory: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ConsumerMetrics:
        r = registry or CollectorRegistry()
        return cls(
            registry=r,
            events=Counter(
                "stream_features_events",
                "Kafka records by event type and outcome",
                ["type", "outcome"],
                registry=r,
            ),
            dead_letters=Counter(
                "stream_features_dead_letters", "Records sent to the DLQ by reason", ["reason"], registry=r
            ),
            duplicates=Counter("stream_features_duplicates_dropped", "Events dropped as duplicates", registry=r),
            batch_size=Histogram(
                "stream_features_batch_records",
                "Records per consumed batch",
                buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
                registry=r,
            ),
            batch_seconds=Histogram(
                "stream_features_batch_seconds",
                "Time to decode, write and commit a batch",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            redis_write_seconds=Histogram(
                "stream_features_redis_write_seconds",
                "Redis write time per batch",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            lag=Gauge(
                "stream_features_consumer_lag",
                "Records behind the partition's high watermark",
                ["topic", "partition"],
                registry=r,
            ),
            newest_event_time=Gauge(
                "stream_features_newest_event_timestamp_seconds",
                "Newest event time among valid events of committed batches (freshness)",
                registry=r,
            ),
            last_batch_time=Gauge(
                "stream_features_last_batch_timestamp_seconds",
                "Wall-clock time of the last committed batch",
                registry=r,
            ),
            rebalances=Counter("stream_features_rebalances", "Partition assignment changes", ["kind"], registry=r),
            retries=Counter("stream_features_retries", "Retries after a failed call", ["target"], registry=r),
            caps_reached=Counter(
                "stream_features_caps_reached",
                "Events that ran into a bounded-state cap (devices_per_tile, attributes, event_ids)",
                ["cap"],
                registry=r,
            ),
            rollbacks=Counter(
                "stream_features_state_rollbacks",
                "Times Redis was found behind what this consumer had written or Kafka had committed",
                registry=r,
            ),
            records_replayed=Counter(
                "stream_features_records_replayed",
                "Records read again from Kafka because Redis went back in time",
                registry=r,
            ),
            replay_remaining=Gauge(
                "stream_features_replay_records_remaining",
                "Records still to replay because Redis went back in time (0 when no replay is under way)",
                registry=r,
            ),
            topic_resets=Counter(
                "stream_features_topic_resets", "Times the topic was found re-created (a new log)", registry=r
            ),
            end_to_end_delay=Histogram(
                "stream_features_end_to_end_delay_seconds",
                "Per applied record: Redis acknowledging its effect (wall clock) minus the Kafka record "
                "timestamp (CreateTime from the producer's clock, or LogAppendTime from the broker's)",
                buckets=FRESHNESS_BUCKETS,
                registry=r,
            ),
            redis_used_memory=Gauge(
                "stream_features_redis_used_memory_bytes", "Redis used_memory (sum over cluster nodes)", registry=r
            ),
            redis_maxmemory=Gauge(
                "stream_features_redis_maxmemory_bytes",
                "Redis maxmemory (sum over cluster nodes; 0 = no limit)",
                registry=r,
            ),
            quarantined=Counter(
                "stream_features_quarantined_records",
                "Records dead-lettered because their customer's stored state is unreadable",
                registry=r,
            ),
            records_unrecoverable=Counter(
                "stream_features_records_unrecoverable",
                "Records Redis lost that Kafka no longer retains (retention shorter than the rollback)",
                registry=r,
            ),
        )


@dataclass(frozen=True)
class ApiMetrics:
    registry: CollectorRegistry
    lookup_seconds: Histogram
    requests: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ApiMetrics:
        r = registry or CollectorRegistry()
        return cls(
            registry=r,
            lookup_seconds=Histogram(
                "stream_features_lookup_seconds",
                "Request latency by route",
                ["route"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            requests=Counter(
                "stream_features_requests", "Requests by route and status", ["route", "status"], registry=r
            ),
        )
