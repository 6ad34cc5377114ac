"""A customer's two Redis hashes ⇄ ``CustomerState`` plus the consumer's bookkeeping.

Field layout (README "Redis key layout" is the written spec; tests pin the bytes):

tiles hash ``<prefix>:{<id>}``
  ``t:<tile>``      binary tile aggregates (``tiles.encode_tile``)
  ``a:<attribute>`` ``<event time> <JSON value>`` (newest event time wins)
bookkeeping hash ``<prefix>:{<id>}:x``
  ``v``             write version (compare-and-set)
  ``nt`` / ``nts``  newest tile / newest event time; ``np`` next housekeeping time
  ``o:<topic>:<partition>`` last applied offset; ``j:<topic>:<partition>`` recent too_late offsets
  ``e:<event_id>``  event time of a remembered id (8-byte little-endian double)
  ``tt``            wall-clock second the key TTL was last refreshed
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..customer_state import Changes, CustomerState
from ..tiles import decode_tile, encode_tile

_DOUBLE = struct.Struct("<d")
_HEAD = struct.Struct("<dB")
_LEN = struct.Struct("<I")
_json_encoder = msgspec.json.Encoder()
REJECT_MEMORY = 32


@dataclass(slots=True)
class StoredCustomer:
    """What the writer caches per customer: the state and the bookkeeping around it."""

    state: CustomerState
    version: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, list[int]] = field(default_factory=dict)
    ttl_set_at: float = float("-inf")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def encode_attribute(timestamp: float, value: Any) -> bytes:
    return repr(timestamp).encode() + b" " + _json_encoder.encode(value)


def decode_attribute(raw: bytes) -> tuple[float, Any]:
    stamp, _, encoded = raw.partition(b" ")
    return float(stamp), msgspec.json.decode(encoded)


def load_customer(main: Mapping[bytes, bytes], aux: Mapping[bytes, bytes]) -> StoredCustomer:
    """Rebuild a customer from HGETALL of both hashes (empty mappings: a new customer)."""
    state = CustomerState()
    for raw_field, raw in main.items():
        name = raw_field.decode("utf-8", "surrogatepass")
        if name.startswith("t:"):
            state.tiles[int(name[2:])] = decode_tile(raw)
        elif name.startswith("a:"):
            state.attributes[name[2:]] = decode_attribute(raw)
    stored = StoredCustomer(state)
    for raw_field, raw in aux.items():
        name = raw_field.decode("utf-8", "surrogatepass")
        if name.startswith("e:"):
            state.seen_event_ids[name[2:]] = _DOUBLE.unpack(raw)[0]
        elif name.startswith("o:"):
            stored.offsets[name] = int(raw)
        elif name.startswith("j:"):
            stored.rejects["o:" + name[2:]] = [int(x) for x in raw.split()]
        elif name == "v":
            stored.version = int(raw)
        elif name == "nt":
            state.newest_tile = int(raw)
        elif name == "nts":
            state.newest_ts = float(raw)
        elif name == "np":
            state.next_prune_ts = float(raw)
        elif name == "tt":
            stored.ttl_set_at = float(raw)
    return stored


def _section(items: list[bytes], per_item: int) -> bytes:
    pack = _LEN.pack
    return pack(len(items) // per_item) + b"".join([pack(len(item)) + item for item in items])


def write_payload(
    stored: StoredCustomer,
    changes: Changes,
    dirty_offsets: set[str],
    dirty_rejects: set[str],
    *,
    refresh_ttl_at: float | None,
) -> bytes:
    """The compare-and-set payload (see cas.lua) for everything ``changes`` and bookkeeping touched."""
    state = stored.state
    main_set: list[bytes] = []
    for tile in changes.tiles:
        main_set += [b"t:%d" % tile, encode_tile(state.tiles[tile])]
    for key in changes.attributes:
        main_set += [b"a:" + key.encode("utf-8", "surrogatepass"), encode_attribute(*state.attributes[key])]
    main_del = [b"t:%d" % tile for tile in changes.deleted_tiles]
    aux_set: list[bytes] = []
    if state.newest_tile is not None and state.newest_ts is not None:
        aux_set += [b"nt", b"%d" % state.newest_tile, b"nts", repr(state.newest_ts).encode()]
        aux_set += [b"np", repr(state.next_prune_ts).encode()]
    for name in dirty_offsets:
        aux_set += [name.encode(), b"%d" % stored.offsets[name]]
    for name in dirty_rejects:
        aux_set += [b"j:" + name[2:].encode(), " ".join(map(str, stored.rejects[name])).encode()]
    for event_id in changes.event_ids:
        aux_set += [b"e:" + event_id.encode("utf-8", "surrogatepass"), _DOUBLE.pack(state.seen_event_ids[event_id])]
    if refresh_ttl_at is not None:
        aux_set += [b"tt", b"%d" % refresh_ttl_at]
    aux_del = [b"e:" + event_id.encode("utf-8", "surrogatepass") for event_id in changes.deleted_event_ids]
    return b"".join(
        [
            _HEAD.pack(stored.version, refresh_ttl_at is not None),
            _section(main_set, 2),
            _section(main_del, 1),
            _section(aux_set, 2),
            _section(aux_del, 1),
        ]
    )
