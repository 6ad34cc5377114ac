"""Reading a customer's tiles hash back into tiles and profile metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tiles import TileAggregate, decode_tile
from .keys import ATTRIBUTE_FIELD_PREFIX, TILE_FIELD_PREFIX
from .state_codec import decode_attribute


def decode_customer_hash(
    fields: Mapping[bytes, bytes],
) -> tuple[dict[int, TileAggregate], dict[str, Any]]:
    """A tiles hash (as HGETALL returns it) to tiles and profile metadata."""
    tiles: dict[int, TileAggregate] = {}
    metadata: dict[str, Any] = {}
    for raw_field, raw_value in fields.items():
        field = raw_field.decode()
        if field.startswith(TILE_FIELD_PREFIX):
            tiles[int(field[2:])] = decode_tile(raw_value)
        elif field.startswith(ATTRIBUTE_FIELD_PREFIX):
            metadata[field[2:]] = decode_attribute(raw_value)[1]
    return tiles, metadata
