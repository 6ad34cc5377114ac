"""Kafka → Redis throughput: our consumer against a naive one-Redis-call-per-event consumer.

Both read the same pre-filled topic (fresh consumer groups, fresh key prefixes) on the same
broker and Redis, in the same run. Time runs from the first record received to the last offset
committed (group join excluded). The naive consumer reads a prefix of the topic (it is slow); its
events/s is what matters.

    python3 -m bench.consumer_throughput --events 1000000 --customers 100000
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import replace

import redis
from confluent_kafka import Consumer, TopicPartition

from stream_features import InvalidEvent, decode_event
from stream_features.config import ServiceConfig
from stream_features.core.tiles import tile_of
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.consumer import FeatureConsumer
from stream_features.ingest.kafka_io import ensure_topics, wait_for_kafka
from stream_features.ingest.producer import produce_lines

from .common import write_results
from .freshness import PreviousBatching


class _TimedConsumer(FeatureConsumer):
    first_record_at: float | None = None

    def process(self, records: list) -> None:  # type: ignore[type-arg]
        if self.first_record_at is None:
            self.first_record_at = time.perf_counter()
        super().process(records)


class _TimedPreviousBatching(_TimedConsumer, PreviousBatching):
    """Ours with the previous release's batch cut (bench/freshness.py): the backlog baseline."""


def run_ours(
    config: ServiceConfig, total: int, consumer_class: type[_TimedConsumer] = _TimedConsumer
) -> dict[str, float]:
    client = redis.Redis.from_url(config.redis_url)
    consumer = consumer_class(config)
    consumer.start()
    redis_cpu_before, process_cpu_before = _redis_cpu_seconds(client), time.process_time()
    stats = consumer.run(exit_when_idle_seconds=2.0)
    finished = time.perf_counter() - 2.0  # the idle wait is not work
    assert consumer.first_record_at is not None and stats.records == total, stats
    seconds = finished - consumer.first_record_at
    result = {
        "records": stats.records,
        "seconds": round(seconds, 2),
        "events_per_s": round(stats.records / seconds),
        # Where the CPU went (the consumer's figure includes its writer and librdkafka threads).
        "consumer_cpu_us_per_event": round((time.process_time() - process_cpu_before) / total * 1e6, 2),
        "redis_cpu_us_per_event": round((_redis_cpu_seconds(client) - redis_cpu_before) / total * 1e6, 2),
    }
    client.close()
    return result


def _redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_naive(config: ServiceConfig, limit: int) -> dict[str, float]:
    """What people write by hand: decode, then one Redis call per event, commit per batch."""
    client = redis.Redis.from_url(config.redis_url)
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka_bootstrap_servers,
            "group.id": f"naive-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([config.topic])
    done = 0
    started = None
    while done < limit:
        messages = consumer.consume(1000, 1.0)
        if not messages:
            continue
        started = started or time.perf_counter()
        now = time.time()
        for message in messages:
            try:
                event = decode_event(message.value() or b"", now=now)
            except InvalidEvent:
                continue
            tile = tile_of(event.timestamp, 3600)
            client.hincrby(f"naive:{config.key_prefix}:{event.customer_id}", f"{tile}:{event.kind}", 1)
        consumer.commit(asynchronous=False)
        done += len(messages)
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    _delete_prefix(client, f"naive:{config.key_prefix}")
    return {"records": done, "seconds": round(seconds, 2), "events_per_s": round(done / seconds)}


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    """UNLINK every key under a prefix, 1,000 per call (one call per key takes minutes)."""
    keys: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        keys.append(key)
        if len(keys) == 1000:
            client.unlink(*keys)
            keys.clear()
    if keys:
        client.unlink(*keys)


def committed_end(config: ServiceConfig) -> int:
    probe = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "group.id": "probe"})
    metadata = probe.list_topics(config.topic, timeout=10).topics[config.topic]
    total = sum(
        probe.get_watermark_offsets(TopicPartition(config.topic, p), timeout=10)[1] for p in metadata.partitions
    )
    probe.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=ServiceConfig().batch_size)
    parser.add_argument(
        "--fsync",
        default="everysec,always",
        help="Redis appendfsync policies to run ours under, in order (the first is deploy/redis.conf's)",
    )
    parser.add_argument(
        "--previous-batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run ours with the previous release's batch cut (same fsync as the first run)",
    )
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    config = ServiceConfig(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        topic=f"bench-{run_id}",
        group_id=f"bench-{run_id}",
        key_prefix=f"bench-{run_id}",
        batch_size=args.batch_size,
    )
    ensure_topics(wait_for_kafka(config), [config.topic, config.dlq_topic], partitions=4)
    now = time.time()
    lines = generate_events(
        GeneratorOptions(customers=args.customers, events=args.events, start=now - 365 * 86400, end=now - 60, seed=3)
    )
    produced = produce_lines(lines, config, total=args.events)
    assert committed_end(config) == produced
    client = redis.Redis.from_url(config.redis_url)
    shipped = client.config_get("appendfsync")["appendfsync"]
    ours: dict[str, dict[str, float]] = {}
    memory_per_customer = 0
    try:
        runs = [(policy, _TimedConsumer) for policy in args.fsync.split(",")]
        if args.previous_batching:
            runs.append((runs[0][0], _TimedPreviousBatching))
        for index, (policy, consumer_class) in enumerate(runs):
            client.config_set("appendfsync", policy)
            run = replace(config, group_id=f"{config.group_id}-{index}", key_prefix=f"{config.key_prefix}-{index}")
            memory_before = client.info("memory")["used_memory"]
            label = f"{index + 1}: {policy}" + (
                ", previous batch cut" if consumer_class is _TimedPreviousBatching else ""
            )
            ours[label] = run_ours(run, produced, consumer_class)
            memory_per_customer = round((client.info("memory")["used_memory"] - memory_before) / args.customers)
            _delete_prefix(client, run.key_prefix)
    finally:
        client.config_set("appendfsync", shipped)
    naive = run_naive(config, min(args.naive_events, produced))
    first = next(iter(ours.values()))
    write_results(
        "consumer_throughput",
        {
            "events": produced,
            "customers": args.customers,
            "batch_size": args.batch_size,
            "ours_by_appendfsync": ours,
            "naive_one_call_per_event": naive,
            "speedup_vs_naive": round(first["events_per_s"] / naive["events_per_s"], 1),
            "redis_memory_bytes_per_customer": memory_per_customer,
        },
    )


if __name__ == "__main__":
    main()
