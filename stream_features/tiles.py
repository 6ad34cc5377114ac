"""Per-tile partial aggregates: mergeable counts, sums and maxima, finished into features at read time.

The binary form (``encode_tile``/``decode_tile``) is exactly what the Redis store keeps in one
hash field per tile (the writer encodes tiles with it), so the in-memory engine and Redis hold
identical state. See README "Redis key layout".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

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

    def add_session(self, duration_seconds: float, device: str) -> None:
        self.n += 1
        self.sc += 1
        self.sd = self.sd + duration_seconds
        self.devices[device] = self.devices.get(device, 0) + 1

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
_DEVICE_HEADS: dict[str, bytes] = {}  # device → uint16 length + UTF-8 name
_LAYOUTS: dict[int, struct.Struct] = {}  # mask → header + doubles (at most 2**13 masks)
_FLOAT_FIELDS = frozenset({"ps", "pt", "sd", "cav", "rs"})


def encode_tile(tile: TileAggregate) -> bytes:
    """The stored form (little-endian):

    ``uint16`` mask of present fields (bit i = ``SCALARS[i]``; zeros left out, ``pt`` only with a
    purchase), one ``float64`` per present field in that order, then per device in first-seen
    order ``uint16`` name length, UTF-8 name, ``uint32`` session count.

    >>> t = TileAggregate(); t.add_purchase(19.99, 7200.5)
    >>> encode_tile(t).hex()
    '0f00000000000000f03f000000000000f03f3d0ad7a370fd3340000000008020bc40'
    """
    # Unrolled on purpose: this runs once per changed tile on the consumer's hot path.
    mask = 0
    values: list[float] = []
    add = values.append
    if tile.n:
        mask |= 1
        add(tile.n)
    if tile.pc:
        mask |= 2
        add(tile.pc)
    if tile.ps:
        mask |= 4
        add(tile.ps)
    if tile.pc:  # pt is kept with any purchase, even one at time 0
        mask |= 8
        add(tile.pt)  # type: ignore[arg-type]
    if tile.sc:
        mask |= 16
        add(tile.sc)
    if tile.sd:
        mask |= 32
        add(tile.sd)
    if tile.cc:
        mask |= 64
        add(tile.cc)
    if tile.ca:
        mask |= 128
        add(tile.ca)
    if tile.cav:
        mask |= 256
        add(tile.cav)
    if tile.tc:
        mask |= 512
        add(tile.tc)
    if tile.rs:
        mask |= 1024
        add(tile.rs)
    if tile.rn:
        mask |= 2048
        add(tile.rn)
    if tile.te:
        mask |= 4096
        add(tile.te)
    layout = _LAYOUTS.get(mask)
    if layout is None:
        layout = _LAYOUTS[mask] = struct.Struct(f"<H{len(values)}d")
    if not tile.devices:
        return layout.pack(mask, *values)
    parts = [layout.pack(mask, *values)]
    for device, count in tile.devices.items():
        head = _DEVICE_HEADS.get(device)
        if head is None:
            name = device.encode()
            head = _DEVICE_HEADS[device] = _DEVICE_HEAD.pack(len(name)) + name
            if len(_DEVICE_HEADS) > 10_000:  # device names are few; bound it anyway
                _DEVICE_HEADS.clear()
        parts += (head, _DEVICE_COUNT.pack(count))
    return b"".join(parts)


def decode_tile(data: bytes) -> TileAggregate:
    """Inverse of ``encode_tile``."""
    tile = TileAggregate()
    (mask,) = _MASK.unpack_from(data)
    names = [name for bit, name in enumerate(SCALAR_FIELDS) if mask >> bit & 1]
    values = struct.unpack_from(f"<{len(names)}d", data, 2)
    for name, value in zip(names, values, strict=True):
        setattr(tile, name, value if name in _FLOAT_FIELDS else int(value))
    position = 2 + 8 * len(names)
    while position < len(data):
        (length,) = _DEVICE_HEAD.unpack_from(data, position)
        position += 2
        device = data[position : position + length].decode()
        position += length
        (tile.devices[device],) = _DEVICE_COUNT.unpack_from(data, position)
        position += 4
    return tile
