"""Per-tile partial aggregates: mergeable counts, sums and maxima, finished into features at read time.

The binary form (``encode_tile``/``decode_tile``) is exactly what the Redis store keeps in one
hash field per tile (README "Redis key layout"); readers decode it here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from .limits import OTHER_DEVICE

# Scalar fields in their fixed serialisation order (bit i of the stored mask); zeros are left out.
SCALAR_FIELDS = ("n", "pc", "ps", "pt", "sc", "sd", "cc", "ca", "cav", "tc", "rs", "rn", "te")


def tile_of(timestamp: float, tile_seconds: int) -> int:
    """The tile holding a Unix timestamp: ``floor(ts / T)`` (exact for floats, unlike ``/``)."""
    return int(timestamp // tile_seconds)


@dataclass(slots=True)
class TileAggregate:
    """Partial aggregates of one customer's events in one tile. Field names match the packed keys."""

    n: int = 0  # valid events of any type (profile included): drives has_history
    pc: int = 0  # purchases
    ps: float = 0.0  # Σ amount
    pt: float | None = None  # latest purchase timestamp
    sc: int = 0  # sessions
    sd: float = 0.0  # Σ duration_seconds
    cc: int = 0  # converted carts
    ca: int = 0  # abandoned carts
    cav: float = 0.0  # Σ value of abandoned carts with a value
    tc: int = 0  # support tickets
    rs: float = 0.0  # Σ response_time_hours of answered tickets
    rn: int = 0  # answered tickets
    te: int = 0  # escalated tickets
    devices: dict[str, int] = field(default_factory=dict)  # sessions per device, first-seen order

    def add_purchase(self, amount: float, timestamp: float) -> None:
        self.n += 1
        self.pc += 1
        self.ps = self.ps + amount
        if self.pt is None or timestamp > self.pt:
            self.pt = timestamp

    def add_session(self, duration_seconds: float, device: str, max_devices: int = 16) -> bool:
        """Count a session; a device new to a tile that has ``max_devices`` already counts as
        ``OTHER_DEVICE`` (returns False then)."""
        self.n += 1
        self.sc += 1
        self.sd = self.sd + duration_seconds
        devices = self.devices
        if device in devices or len(devices) < max_devices:
            devices[device] = devices.get(device, 0) + 1
            return True
        devices[OTHER_DEVICE] = devices.get(OTHER_DEVICE, 0) + 1
        return False

    def add_cart(self, converted: bool, value: float | None) -> None:
        self.n += 1
        if converted:
            self.cc += 1
        else:
            self.ca += 1
            if value is not None:
                self.cav = self.cav + value

    def add_support(self, response_time_hours: float | None, escalated: bool) -> None:
        self.n += 1
        self.tc += 1
        if response_time_hours is not None:
            self.rs = self.rs + response_time_hours
            self.rn += 1
        if escalated:
            self.te += 1

    def add_profile(self) -> None:
        self.n += 1


_MASK = struct.Struct("<H")
_DEVICE_HEAD = struct.Struct("<H")
_DEVICE_COUNT = struct.Struct("<I")
_DOUBLES = [struct.Struct(f"<{count}d") for count in range(len(SCALAR_FIELDS) + 1)]
_FLOAT_FIELDS = frozenset({"ps", "pt", "sd", "cav", "rs"})


def encode_tile(tile: TileAggregate) -> bytes:
    """The stored bytes of a tile (README "Redis key layout", ``t:<tile>``); the consumer's Rust
    core (``native/tiles.rs``) writes the same bytes, and the store contract tests compare the two.

    >>> t = TileAggregate(); t.add_purchase(19.99, 7200.5)
    >>> encode_tile(t).hex()
    '0f00000000000000f03f000000000000f03f3d0ad7a370fd3340000000008020bc40'
    """
    present = (
        tile.n,
        tile.pc,
        tile.ps,
        tile.pt if tile.pc else 0,
        tile.sc,
        tile.sd,
        tile.cc,
        tile.ca,
        tile.cav,
        tile.tc,
        tile.rs,
        tile.rn,
        tile.te,
    )
    mask = 0
    values: list[float] = []
    for bit, value in enumerate(present):
        if value or (bit == 3 and tile.pc):  # pt is kept with any purchase, even one at time 0
            mask |= 1 << bit
            values.append(value)  # type: ignore[arg-type]
    parts = [_MASK.pack(mask), _DOUBLES[len(values)].pack(*values)]
    for device, count in tile.devices.items():
        name = device.encode()
        parts.append(_DEVICE_HEAD.pack(len(name)) + name + _DEVICE_COUNT.pack(count))
    return b"".join(parts)


def decode_tile(data: bytes) -> TileAggregate:
    """Inverse of ``encode_tile``. Raises ``ValueError`` (or ``struct.error``) for bytes it could
    not have written: short data, non-finite numbers, counts that are not whole numbers.
    """
    tile = TileAggregate()
    (mask,) = _MASK.unpack_from(data)
    names = [name for bit, name in enumerate(SCALAR_FIELDS) if mask >> bit & 1]
    values = struct.unpack_from(f"<{len(names)}d", data, 2)
    for name, value in zip(names, values, strict=True):
        if not math.isfinite(value) or (name not in _FLOAT_FIELDS and (value < 0 or value != int(value))):
            raise ValueError(f"tile field {name} holds {value!r}")
        setattr(tile, name, value if name in _FLOAT_FIELDS else int(value))
    position = 2 + 8 * len(names)
    while position < len(data):
        (length,) = _DEVICE_HEAD.unpack_from(data, position)
        position += 2
        if position + length > len(data):
            raise ValueError("tile device name runs past the end")
        device = data[position : position + length].decode()
        position += length
        (tile.devices[device],) = _DEVICE_COUNT.unpack_from(data, position)
        position += 4
    return tile
