"""A customer's two Redis hashes ⇄ ``CustomerState`` plus the consumer's bookkeeping.

Field layout (README "Redis key layout" is the written spec; tests pin the bytes):

tiles hash ``<prefix>:{<id>}``
  ``t:<tile>``      binary tile aggregates (``tiles.encode_tile``)
  ``a:<attribute>`` ``<event time> <JSON value>`` (newest event time wins)
bookkeeping hash ``<prefix>:{<id>}:x``
  ``v``             write version, the compare-and-set guard (decimal)
  ``m``             MessagePack map: ``nt`` newest tile, ``nts`` newest event time, ``np`` next
                    housekeeping time, ``tt`` last TTL refresh (wall clock), ``o`` {"<topic>:<partition>":
                    last applied offset}, ``j`` {"<topic>:<partition>": [recent too_late offsets]}
                    (the writer keeps both maps keyed the same way, so they are encoded as they are)
  ``e:<event_id>``  event time of a remembered id (8-byte little-endian double)
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
_json_encoder = msgspec.json.Encoder()
_meta_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder()
REJECT_MEMORY = 32


@dataclass(slots=True)
class StoredCustomer:
    """What the writer caches per customer: the state and the bookkeeping around it."""

    state: CustomerState
    version: int = 0
    offsets: dict[str, int] = field(default_factory=dict)  # "<topic>:<partition>" → last offset
    rejects: dict[str, list[int]] = field(default_factory=dict)  # same keys → recent too_late offsets
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
        if raw_field.startswith(b"e:"):
            state.seen_event_ids[raw_field[2:].decode("utf-8", "surrogatepass")] = _DOUBLE.unpack(raw)[0]
        elif raw_field == b"v":
            stored.version = int(raw)
        elif raw_field == b"m":
            meta = _meta_decoder.decode(raw)
            state.newest_tile, state.newest_ts, state.next_prune_ts = meta["nt"], meta["nts"], meta["np"]
            stored.ttl_set_at = meta["tt"]
            stored.offsets = meta["o"]
            stored.rejects = meta["j"]
    return stored


def write_arguments(stored: StoredCustomer, changes: Changes, *, refresh_ttl: bool, out: list[bytes | str]) -> None:
    """Append the compare-and-set arguments of one customer to ``out`` (layout: cas.lua).

    Few arguments on purpose: packing costs ~0.2 µs per argument and Redis a little more.
    """
    state = stored.state
    tiles = state.tiles
    main_set: list[bytes | str] = []
    for tile in changes.tiles:
        main_set += (f"t:{tile}", encode_tile(tiles[tile]))
    if changes.attributes:
        for key in changes.attributes:
            main_set += (f"a:{key}", encode_attribute(*state.attributes[key]))
    main_del = [f"t:{tile}" for tile in changes.deleted_tiles]
    meta = {
        "nt": state.newest_tile,
        "nts": state.newest_ts,
        "np": state.next_prune_ts,
        "tt": stored.ttl_set_at,
        "o": stored.offsets,
        "j": stored.rejects,
    }
    aux_set: list[bytes | str] = []
    seen = state.seen_event_ids
    pack = _DOUBLE.pack
    for event_id in changes.event_ids:
        aux_set += (f"e:{event_id}", pack(seen[event_id]))
    aux_del = [f"e:{event_id}" for event_id in changes.deleted_event_ids]
    refresh = 1 if refresh_ttl else 0
    out.append(f"{stored.version} {refresh} {len(main_set)} {len(main_del)} {len(aux_set)} {len(aux_del)}")
    out.append(_meta_encoder.encode(meta))
    out += main_set
    out += main_del
    out += aux_set
    out += aux_del
