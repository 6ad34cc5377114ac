"""The consumer's CPU path without I/O: records → events → per-customer compare-and-set calls.

Ours: ``ingest.decode.decode_batch`` + ``StateWriter.prepare`` (Rust core, Python fallback for odd records).
Baseline in the same run: the Python reference doing the rule work per event
(``decode_event`` + ``CustomerState.apply``, without building any write), which is most of what
the consumer ran per event before the core.
Both start from empty states (as if every customer were new to Redis) and process the same
records in batches; CPU seconds are process time, so other load on the machine matters less.

    python3 -m bench.write_path --events 300000 --customers 30000
"""

from __future__ import annotations

import argparse
import gc
import time

import redis
from confluent_kafka import Message

from stream_features import EngineSettings, InvalidEvent, decode_event
from stream_features.core.customer_state import CustomerState
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.consumer import THROUGHPUT_GC_THRESHOLDS
from stream_features.ingest.decode import decode_batch
from stream_features.store.writer import StateWriter

from .common import write_results


def run_native(records: list[Message], batch_size: int, now: float) -> float:
    # No Redis I/O happens here: states are seeded empty, and execute() is never called.
    writer = StateWriter(redis.Redis(), EngineSettings(), topic="bench", clock=lambda: now)
    core = writer._core
    started = time.process_time()
    for start in range(0, len(records), batch_size):
        batch, _ = decode_batch(records[start : start + batch_size], now=now, max_future_skew_seconds=86400.0)
        for customer in core.missing(batch):
            core.load(customer, [], [])
        prepared = core.prepare(batch, None, now)
        prepared.packed("0" * 40)
    return time.process_time() - started


def run_reference(records: list[Message], batch_size: int, now: float) -> float:
    settings = EngineSettings()
    states: dict[str, CustomerState] = {}
    started = time.process_time()
    for start in range(0, len(records), batch_size):
        for record in records[start : start + batch_size]:
            try:
                event = decode_event(record.value(), now=now)
            except InvalidEvent:
                continue
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState()
            try:
                state.apply(event, settings)
            except InvalidEvent:
                continue
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--customers", type=int, default=30_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()
    now = time.time()
    options = GeneratorOptions(customers=args.customers, events=args.events, start=now - 120 * 86400, end=now - 60)
    records = [
        Message(value=line, partition=index % 4, offset=index // 4)
        for index, line in enumerate(generate_events(options))
    ]
    gc.set_threshold(*THROUGHPUT_GC_THRESHOLDS)  # as the consumer runs, for both
    native = run_native(records, args.batch_size, now)
    reference = run_reference(records, args.batch_size, now)
    write_results(
        "write_path",
        {
            "events": len(records),
            "customers": args.customers,
            "batch_size": args.batch_size,
            "native_cpu_us_per_event": round(native / len(records) * 1e6, 3),
            "python_reference_cpu_us_per_event": round(reference / len(records) * 1e6, 3),
            "speedup_vs_python_reference": round(reference / native, 1),
        },
    )


if __name__ == "__main__":
    main()
