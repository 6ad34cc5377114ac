"""In-memory core: decode+aggregate events/s and feature computation µs per lookup.

Baseline in the same run: msgspec's bare JSON decode of the same lines (the floor any
validating decoder is measured against).

    python3 -m bench.core_engine --events 200000 --customers 20000
"""

from __future__ import annotations

import argparse
import contextlib
import time

import msgspec

from stream_features import CustomerActivityFeatures, InvalidEvent, decode_event
from stream_features.generate import GeneratorOptions, generate_events

from .common import percentiles, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    now = time.time()
    lines = list(
        generate_events(
            GeneratorOptions(customers=args.customers, events=args.events, start=now - 120 * 86400, end=now - 60)
        )
    )
    started = time.perf_counter()
    for line in lines:
        with contextlib.suppress(msgspec.DecodeError):
            msgspec.json.decode(line)
    bare = time.perf_counter() - started

    engine = CustomerActivityFeatures(clock=lambda: now)
    started = time.perf_counter()
    decoded = []
    for line in lines:
        try:
            decoded.append(decode_event(line, now=now))
        except InvalidEvent:
            continue
    decode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for event in decoded:
        try:
            engine.apply(event)
        except InvalidEvent:
            continue
    aggregate_seconds = time.perf_counter() - started

    customers = engine.customer_ids()
    samples = []
    for index in range(args.lookups):
        customer = customers[index % len(customers)]
        t0 = time.perf_counter()
        engine.get_all_features(customer, 30, now)
        samples.append(time.perf_counter() - t0)
    write_results(
        "core_engine",
        {
            "events": len(lines),
            "customers": len(customers),
            "baseline_bare_json_decode_events_per_s": round(len(lines) / bare),
            "decode_validate_events_per_s": round(len(lines) / decode_seconds),
            "aggregate_events_per_s": round(len(decoded) / aggregate_seconds),
            "decode_plus_aggregate_events_per_s": round(len(lines) / (decode_seconds + aggregate_seconds)),
            "decode_cost_vs_bare_json": round(decode_seconds / bare, 2),
            "feature_lookup_in_memory": percentiles(samples),
        },
    )


if __name__ == "__main__":
    main()
