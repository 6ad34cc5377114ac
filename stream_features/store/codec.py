"""Turning typed events into the Lua script's arguments, and stored hashes back into tiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..events import CartEvent, Event, ProfileEvent, PurchaseEvent, SessionEvent, SupportEvent
from ..tiles import TileAggregate, decode_tile, encode_device, tile_of
from .keys import ATTRIBUTE_FIELD_PREFIX, TILE_FIELD_PREFIX

ARGS_PER_EVENT = 9
_json = msgspec.json.Encoder()


def _num(value: float | None) -> str:
    # repr() is the shortest text that reads back to the same double, so Lua adds the same value.
    return "" if value is None else repr(value)


def _packed_attributes(attributes: Mapping[str, Any]) -> str:
    parts = []
    for key, value in attributes.items():
        encoded = _json.encode(value).decode()
        parts.append(f"{len(key.encode())}:{key}{len(encoded.encode())}:{encoded}")
    return "".join(parts)


def event_args(event: Event, offset_field: str, offset: int, tile_seconds: int) -> list[str | int]:
    """The nine script arguments of one event (see the header of apply.lua)."""
    head: list[str | int] = [
        offset_field,
        offset,
        repr(event.timestamp),
        tile_of(event.timestamp, tile_seconds),
        event.event_id or "",
    ]
    if isinstance(event, PurchaseEvent):
        return [*head, "P", _num(event.amount), "", ""]
    if isinstance(event, SessionEvent):
        return [*head, "S", _num(event.duration_seconds), encode_device(event.device), ""]
    if isinstance(event, CartEvent):
        return [*head, "C", "1" if event.converted else "0", _num(event.value), ""]
    if isinstance(event, SupportEvent):
        return [*head, "T", _num(event.response_time_hours), "1" if event.escalated else "0", ""]
    if isinstance(event, ProfileEvent):
        return [*head, "A", _packed_attributes(event.attributes), "", ""]
    raise TypeError(f"not an event: {event!r}")


def decode_customer_hash(
    fields: Mapping[bytes, bytes],
) -> tuple[dict[int, TileAggregate], dict[str, Any]]:
    """A tiles hash (as HGETALL returns it) to tiles and profile metadata."""
    tiles: dict[int, TileAggregate] = {}
    metadata: dict[str, Any] = {}
    for raw_field, raw_value in fields.items():
        field = raw_field.decode()
        if field.startswith(TILE_FIELD_PREFIX):
            tiles[int(field[2:])] = decode_tile(raw_value.decode())
        elif field.startswith(ATTRIBUTE_FIELD_PREFIX):
            _, _, encoded = raw_value.partition(b" ")
            metadata[field[2:]] = msgspec.json.decode(encoded)
    return tiles, metadata
