"""Lookup latency against real Redis with many customers loaded.

Measures, in one run: a plain HGETALL round trip (the baseline), the Python reader's flat
features, the HTTP API (sequential, then 4 concurrent clients), a 1,000-customer cohort, and
Redis memory per customer. Every loop is bounded in count.

    python3 -m bench.lookup_latency --customers 100000 --events 400000
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from urllib.parse import quote

import redis

from stream_features import EngineSettings, InvalidEvent, decode_event
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.decode import PendingEvent, apply_events
from stream_features.query.reader import FeatureReader
from stream_features.store.keys import tiles_key
from stream_features.store.writer import StateWriter

from .common import percentiles, write_results


def load(client: redis.Redis, prefix: str, customers: int, events: int) -> list[str]:
    now = time.time()
    writer = StateWriter(client, EngineSettings(), prefix=prefix)
    batch: dict[str, list[PendingEvent]] = {}
    lines = generate_events(
        GeneratorOptions(
            customers=customers,
            events=events,
            start=now - 365 * 86400,
            end=now - 60,
            seed=9,
            invalid_rate=0,
            duplicate_rate=0,
        )
    )
    for offset, line in enumerate(lines):
        try:
            event = decode_event(line, now=now)
        except InvalidEvent:
            continue
        batch.setdefault(event.customer_id, []).append(PendingEvent(event, 0, offset))
        if len(batch) >= 5000:
            apply_events(writer, batch)
            batch = {}
    apply_events(writer, batch)
    return [key.decode()[len(prefix) + 2 : -1] for key in client.scan_iter(match=f"{prefix}:{{*}}", count=10000)]


def get(connection: HTTPConnection, url: str) -> bytes:
    connection.request("GET", url)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{url}: HTTP {response.status}")
    return body


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = HTTPConnection("127.0.0.1", port, timeout=2)
            get(connection, "/readyz")
            return
        except (OSError, RuntimeError):
            time.sleep(0.2)
    raise TimeoutError("the API did not become ready")


def timed(call: object, arguments: list[object]) -> list[float]:
    samples = []
    for argument in arguments:
        started = time.perf_counter()
        call(argument)  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    before = client.info("memory")["used_memory"]
    customers = load(client, prefix, args.customers, args.events)
    memory_per_customer = (client.info("memory")["used_memory"] - before) / len(customers)
    rng = random.Random(1)
    picks = [rng.choice(customers) for _ in range(args.lookups)]
    reader = FeatureReader(client, EngineSettings(), prefix=prefix)
    for customer in picks[:200]:  # warm up connections and code paths
        reader.get_features(customer)
    baseline = timed(lambda c: client.hgetall(tiles_key(c, prefix)), picks)
    features = timed(lambda c: reader.get_features(c), picks)
    cohort = timed(lambda ids: reader.get_cohort_features(ids), [rng.sample(customers, 1000) for _ in range(30)])
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_features",
            "serve",
            "--port",
            str(args.port),
            "--redis-url",
            redis_url,
            "--key-prefix",
            prefix,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(args.port)
        urls = [f"/v1/customers/{quote(c, safe='')}/features" for c in picks]
        http = HTTPConnection("127.0.0.1", args.port)  # a light keep-alive client: measure the server
        for url in urls[:200]:
            get(http, url)
        sequential = timed(lambda u: get(http, u), urls)

        def one_client(chunk: list[str]) -> list[float]:
            own = HTTPConnection("127.0.0.1", args.port)
            return timed(lambda u: get(own, u), chunk)

        with ThreadPoolExecutor(4) as pool:
            concurrent = [s for part in pool.map(one_client, [urls[i::4] for i in range(4)]) for s in part]
    finally:
        server.terminate()
        server.wait(timeout=10)
    for key in client.scan_iter(match=f"{prefix}:*", count=10000):
        client.delete(key)
    base_p50 = percentiles(baseline)["p50_ms"]
    results = {
        "customers": len(customers),
        "events": args.events,
        "baseline_hgetall_round_trip": percentiles(baseline),
        "reader_get_features": percentiles(features),
        "http_features_sequential": percentiles(sequential),
        "http_features_4_concurrent_clients": percentiles(concurrent),
        "cohort_1000_customers": percentiles(cohort),
        "reader_p50_vs_hgetall_p50": round(percentiles(features)["p50_ms"] / base_p50, 2),
        "http_p50_vs_hgetall_p50": round(percentiles(sequential)["p50_ms"] / base_p50, 2),
        "redis_memory_bytes_per_customer": round(memory_per_customer),
    }
    write_results("lookup_latency", results)


if __name__ == "__main__":
    main()
