"""Freshness: from Kafka's acknowledgement of a produced event to its effect readable through the
Python reader, at fixed produce rates, for our consumer and, in the same run, for the previous
release's way of cutting batches (the baseline).

Each rate runs for ``--seconds``; one event in ``rate / 100`` is a probe (a customer of its own,
watched by a poller through ``FeatureReader``); the others are background traffic.

    python3 -m bench.freshness --rates 50,1000,10000 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
import uuid
from typing import Any

import msgspec
from confluent_kafka import Consumer, Message, Producer

from stream_features.config import ServiceConfig, redis_client
from stream_features.ingest.consumer import CONSUME_CHUNK, FeatureConsumer
from stream_features.ingest.kafka_io import ensure_topics, wait_for_kafka
from stream_features.query.reader import FeatureReader

from .common import percentiles, write_results

POLL_INTERVAL_SECONDS = 0.001  # the probes' resolution: at most this much is added to a delay
BACKGROUND_CUSTOMERS = 5000
# librdkafka's default (--producer-linger-ms). The delay is measured from the ack, so the producer's own batching is not
# in it; with 0, every event is a request of its own and at 10,000/s the broker alone takes most
# of a core on a 2-core machine, so the tail would measure CPU starvation of every process.
LINGER_MS = 5


class PreviousBatching(FeatureConsumer):
    """The baseline: the previous release's batch cut, which asked consume() for up to 1,000
    records with the batch timeout, so a lone record waited for the whole timeout."""

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        deadline = time.monotonic() + self.config.batch_timeout_seconds
        records: list[Message] = []
        while len(records) < self.config.batch_size:
            wanted = min(CONSUME_CHUNK, self.config.batch_size - len(records))
            remaining = deadline - time.monotonic()
            messages = consumer.consume(wanted, max(remaining, 0.0) if not records else 0.0)
            records += [m for m in messages if m.error() is None]
            if not messages or remaining <= 0:
                break
        return records


class Prober:
    """Watches probe customers through the reader; records ack → readable per probe."""

    def __init__(self, reader: FeatureReader) -> None:
        self.reader = reader
        self.pending: dict[str, float] = {}
        self.delays: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def acked(self, customer: str) -> None:
        with self.lock:
            self.pending[customer] = time.perf_counter()

    def run(self) -> None:
        # One sweep over the waiting probes per millisecond at most: a busy loop here would take
        # a core (and Redis time) from the consumer on a 2-core machine and measure itself.
        while not self.stop.is_set():
            swept = time.perf_counter()
            with self.lock:
                watching = list(self.pending.items())
            for customer, acked_at in watching:
                if self.reader.get_features(customer)["has_history"]:
                    seen = time.perf_counter()
                    with self.lock:
                        del self.pending[customer]
                    self.delays.append(seen - acked_at)
            time.sleep(max(0.0, POLL_INTERVAL_SECONDS - (time.perf_counter() - swept)))


def _event(customer: str) -> bytes:
    event = {"type": "purchase", "customer_id": customer, "timestamp": time.time(), "amount": 1.0}
    return msgspec.json.encode(event)


CONSUMERS: dict[str, type[FeatureConsumer]] = {"ours": FeatureConsumer, "previous_release_batching": PreviousBatching}


def _consume(config: ServiceConfig, name: str, stop: Any) -> None:
    """The consumer in a process of its own, as deployed (no GIL shared with the probes)."""
    consumer = CONSUMERS[name](config)
    consumer.start()
    threading.Thread(target=lambda: (stop.wait(), consumer.stop_event.set()), daemon=True).start()
    consumer.run()


def measure(config: ServiceConfig, name: str, rates: list[int], seconds: float, linger_ms: float = LINGER_MS) -> Any:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    runner = context.Process(target=_consume, args=(config, name, stop), daemon=True)
    runner.start()
    reader = FeatureReader(redis_client(config), config.engine, prefix=config.key_prefix)
    producer = Producer({"bootstrap.servers": config.kafka_bootstrap_servers, "linger.ms": linger_ms, "acks": "all"})
    prober = Prober(reader)
    poller = threading.Thread(target=prober.run, daemon=True)
    poller.start()
    results: dict[str, Any] = {}
    try:
        _warm_up(producer, prober, config)
        for rate in rates:
            prober.delays.clear()
            every = max(1, rate // 100)
            interval = 1.0 / rate
            # Background events are encoded before the clock starts (their times a moment
            # old): the producing loop stays cheap enough to leave the CPU to what is measured.
            background = [_event(f"bg-{i}") for i in range(BACKGROUND_CUSTOMERS)]
            started = time.perf_counter()
            sent = 0
            while (now := time.perf_counter()) - started < seconds:
                due = int((now - started) / interval) + 1
                while sent < due:
                    if sent % every == 0:
                        probe = f"probe-{uuid.uuid4().hex[:12]}"
                        callback = (lambda c: lambda err, _m: err is None and prober.acked(c))(probe)
                        producer.produce(config.topic, value=_event(probe), key=probe, on_delivery=callback)
                    else:
                        index = sent % BACKGROUND_CUSTOMERS
                        producer.produce(config.topic, value=background[index], key=f"bg-{index}")
                    sent += 1
                producer.poll(0)
                time.sleep(min(interval, 0.001))
            producer.flush(10)
            # Every probe is waited for (a probe left out would bias the figures low).
            deadline = time.monotonic() + 60
            while prober.pending and time.monotonic() < deadline:
                time.sleep(0.01)
            results[f"{rate}/s"] = {
                "events": sent,
                "probes": sent // every + (1 if sent % every else 0),
                "unseen_after_60s": len(prober.pending),
                **percentiles(prober.delays),
                "max_ms": _max_ms(prober.delays),
            }
            prober.pending.clear()
    finally:
        prober.stop.set()
        stop.set()
        runner.join(timeout=30)
        if runner.is_alive():
            runner.kill()
    return results


def _max_ms(delays: list[float]) -> float:
    return round(max(delays) * 1000, 3) if delays else float("nan")


def _warm_up(producer: Producer, prober: Prober, config: ServiceConfig) -> None:
    """One probe read back end to end: the consumer has joined and holds its partitions."""
    customer = f"warm-{uuid.uuid4().hex[:8]}"
    producer.produce(config.topic, value=_event(customer), key=customer)
    producer.flush(10)
    deadline = time.monotonic() + 60
    while not prober.reader.get_features(customer)["has_history"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer did not apply the warm-up event")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="50,1000,10000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--producer-linger-ms", type=float, default=LINGER_MS)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    out: dict[str, Any] = {"seconds_per_rate": args.seconds, "producer_linger_ms": args.producer_linger_ms}
    for name in CONSUMERS:
        run_id = uuid.uuid4().hex[:8]
        config = ServiceConfig(
            kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            topic=f"fresh-{run_id}",
            group_id=f"fresh-{run_id}",
            key_prefix=f"fresh-{run_id}",
            metrics_port=0,
        )
        ensure_topics(wait_for_kafka(config), [config.topic, config.dlq_topic], partitions=4)
        out[name] = measure(config, name, rates, args.seconds, args.producer_linger_ms)
    write_results("freshness", out)


if __name__ == "__main__":
    main()
