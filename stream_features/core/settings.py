"""Engine settings and trade-off thresholds: frozen values, every default from the contract."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigurationError

SECONDS_PER_DAY = 86400


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every number of the trade-off indicators (SPEC §4), changeable without code."""

    short_window_days: int = 30
    long_window_days: int = 90
    high_activity_ratio: float = 1.5
    declining_ratio: float = 0.5
    support_short_tickets: int = 3
    support_long_tickets: int = 2
    support_long_escalation_ratio: float = 0.5
    cart_min_count: int = 2
    cart_low_conversion_ratio: float = 0.3
    recency_concern_days: float = 60.0

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Thresholds:
        """Build from a mapping (e.g. parsed JSON), rejecting unknown names and bad numbers."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigurationError(f"unknown threshold(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, raw in values.items():
            kind = int if known[name].type in ("int", int) else float
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ConfigurationError(f"threshold {name} must be a number")
            try:
                converted[name] = kind(raw)
            except ValueError:
                raise ConfigurationError(f"threshold {name} must be a number, got {raw!r}") from None
        return cls(**converted)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How events are tiled, kept and checked. Shared by the in-memory engine, consumer and reader."""

    tile_seconds: int = 3600
    retention_days: int = 400
    max_future_skew_seconds: float = 86400.0
    dedup_horizon_seconds: float = 7 * 86400.0
    # Bounded state (SPEC §5): past each cap the behaviour is fixed and counted (README "Bounded state").
    max_attributes: int = 100  # profile attributes per customer; the oldest (event time, key) is evicted
    max_devices_per_tile: int = 16  # named devices per tile; later new devices count as "other"
    max_event_ids: int = 10_000  # remembered event ids per customer; the oldest are forgotten
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Derived in __post_init__: the consumer reads them for every event.
    tiles_per_day: int = field(init=False, repr=False, compare=False)
    retention_tiles: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tile_seconds <= 0 or SECONDS_PER_DAY % self.tile_seconds:
            raise ConfigurationError("tile_seconds must be a positive divisor of 86400")
        if self.retention_days < 1:
            raise ConfigurationError("retention_days must be at least 1")
        if min(self.max_attributes, self.max_devices_per_tile, self.max_event_ids) < 1:
            raise ConfigurationError("max_attributes, max_devices_per_tile and max_event_ids must be at least 1")
        if self.max_future_skew_seconds < 0 or self.dedup_horizon_seconds < 0:
            raise ConfigurationError("max_future_skew_seconds and dedup_horizon_seconds must be >= 0")
        longest = max(self.thresholds.short_window_days, self.thresholds.long_window_days)
        if min(self.thresholds.short_window_days, self.thresholds.long_window_days) < 1:
            raise ConfigurationError("trade-off windows must be at least 1 day")
        if longest > self.retention_days:
            raise ConfigurationError("trade-off windows cannot exceed retention_days")
        object.__setattr__(self, "tiles_per_day", SECONDS_PER_DAY // self.tile_seconds)
        object.__setattr__(self, "retention_tiles", self.retention_days * self.tiles_per_day)
