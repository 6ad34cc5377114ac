"""A customer's two Redis hashes: their field names and the profile-attribute codec.

The layout is specified once, in the README ("Redis key layout"); ``tests/test_store_contract.py``
pins its bytes. The consumer's writer (Rust, ``native/store.rs``) reads and writes all of it;
readers only need the tiles hash (``tile_hash.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec

_json_encoder = msgspec.json.Encoder()


def encode_attribute(timestamp: float, value: Any) -> bytes:
    """``repr`` of the event time (shortest round trip), a space, the value as JSON."""
    return repr(timestamp).encode() + b" " + _json_encoder.encode(value)


def decode_attribute(raw: bytes) -> tuple[float, Any]:
    stamp, _, encoded = raw.partition(b" ")
    return float(stamp), msgspec.json.decode(encoded)
