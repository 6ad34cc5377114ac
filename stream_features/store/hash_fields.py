"""A customer's two Redis hashes: the field layout, and the profile-attribute codec.

Field layout (README "Redis key layout" is the written spec; tests pin the bytes). The
consumer's writer (Rust, ``native/store.rs``) reads and writes all of it; readers only need
the tiles hash.

tiles hash ``<prefix>:{<id>}``
  ``t:<tile>``      binary tile aggregates (``tiles.encode_tile``)
  ``a:<attribute>`` ``<event time> <JSON value>`` (newest event time wins; ``encode_attribute``)
bookkeeping hash ``<prefix>:{<id>}:x``
  ``v``             write version, the compare-and-set guard (decimal)
  ``m``             MessagePack map: ``nt`` newest tile, ``nts`` newest event time, ``np`` next
                    housekeeping time, ``tt`` last TTL refresh (wall clock), ``o`` {"<topic>:<partition>":
                    last applied offset}, ``j`` {"<topic>:<partition>": [recent too_late offsets]}
  ``e:<event_id>``  event time of a remembered id (8-byte little-endian double)
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
