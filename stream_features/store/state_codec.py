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


class _Meta(msgspec.Struct):
    """The ``m`` field, encoded as a MessagePack map with these keys in this order (a Struct is
    faster to build and encode than the equivalent dict, and gives the same bytes)."""

    nt: int | None
    nts: float | None
    np: float
    tt: float
    o: dict[str, int]
    j: dict[str, list[int]]


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

    Few arguments on purpose (packing costs ~0.2 µs per argument and Redis a little more), and
    written straight into ``out``: this runs once per customer per batch.
    """
    state = stored.state
    header_at = len(out)
    out.append("")  # the header, once the list lengths are known
    meta = _Meta(
        state.newest_tile, state.newest_ts, state.next_prune_ts, stored.ttl_set_at, stored.offsets, stored.rejects
    )
    out.append(_meta_encoder.encode(meta))
    tiles = state.tiles
    for tile in changes.tiles:
        out += (f"t:{tile}", encode_tile(tiles[tile]))
    for key in changes.attributes:
        out += (f"a:{key}", encode_attribute(*state.attributes[key]))
    main_set = len(out) - header_at - 2
    out += [f"t:{tile}" for tile in changes.deleted_tiles]
    main_del = len(out) - header_at - 2 - main_set
    seen = state.seen_event_ids
    pack = _DOUBLE.pack
    for event_id in changes.event_ids:
        out += (f"e:{event_id}", pack(seen[event_id]))
    aux_set = len(out) - header_at - 2 - main_set - main_del
    out += [f"e:{event_id}" for event_id in changes.deleted_event_ids]
    aux_del = len(out) - header_at - 2 - main_set - main_del - aux_set
    out[header_at] = f"{stored.version} {1 if refresh_ttl else 0} {main_set} {main_del} {aux_set} {aux_del}"
