"""Coverage-guided fuzzing (atheris) of event decoding: Python's validator and the Rust fast path.

For any bytes, ``decode_event`` returns an event or raises ``InvalidEvent`` with a reason other
than ``internal_error``, and the consumer's batch decoding (Rust fast path, then Python) gives
the same answer. Anything else is a crash, which atheris reports with the input that caused it.

Run (bounded, as CI does; new inputs go to the first folder, the seeds stay read-only):
    python tests/fuzz/fuzz_decode.py -max_total_time=60 OUT_DIR tests/fuzz/corpus
"""

from __future__ import annotations

import sys

import atheris
from confluent_kafka import Message

with atheris.instrument_imports():
    from stream_features.core.events import decode_event
    from stream_features.errors import InvalidEvent
    from stream_features.ingest.decode import decode_batch

NOW = 1_795_600_000.0


def test_one_input(data: bytes) -> None:
    try:
        event = decode_event(data, now=NOW)
        expected = (event.customer_id, None)
    except InvalidEvent as exc:
        if exc.reason == "internal_error":
            raise AssertionError(f"internal_error: {exc.message}") from None
        expected = (None, exc.reason)
    batch, invalid = decode_batch([Message(value=data, partition=0, offset=0)], now=NOW, max_future_skew_seconds=86400)
    decoded = batch.event(0)
    got = (decoded[1] if decoded else None, invalid[0][1].reason if invalid else None)
    if got != expected:
        raise AssertionError(f"batch decoding gave {got}, decode_event {expected}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
