"""Window arithmetic (SPEC §3) as pure functions: no clock, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import InvalidQuery
from .settings import EngineSettings
from .tiles import TileAggregate, tile_of

DEFAULT_WINDOW_DAYS = 30


def validate_days(days: object, settings: EngineSettings) -> int:
    """A window length in whole days, ``1 ≤ days ≤ retention_days``; None means 30."""
    if days is None:
        return DEFAULT_WINDOW_DAYS
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidQuery("days must be a whole number")
    if not 1 <= days <= settings.retention_days:
        raise InvalidQuery(f"days must be between 1 and {settings.retention_days}")
    return days


def window_bounds(as_of: float, days: int, settings: EngineSettings) -> tuple[int, int]:
    """Tiles ``k`` of a ``days`` window at ``as_of`` satisfy ``low < k <= high``.

    >>> window_bounds(7200.0, 1, EngineSettings())
    (-22, 2)
    """
    high = tile_of(as_of, settings.tile_seconds)
    return high - days * settings.tiles_per_day, high


@dataclass(slots=True)
class WindowTotals:
    """Partial aggregates of all tiles in one window, summed in ascending tile order."""

    events: int = 0
    purchases: int = 0
    purchase_value: float = 0.0
    sessions: int = 0
    session_seconds: float = 0.0
    converted_carts: int = 0
    abandoned_carts: int = 0
    abandoned_value: float = 0.0
    tickets: int = 0
    response_hours: float = 0.0
    answered_tickets: int = 0
    escalations: int = 0
    devices: dict[str, int] = field(default_factory=dict)

    def add(self, tile: TileAggregate) -> None:
        self.events += tile.n
        self.purchases += tile.pc
        self.purchase_value += tile.ps
        self.sessions += tile.sc
        self.session_seconds += tile.sd
        self.converted_carts += tile.cc
        self.abandoned_carts += tile.ca
        self.abandoned_value += tile.cav
        self.tickets += tile.tc
        self.response_hours += tile.rs
        self.answered_tickets += tile.rn
        self.escalations += tile.te
        for device, count in tile.devices.items():
            self.devices[device] = self.devices.get(device, 0) + count


@dataclass(frozen=True, slots=True)
class VisibleTiles:
    """A customer's tiles within retention, in ascending order, ready for window sums."""

    ordered: list[tuple[int, TileAggregate]]

    @classmethod
    def of(cls, tiles: Mapping[int, TileAggregate], settings: EngineSettings) -> VisibleTiles:
        if not tiles:
            return cls([])
        # Tiles past retention may still be stored until housekeeping deletes them: hide them
        # so every backend answers the same whatever its pruning schedule.
        oldest_visible = max(tiles) - settings.retention_tiles
        return cls(sorted((k, t) for k, t in tiles.items() if k > oldest_visible))

    def in_range(self, low: int, high: int) -> Iterable[tuple[int, TileAggregate]]:
        return ((k, t) for k, t in self.ordered if low < k <= high)

    def totals(self, low: int, high: int) -> WindowTotals:
        totals = WindowTotals()
        for _, tile in self.in_range(low, high):
            totals.add(tile)
        return totals

    def last_purchase_ts(self, low: int, high: int) -> float | None:
        latest: float | None = None
        for _, tile in self.in_range(low, high):
            if tile.pc and tile.pt is not None and (latest is None or tile.pt > latest):
                latest = tile.pt
        return latest
