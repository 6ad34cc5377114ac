"""Hostile records, as a producer with bugs or bad intent would send them.

Each kind is a family of byte strings; ``hostile_records`` mixes them deterministically for the
fuzz tests and the end-to-end poison-pill test. None of them is a valid event.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

NOW = 1_795_600_000.0  # 2026-11-26T09:46:40Z
VALID = {"type": "purchase", "customer_id": "victim", "timestamp": NOW - 3600, "amount": 10.0}


def _event(**changes: object) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def truncated(rng: random.Random) -> bytes:
    whole = _event(event_id=f"t{rng.randrange(10**6)}")
    return whole[: rng.randrange(1, len(whole) - 1)]


def random_bytes(rng: random.Random) -> bytes:
    return b"\x00" + rng.randbytes(rng.randrange(1, 300))  # a NUL first: never valid JSON


def deep_nesting(rng: random.Random) -> bytes:
    # Deeper than Python's decoder goes (~1,000): too_large wherever it sits. (Shallower nesting
    # in an unknown field is just an ignored field: tests/test_hostile_input.py checks that too.)
    depth = rng.choice([2000, 5000, 30000] if rng.random() < 0.1 else [2000])
    inner = rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
    where = rng.choice(["whole", "field", "attribute"])
    if where == "whole":
        return inner
    if where == "field":
        return _event()[:-1] + b', "extra": ' + inner + b"}"
    return b'{"type":"profile","customer_id":"p","timestamp":1795000000,"attributes":{"x":' + inner + b"}}"


def huge_numbers(rng: random.Random) -> bytes:
    digits = "9" * rng.choice([20, 400, 5000])
    field = rng.choice(["timestamp", "amount", "both"])
    text = _event().decode()
    if field in ("timestamp", "both"):
        text = text.replace(f'"timestamp": {VALID["timestamp"]}', f'"timestamp": {digits}')
    if field in ("amount", "both"):
        text = text.replace('"amount": 10.0', f'"amount": {rng.choice([digits, "1e400", "-1e400"])}')
    return text.encode()


def oversized(rng: random.Random) -> bytes:
    size = rng.choice([65 * 1024, 200 * 1024, 900 * 1024] if rng.random() < 0.05 else [65 * 1024])
    return _event(note="x" * size)


def bad_utf8(rng: random.Random) -> bytes:
    broken = rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
    return b'{"type":"purchase","customer_id":"' + broken + b'","timestamp":1795000000,"amount":1}'


def bad_fields(rng: random.Random) -> bytes:
    return rng.choice(
        [
            _event(amount=-1),
            _event(amount="10"),
            _event(amount=True),
            _event(timestamp="2026-11-26T10:00:00+01:99"),
            _event(timestamp="2026-11-26T10:00:00+24:00"),
            _event(timestamp=time.time() + 10 * 86400),
            _event(timestamp="yesterday"),
            _event(type="refund"),
            _event(customer_id=""),
            _event(customer_id="x" * 300),
            _event(event_id="e" * 200),
            b'{"type":"session","customer_id":"c","timestamp":1795000000,"duration_seconds":1,"device":"\\ud800"}',
            b"[]",
            b'"just a string"',
            b"",
            b"null",
        ]
    )


KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "truncated": truncated,
    "random_bytes": random_bytes,
    "deep_nesting": deep_nesting,
    "huge_numbers": huge_numbers,
    "oversized": oversized,
    "bad_utf8": bad_utf8,
    "bad_fields": bad_fields,
}


def hostile_records(count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` hostile records, (kind, bytes), every kind about equally often."""
    rng = random.Random(seed)
    names = sorted(KINDS)
    return [(name, KINDS[name](rng)) for name in (names[i % len(names)] for i in range(count))]
