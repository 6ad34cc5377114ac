"""Point-in-time rows/s: `features-at` over 100,000 (customer, as_of) rows on real Redis, against
the same rows answered one lookup at a time through the Python reader (same run).

    python3 -m bench.point_in_time --rows 100000 --customers 20000
"""

from __future__ import annotations

import argparse
import io
import os
import random
import time

import redis

from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.point_in_time import answer_rows
from stream_features.query.reader import FeatureReader

from .common import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--one-by-one", type=int, default=5_000, help="rows for the one-lookup-per-row baseline")
    args = parser.parse_args()
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"pitbench-{os.getpid()}"
    now = time.time()
    from tests.loaders import load

    options = GeneratorOptions(customers=args.customers, events=args.events, start=now - 120 * 86400, end=now - 60)
    load(client, prefix, generate_events(options), now=now)
    rng = random.Random(1)
    rows = [
        (f"cust-{rng.randrange(args.customers):07d}", repr(now - rng.uniform(0, 120 * 86400))) for _ in range(args.rows)
    ]
    reader = FeatureReader(client, prefix=prefix)
    try:
        out = io.BytesIO()
        started = time.perf_counter()
        answered = answer_rows(reader, iter(rows), out, days=30)
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for customer, as_of in rows[: args.one_by_one]:
            reader.get_features(customer, days=30, as_of=as_of)
        single = time.perf_counter() - started
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10000))
        for at in range(0, len(keys), 1000):
            client.unlink(*keys[at : at + 1000])
    write_results(
        "point_in_time",
        {
            "rows": answered,
            "features_at_rows_per_s": round(answered / batched),
            "one_lookup_per_row_rows_per_s": round(args.one_by_one / single),
            "speedup": round((answered / batched) / (args.one_by_one / single), 2),
        },
    )


if __name__ == "__main__":
    main()
