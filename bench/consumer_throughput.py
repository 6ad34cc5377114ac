"""Kafka → Redis throughput: our consumer against a naive one-Redis-call-per-event consumer.

Every variant of ours (an appendfsync policy, the previous release's batch cut, ...) reads the
same pre-filled topic (a fresh consumer group and key prefix per run) on the same broker and
Redis. The variants alternate: ``--rounds`` rounds, each running every variant once, the order
rotated every round (A B, B A, A B, ...), so no variant always runs first or last and a drift of
the machine over the run cannot decide a comparison; before each run Redis's append-only file is
rewritten and any rewrite waited for, so one run's aftermath does not land on the next. Reported
per variant: the median, min and max over rounds, and each variant's ratio to the first one
within the same round (median, min, max). Time runs from the first record received to the last
offset committed (group join excluded). The naive consumer reads a prefix of the topic (it is
slow); its events/s is what matters.

    python3 -m bench.consumer_throughput --events 1000000 --customers 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from dataclasses import dataclass, replace

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


def _settle(client: redis.Redis, timeout: float = 300) -> None:
    """Start every run from the same Redis: the append-only file rewritten down to what Redis
    holds, no rewrite running. Otherwise a rewrite the previous run triggered, or a file grown
    by the runs before, would land on whichever variant runs next."""
    if client.config_get("appendonly")["appendonly"] != "yes":
        return
    deadline = time.monotonic() + timeout
    while _rewriting(client) and time.monotonic() < deadline:  # one already running: let it end
        time.sleep(0.2)
    client.bgrewriteaof()
    time.sleep(0.2)
    while _rewriting(client) and time.monotonic() < deadline:
        time.sleep(0.2)


def _rewriting(client: redis.Redis) -> bool:
    info = client.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


def committed_end(config: ServiceConfig) -> int:
    probe = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "group.id": "probe"})
    metadata = probe.list_topics(config.topic, timeout=10).topics[config.topic]
    total = sum(
        probe.get_watermark_offsets(TopicPartition(config.topic, p), timeout=10)[1] for p in metadata.partitions
    )
    probe.close()
    return total


@dataclass(frozen=True)
class Shape:
    """A topic's events: how many, over how many customers (a few busy ones, or many sparse)."""

    events: int
    customers: int

    @property
    def label(self) -> str:
        return f"{self.events:,} events / {self.customers:,} customers"


@dataclass(frozen=True)
class Variant:
    """One way of running ours over a topic. To compare another, add one in ``variants``."""

    label: str
    fsync: str  # Redis appendfsync during the run
    consumer_class: type[_TimedConsumer] = _TimedConsumer
    shape: Shape | None = None  # None: the first shape
    write_call_budget_us: float | None = None  # None: the shipped budget


def shapes(args: argparse.Namespace) -> list[Shape]:
    if not args.shapes:
        return [Shape(args.events, args.customers)]
    out = []
    for item in args.shapes.split(","):
        events, _, customers = item.partition(":")
        out.append(Shape(int(events), int(customers)))
    return out


def variants(args: argparse.Namespace) -> list[Variant]:
    """The first is the baseline every other one is compared with, round by round."""
    policies = args.fsync.split(",")
    chosen = [Variant(policy, policy) for policy in policies]
    if args.previous_batching:
        chosen.append(Variant(f"{policies[0]}, previous batch cut", policies[0], _TimedPreviousBatching))
    if args.unbounded_calls:  # the previous release's calls: 64 customers whatever their size
        chosen.append(Variant(f"{policies[0]}, no write-call budget", policies[0], write_call_budget_us=1e12))
    first, *others = shapes(args)
    if others:  # the first shape under the first policy is the baseline of every other shape
        chosen = [replace(variant, label=f"{variant.label}, {first.label}", shape=first) for variant in chosen]
        chosen += [Variant(f"{policies[0]}, {shape.label}", policies[0], shape=shape) for shape in others]
    return chosen


def round_order(chosen: list[Variant], round_index: int) -> list[Variant]:
    """Rotated by one each round: over len(chosen) rounds every variant runs in every position."""
    shift = round_index % len(chosen)
    return chosen[shift:] + chosen[:shift]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, float]]) -> dict[str, object]:
    fields = ("events_per_s", "consumer_cpu_us_per_event", "redis_cpu_us_per_event", "memory_bytes_per_customer")
    return {**{field: spread([run[field] for run in runs]) for field in fields}, "runs": runs}


def ratios_to_first(chosen: list[Variant], runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Each variant's events/s over the first variant's in the same round (paired: same hour)."""
    baseline = {run["round"]: run["events_per_s"] for run in runs[chosen[0].label]}
    out = {}
    for variant in chosen[1:]:
        ratios = [run["events_per_s"] / baseline[run["round"]] for run in runs[variant.label]]
        out[variant.label] = {key: round(value, 3) for key, value in spread(ratios).items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=ServiceConfig().batch_size)
    parser.add_argument(
        "--fsync",
        default="everysec,always",
        help="Redis appendfsync policies to run ours under (the first is deploy/redis.conf's and the baseline)",
    )
    parser.add_argument(
        "--previous-batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run ours with the previous release's batch cut (same fsync as the first policy)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every variant, the order rotated each round (default 3)"
    )
    parser.add_argument(
        "--unbounded-calls",
        action="store_true",
        help="also run ours without the write-call budget (the previous release's 64 customers a call)",
    )
    parser.add_argument(
        "--shapes",
        help="EVENTS:CUSTOMERS,... topics of several shapes (e.g. 1000000:100000,5000000:1000000: the second's "
        "events/s against the first's in the same round); default --events:--customers",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    run_id = uuid.uuid4().hex[:8]
    config = ServiceConfig(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        topic=f"bench-{run_id}",
        group_id=f"bench-{run_id}",
        key_prefix=f"bench-{run_id}",
        batch_size=args.batch_size,
    )
    topics: dict[Shape, tuple[ServiceConfig, int]] = {}
    for index, shape in enumerate(shapes(args)):
        shaped = replace(config, topic=f"{config.topic}-{index}")
        ensure_topics(wait_for_kafka(shaped), [shaped.topic, shaped.dlq_topic], partitions=4)
        now = time.time()
        lines = generate_events(
            GeneratorOptions(
                customers=shape.customers, events=shape.events, start=now - 365 * 86400, end=now - 60, seed=3
            )
        )
        topics[shape] = (shaped, produce_lines(lines, shaped, total=shape.events))
        assert committed_end(shaped) == topics[shape][1]
    first_shape = shapes(args)[0]
    config, produced = topics[first_shape]
    client = redis.Redis.from_url(config.redis_url)
    shipped = client.config_get("appendfsync")["appendfsync"]
    chosen = variants(args)
    runs: dict[str, list[dict[str, float]]] = {variant.label: [] for variant in chosen}
    orders: list[list[str]] = []
    try:
        for round_index in range(args.rounds):
            order = round_order(chosen, round_index)
            orders.append([variant.label for variant in order])
            for position, variant in enumerate(order):
                _settle(client)
                client.config_set("appendfsync", variant.fsync)
                tag = f"{round_index}-{chosen.index(variant)}"
                shape = variant.shape or first_shape
                topic, records = topics[shape]
                run = replace(topic, group_id=f"{topic.group_id}-{tag}", key_prefix=f"{topic.key_prefix}-{tag}")
                if variant.write_call_budget_us is not None:
                    run = replace(run, write_call_budget_us=variant.write_call_budget_us)
                memory_before = client.info("memory")["used_memory"]
                result: dict[str, float] = {"round": round_index, "position": position}
                result.update(run_ours(run, records, variant.consumer_class))
                memory_used = client.info("memory")["used_memory"] - memory_before
                result["memory_bytes_per_customer"] = round(memory_used / shape.customers)
                runs[variant.label].append(result)
                print(f"round {round_index + 1}/{args.rounds}: {variant.label}: {result['events_per_s']} events/s")
                _delete_prefix(client, run.key_prefix)
    finally:
        client.config_set("appendfsync", shipped)
    naive = run_naive(config, min(args.naive_events, produced))
    first = summarize(runs[chosen[0].label])
    write_results(
        "consumer_throughput",
        {
            "events": produced,
            "customers": first_shape.customers,
            "shapes": [shape.label for shape in topics],
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "order_per_round": orders,
            "ours_by_appendfsync": {label: summarize(found) for label, found in runs.items()},
            "events_per_s_ratio_to_first_same_round": ratios_to_first(chosen, runs),
            "naive_one_call_per_event": naive,
            "speedup_vs_naive": round(first["events_per_s"]["median"] / naive["events_per_s"], 1),  # type: ignore[index]
            "redis_memory_bytes_per_customer": first["memory_bytes_per_customer"]["median"],  # type: ignore[index]
        },
    )


if __name__ == "__main__":
    main()
