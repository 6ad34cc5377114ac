"""One customer's state and the in-order rules that change it (SPEC §3, §5).

This is the reference semantics. The Redis store's Lua script (``store/apply.lua``) performs the
same steps in the same order, and the shared contract tests hold both to it:

1. ``too_late``: an event whose tile is at or before ``newest_tile - retention_tiles`` (newest
   among events applied before it) is invalid.
2. duplicates: an ``event_id`` already seen for this customer is dropped while the earlier event's
   time is within ``dedup_horizon`` of the customer's newest event time.
3. the event is added to its tile; newest time and tile move forward; tiles and remembered ids
   that fell out of retention or horizon no longer count (and are deleted now and then).
4. profile attributes merge key by key, newest event time wins (ties: the later record).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import InvalidEvent
from .events import CartEvent, Event, ProfileEvent, PurchaseEvent, SessionEvent, SupportEvent
from .settings import EngineSettings
from .tiles import TileAggregate, tile_of

PRUNE_INTERVAL_SECONDS = 3600.0


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"


@dataclass(slots=True)
class CustomerState:
    tiles: dict[int, TileAggregate] = field(default_factory=dict)
    newest_ts: float | None = None
    newest_tile: int | None = None
    seen_event_ids: dict[str, float] = field(default_factory=dict)
    attributes: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _next_prune_ts: float = float("-inf")

    def apply(self, event: Event, settings: EngineSettings) -> Outcome:
        """Apply one valid event in stream order. Raises ``InvalidEvent('too_late')``."""
        tile_index = tile_of(event.timestamp, settings.tile_seconds)
        if self.newest_tile is not None and tile_index <= self.newest_tile - settings.retention_tiles:
            raise InvalidEvent("too_late", "event is older than the customer's retention", event)
        if event.event_id is not None:
            seen_at = self.seen_event_ids.get(event.event_id)
            if seen_at is not None and self._within_horizon(seen_at, settings):
                return Outcome.DUPLICATE
            self.seen_event_ids[event.event_id] = event.timestamp
        tile = self.tiles.get(tile_index)
        if tile is None:
            tile = self.tiles[tile_index] = TileAggregate()
        _add_to_tile(tile, event)
        if isinstance(event, ProfileEvent):
            self._merge_attributes(event)
        self._advance(event.timestamp, tile_index, settings)
        return Outcome.APPLIED

    def _within_horizon(self, seen_at: float, settings: EngineSettings) -> bool:
        return self.newest_ts is None or seen_at >= self.newest_ts - settings.dedup_horizon_seconds

    def _merge_attributes(self, event: ProfileEvent) -> None:
        for key, value in event.attributes.items():
            current = self.attributes.get(key)
            if current is None or event.timestamp >= current[0]:
                self.attributes[key] = (event.timestamp, value)

    def _advance(self, timestamp: float, tile_index: int, settings: EngineSettings) -> None:
        if self.newest_ts is None or timestamp > self.newest_ts:
            self.newest_ts = timestamp
        if self.newest_tile is None or tile_index > self.newest_tile:
            self.newest_tile = tile_index
        # Expired ids and tiles are already invisible (see _within_horizon and the readers'
        # retention filter); deleting them is only housekeeping, so do it once an hour of event time.
        if timestamp >= self._next_prune_ts:
            self._next_prune_ts = timestamp + PRUNE_INTERVAL_SECONDS
            self.prune(settings)

    def prune(self, settings: EngineSettings) -> None:
        """Forget remembered ids past the dedup horizon and tiles past retention."""
        if self.newest_ts is not None:
            horizon_floor = self.newest_ts - settings.dedup_horizon_seconds
            for event_id in [k for k, ts in self.seen_event_ids.items() if ts < horizon_floor]:
                del self.seen_event_ids[event_id]
        if self.newest_tile is not None:
            oldest_kept = self.newest_tile - settings.retention_tiles
            for old in [k for k in self.tiles if k <= oldest_kept]:
                del self.tiles[old]

    def metadata(self) -> dict[str, Any]:
        return {key: value for key, (_, value) in self.attributes.items()}


def _add_to_tile(tile: TileAggregate, event: Event) -> None:
    if isinstance(event, PurchaseEvent):
        tile.add_purchase(event.amount, event.timestamp)
    elif isinstance(event, SessionEvent):
        tile.add_session(event.duration_seconds, event.device)
    elif isinstance(event, CartEvent):
        tile.add_cart(event.converted, event.value)
    elif isinstance(event, SupportEvent):
        tile.add_support(event.response_time_hours, event.escalated)
    else:
        tile.add_profile()
