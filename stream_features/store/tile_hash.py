"""Reading a customer's tiles hash back into tiles and profile metadata."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ..core import limits
from ..core.tiles import TileAggregate, decode_tile
from ..errors import StateUnreadable
from .hash_fields import decode_attribute
from .keys import ATTRIBUTE_FIELD_PREFIX, TILE_FIELD_PREFIX

FORMAT_VERSION_FIELD: Final = b"fv"
# The layout this release reads and writes; a hash without ``fv`` is in it (native/store.rs).
STORED_FORMAT_VERSION: Final = limits.STORED_FORMAT_VERSION.encode()


def decode_customer_hash(
    fields: Mapping[bytes, bytes], customer_id: str = "?"
) -> tuple[dict[int, TileAggregate], dict[str, Any]]:
    """A tiles hash (as HGETALL returns it) to tiles and profile metadata.

    Raises ``StateUnreadable`` for anything this release could not have written.
    """
    version = fields.get(FORMAT_VERSION_FIELD)
    if version is not None and version != STORED_FORMAT_VERSION:
        message = f"stored format version {version.decode(errors='replace')} (this release reads 1)"
        raise StateUnreadable(customer_id, message)
    tiles: dict[int, TileAggregate] = {}
    metadata: dict[str, Any] = {}
    for raw_field, raw_value in fields.items():
        try:
            field = raw_field.decode()
            if field.startswith(TILE_FIELD_PREFIX):
                tiles[int(field[2:])] = decode_tile(raw_value)
            elif field.startswith(ATTRIBUTE_FIELD_PREFIX):
                metadata[field[2:]] = decode_attribute(raw_value)[1]
        except (ValueError, struct.error, msgspec.DecodeError) as exc:
            shown = raw_field[:64].decode(errors="replace")
            raise StateUnreadable(customer_id, f"field {shown!r}: {type(exc).__name__}: {exc}") from None
    return tiles, metadata
