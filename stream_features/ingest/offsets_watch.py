"""The group's progress per partition, read from the broker by a thread of its own.

A consumer that is up and scraped but applies nothing (a hang, a deadlock, Redis calls that
never return, a partition no member gets back) must page whatever the traffic. The consumer's
own lag gauge cannot say so: librdkafka computes it in its statistics callback, which runs
inside the poll loop, so a loop that stops polling freezes it at its last value (usually 0).
This thread asks the broker instead, every ``interval_seconds``, for each partition of the topic:

- ``stream_features_partition_end_offset``: the last stable offset (``read_committed``: what the
  consumer can read; open transactions do not count);
- ``stream_features_partition_committed_offset``: the group's committed offset (0 before the
  first commit), which moves only when a batch of that partition has settled.

Records are waiting where end > committed; a partition is stuck when that holds and its committed
offset has not changed for minutes (``StreamFeaturesConsumerStuck`` in
deploy/alerts/stream-features.rules.yml). Every member of the group exports the same view; the
alert takes the maximum, so it also fires for a partition that no member owns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry, Gauge

from ..config import ServiceConfig
from .kafka_io import client_settings

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class OffsetGauges:
    end: Gauge
    committed: Gauge
    read_at: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> OffsetGauges:
        labels = ["topic", "partition"]
        return cls(
            end=Gauge(
                "stream_features_partition_end_offset",
                "The partition's last stable offset, read from the broker by a thread apart from the poll loop",
                labels,
                registry=registry,
            ),
            committed=Gauge(
                "stream_features_partition_committed_offset",
                "The group's committed offset of the partition (0 before the first commit), read the same way",
                labels,
                registry=registry,
            ),
            read_at=Gauge(
                "stream_features_partition_offsets_read_timestamp_seconds",
                "When the partition offsets above were last read",
                registry=registry,
            ),
        )


class OffsetWatch:
    """Reads end and committed offsets of every partition into gauges, on a daemon thread."""

    def __init__(self, config: ServiceConfig, registry: CollectorRegistry, *, interval_seconds: float) -> None:
        self._config = config
        self._gauges = OffsetGauges.create(registry)
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: AdminClient | None = None
        self._failing = False

    def start(self) -> OffsetWatch:
        self._thread = threading.Thread(target=self._loop, name="offsets-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT_SECONDS * 3)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.read_once()
                if self._failing:
                    log.info("partition offsets readable again")
                self._failing = False
            except (KafkaException, KeyError, RuntimeError) as exc:  # the gauges keep their last values
                if not self._failing:
                    log.warning("partition offsets not readable (retrying every %.0f s): %s", self._interval, exc)
                self._failing = True
            self._stop.wait(self._interval)

    def read_once(self) -> dict[int, tuple[int, int]]:
        """One reading: partition → (end, committed)."""
        if self._admin is None:
            self._admin = AdminClient(client_settings(self._config))
        admin, topic = self._admin, self._config.topic
        metadata = admin.list_topics(topic, timeout=REQUEST_TIMEOUT_SECONDS).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise RuntimeError(f"topic {topic} not found")
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        wanted = {TopicPartition(topic, p): latest for p in metadata.partitions}
        ends = admin.list_offsets(
            wanted, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        group = ConsumerGroupTopicPartitions(self._config.group_id, list(wanted))
        found = admin.list_consumer_group_offsets([group], request_timeout=REQUEST_TIMEOUT_SECONDS)
        committed = {
            tp.partition: max(tp.offset, 0)
            for tp in found[self._config.group_id].result().topic_partitions
            if tp.topic == topic
        }
        reading: dict[int, tuple[int, int]] = {}
        for tp, future in ends.items():
            end = future.result().offset
            reading[tp.partition] = (end, committed.get(tp.partition, 0))
        for partition, (end, done) in reading.items():
            self._gauges.end.labels(topic, str(partition)).set(end)
            self._gauges.committed.labels(topic, str(partition)).set(done)
        self._gauges.read_at.set(time.time())
        return reading
