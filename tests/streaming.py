"""Helpers for streaming integration tests: produce, run consumers as real processes, wait, compare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_features import CustomerActivityFeatures, EngineSettings, InvalidEvent
from stream_features.config import ServiceConfig
from stream_features.ingest.producer import produce_lines
from stream_features.query.reader import FeatureReader


def recent_events(count: int, customers: int, seed: int) -> list[bytes]:
    """Generated events over the 100 days before an hour ago (invalid and duplicate ones included)."""
    from stream_features.generate import GeneratorOptions, generate_events

    end = time.time() - 3600
    options = GeneratorOptions(customers=customers, events=count, start=end - 100 * 86400, end=end, seed=seed)
    return list(generate_events(options))


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = "") -> None:
    """Poll a condition with a deadline (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}")


@dataclass
class Pipeline:
    """One test's topic, group, Redis prefix and the commands to drive them."""

    bootstrap: str
    redis_url: str
    topic: str
    group: str
    prefix: str
    partitions: int = 4
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    probes: list[Consumer] = field(default_factory=list)
    redis_options: dict[str, Any] = field(default_factory=dict)  # e.g. TLS files for reader()
    cluster: bool = False  # Redis Cluster: readers and state checks use a cluster client
    # A user allowed to SCAN and read TTLs, for the stored-state check (redis_url's user may not be).
    state_url: str | None = None

    @classmethod
    def fresh(cls, bootstrap: str, redis_url: str, prefix: str, partitions: int = 4) -> Pipeline:
        suffix = uuid.uuid4().hex[:10]
        pipeline = cls(bootstrap, redis_url, f"events-{suffix}", f"group-{suffix}", prefix, partitions)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = [NewTopic(pipeline.topic, num_partitions=partitions), NewTopic(pipeline.topic + ".dlq", 1)]
        for future in admin.create_topics(topics).values():
            future.result(timeout=30)
        return pipeline

    @property
    def config(self) -> ServiceConfig:
        return ServiceConfig(
            kafka_bootstrap_servers=self.bootstrap,
            topic=self.topic,
            group_id=self.group,
            redis_url=self.redis_url,
            key_prefix=self.prefix,
        )

    def produce(self, lines: Iterable[bytes]) -> int:
        return produce_lines(lines, self.config, show_progress=False)

    def produce_raw(self, values: Iterable[bytes]) -> int:
        """Each value as one record, byte for byte (empty ones too), keyed by its customer_id."""
        from confluent_kafka import Producer

        from stream_features.ingest.producer import key_of

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "message.max.bytes": 2_000_000})
        failures: list[str] = []
        count = 0
        for value in values:
            while True:
                try:
                    producer.produce(
                        self.topic,
                        value=value,
                        key=key_of(value),
                        on_delivery=lambda e, _m: e and failures.append(str(e)),
                    )
                    break
                except BufferError:
                    producer.poll(0.2)
            count += 1
        assert producer.flush(60) == 0 and not failures, failures[:3]
        return count

    def start_consumer(self, *extra: str, redis_url: str | None = None) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "stream_features",
            "consume",
            "--bootstrap-servers",
            self.bootstrap,
            "--topic",
            self.topic,
            "--group",
            self.group,
            "--redis-url",
            redis_url or self.redis_url,
            "--key-prefix",
            self.prefix,
            *(() if "--metrics-port" in extra else ("--metrics-port", "0")),
            "--log-level",
            "warning",
            *extra,
        ]
        # Commits per batch, as tests read progress from Kafka's committed offsets mid-ingest.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "STREAM_FEATURES_COMMIT_INTERVAL_SECONDS": "0"}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.processes.append(process)
        return process

    def cleanup(self) -> None:
        """Kill any consumer a failed test left running (never leave processes behind)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for probe in self.probes:
            probe.close()
        self.probes.clear()

    def committed(self) -> int:
        """Sum of the group's committed offsets over the topic's partitions."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
        finally:
            consumer.close()

    def end_offsets(self) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group + "-probe"})
        try:
            total = 0
            for p in range(self.partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                total += high
            return total
        finally:
            consumer.close()

    def lag_probe(self) -> Callable[[], int]:
        """The group's lag (log ends minus committed offsets, over the topic's partitions) from one
        client kept open, for a test that times how soon lag shows: a client per reading would
        spend the time measured on connecting. Closed with the pipeline."""
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        self.probes.append(probe)
        parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]

        def lag() -> int:
            committed = probe.committed(parts, timeout=10)
            ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
            return sum(ends) - sum(max(tp.offset, 0) for tp in committed)

        return lag

    def offsets_report(self) -> str:
        """Per partition: the group's committed offset and the log end, and who holds what (for
        a failing test's message)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1] for p in committed}
        finally:
            consumer.close()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        group = admin.describe_consumer_groups([self.group])[self.group].result(timeout=10)
        owners = {
            member.client_id: sorted(tp.partition for tp in member.assignment.topic_partitions)
            for member in group.members
        }
        rows = ", ".join(f"{p}: committed {committed[p]} of {ends[p]}" for p in sorted(committed))
        return f"offsets {rows}; owners {owners}"

    def members(self) -> list[list[int]]:
        """The broker's view of the group: each member's partitions of the topic, sorted."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        group = admin.describe_consumer_groups([self.group])[self.group].result(timeout=10)
        assigned = [member.assignment.topic_partitions for member in group.members]
        return sorted(sorted(tp.partition for tp in partitions if tp.topic == self.topic) for partitions in assigned)

    def wait_all_committed(self, timeout: float = 120) -> None:
        end = self.end_offsets()
        wait_until(lambda: self.committed() >= end, timeout=timeout, interval=0.5, what="all offsets committed")

    def dead_letters(self, expected: int, timeout: float = 60) -> list[Any]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"dlq-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([self.topic + ".dlq"])
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(found) < expected and time.monotonic() < deadline:
                for message in consumer.consume(1000, 1.0):
                    if message.error() is None:
                        found.append(message)
            # Anything beyond `expected` would be a bug too: give it a moment to show up.
            found.extend(m for m in consumer.consume(1000, 2.0) if m.error() is None)
        finally:
            consumer.close()
        return found

    def client(self, url: str | None = None) -> Any:
        from stream_features.store.clients import sync_client

        return sync_client(url or self.redis_url, cluster=self.cluster, **self.redis_options)

    def reader(self, settings: EngineSettings | None = None) -> FeatureReader:
        return FeatureReader(self.client(), settings, prefix=self.prefix)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


def memory_engine(lines: Iterable[bytes], now: float) -> tuple[CustomerActivityFeatures, dict[str, int]]:
    """The in-memory engine fed the same lines in order, decoded as the consumer decodes them;
    also counts invalid lines by reason."""
    from stream_features import decode_event

    engine = CustomerActivityFeatures(clock=lambda: now)
    reasons: dict[str, int] = {}
    for line in lines:
        try:
            engine.apply(decode_event(line, now=now))
        except InvalidEvent as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
    return engine, reasons


def assert_same_state(engine: CustomerActivityFeatures, pipeline: Pipeline, *, as_of: float) -> int:
    """Redis holds exactly the engine's state for every customer found in either (tiles byte for
    byte, attributes, remembered ids, bookkeeping; tests/same_state.py), and the reader answers
    what the engine answers over 1 to 400 days as of several times. Returns the customer count."""
    from .same_state import assert_same_answers, assert_stored_state_equal

    state_client = pipeline.client(pipeline.state_url)
    try:
        customers = assert_stored_state_equal(engine, state_client, pipeline.prefix)
    finally:
        state_client.close()
    reader = pipeline.reader()
    assert_same_answers(engine, reader, customers, as_of)
    return len(customers)
