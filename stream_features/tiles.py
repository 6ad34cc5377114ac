"""Per-tile partial aggregates: mergeable counts, sums and maxima, finished into features at read time.

The packed text form (``encode_tile``/``decode_tile``) is exactly what the Redis store keeps in
one hash field per tile; ``stream_features/store/apply.lua`` writes the same bytes, so the two
backends hold identical state. See README "Redis key layout".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

# Scalar fields in their fixed serialisation order; zeros are left out of the packed form.
SCALAR_FIELDS = ("n", "pc", "ps", "pt", "sc", "sd", "cc", "ca", "cav", "tc", "rs", "rn", "te")
DEVICE_PREFIX = "d:"


def tile_of(timestamp: float, tile_seconds: int) -> int:
    """The tile holding a Unix timestamp: ``floor(ts / T)`` (exact for floats, unlike ``/``)."""
    return int(timestamp // tile_seconds)


def format_number(value: float) -> str:
    """Shortest of %.15g/%.16g/%.17g that reads back to the same double (Lua writes the same)."""
    for precision in (15, 16):
        text = f"{value:.{precision}g}"
        if float(text) == value:
            return text
    return f"{value:.17g}"


def encode_device(device: str) -> str:
    """Device names may hold any character; percent-encoding keeps ' ' and '=' out of the tokens."""
    return quote(device, safe="")


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


def encode_tile(tile: TileAggregate) -> str:
    """The packed form: ``key=value`` tokens joined by spaces, zeros left out.

    >>> t = TileAggregate(); t.add_purchase(19.99, 1700000000.5); t.add_session(60, "web")
    >>> encode_tile(t)
    'n=2 pc=1 ps=19.99 pt=1700000000.5 sc=1 sd=60 d:web=1'
    """
    tokens = []
    for name in SCALAR_FIELDS:
        value = getattr(tile, name)
        if name == "pt":
            if tile.pc:
                tokens.append(f"pt={format_number(value)}")
        elif value:
            tokens.append(f"{name}={format_number(value)}")
    for device, count in tile.devices.items():
        tokens.append(f"{DEVICE_PREFIX}{encode_device(device)}={count}")
    return " ".join(tokens)


_INT_FIELDS = frozenset({"n", "pc", "sc", "cc", "ca", "tc", "rn", "te"})


def decode_tile(text: str) -> TileAggregate:
    """Inverse of ``encode_tile``; unknown keys are ignored so newer writers stay readable."""
    tile = TileAggregate()
    for token in text.split():
        name, _, raw = token.partition("=")
        if name.startswith(DEVICE_PREFIX):
            tile.devices[unquote(name[len(DEVICE_PREFIX) :])] = int(float(raw))
        elif name in _INT_FIELDS:
            setattr(tile, name, int(float(raw)))
        elif name in ("ps", "pt", "sd", "cav", "rs"):
            setattr(tile, name, float(raw))
    return tile
