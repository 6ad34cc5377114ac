"""One customer's state and the in-order rules that change it (SPEC §3, §5).

This is the reference implementation of the rules: the in-memory engine keeps these objects. The
consumer's writer runs the same rules in Rust (``native/state.rs``) on states loaded from Redis;
the store contract tests hold the two to the same outcomes and features, event for event. The
rules, per event in stream order:

1. ``too_late``: an event whose tile is at or before ``newest_tile - retention_tiles`` (newest
   among events applied before it) is invalid.
2. duplicates: an ``event_id`` already seen for this customer is dropped while the earlier event's
   time is within ``dedup_horizon`` of the customer's newest event time.
3. the event is added to its tile; newest time and tile move forward; tiles and remembered ids
   that fell out of retention or horizon no longer count (and are deleted now and then).
4. profile attributes merge key by key, newest event time wins (ties: the later record).
5. bounded state (caps in ``EngineSettings``): a tile counts at most ``max_devices_per_tile``
   named devices, later new ones as ``"other"``; at most ``max_attributes`` attributes, a new key
   past the cap evicts the oldest by (event time, key), which may be itself; remembered ids are
   swept when the map outgrows ``_ids_sweep_at`` (at most the cap plus an eighth): ids past the
   horizon go, then the oldest by (event time, id) down to ``max_event_ids``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .events import CartEvent, Event, ProfileEvent, PurchaseEvent, SessionEvent, SupportEvent
from .limits import IDS_SWEEP_MINIMUM, PRUNE_INTERVAL_SECONDS
from .settings import EngineSettings
from .tiles import TileAggregate, tile_of


class Outcome(Enum):
    """What the rules did with one event: one vocabulary for this module, the writer and the Rust
    core, which records one letter per event (``code``; ``_native.OUTCOME_CODES``, held equal
    by ``tests/test_native.py``). The last two only arise when a batch is delivered again."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"  # older than the customer's retention: invalid (SPEC §3), dead-lettered
    REDELIVERED = "redelivered"  # applied by an earlier delivery of the same record: skipped
    REDELIVERED_TOO_LATE = "redelivered_too_late"  # judged too_late by an earlier delivery

    @property
    def code(self) -> str:
        return _CODES[self]

    @classmethod
    def of_code(cls, code: str) -> Outcome:
        return _OUTCOME_OF_CODE[code]


_CODES = {
    Outcome.APPLIED: "a",
    Outcome.DUPLICATE: "d",
    Outcome.TOO_LATE: "l",
    Outcome.REDELIVERED: "s",
    Outcome.REDELIVERED_TOO_LATE: "L",
}
_OUTCOME_OF_CODE = {code: outcome for outcome, code in _CODES.items()}
TOO_LATE_MESSAGE = "event is older than the customer's retention"  # the dead letter's message


class Cap(Enum):
    """A bounded-state cap an event ran into (counted in ``CustomerState.cap_hits``)."""

    DEVICES_PER_TILE = "devices_per_tile"
    ATTRIBUTES = "attributes"
    EVENT_IDS = "event_ids"


@dataclass(slots=True)
class CustomerState:
    tiles: dict[int, TileAggregate] = field(default_factory=dict)
    newest_ts: float | None = None
    newest_tile: int | None = None
    seen_event_ids: dict[str, float] = field(default_factory=dict)
    attributes: dict[str, tuple[float, Any]] = field(default_factory=dict)
    next_prune_ts: float = float("-inf")
    _tile_floor: int | None = None  # lower bound of min(tiles); None = unknown
    _ids_sweep_at: int = IDS_SWEEP_MINIMUM  # sweep remembered ids once there are more than this
    cap_hits: dict[Cap, int] = field(default_factory=dict)

    def apply(self, event: Event, settings: EngineSettings) -> Outcome:
        """Apply one valid event in stream order: APPLIED, DUPLICATE or TOO_LATE (nothing changed).

        Runs once per event in the in-memory engine: attribute reads are kept in locals.
        """
        timestamp = event.timestamp
        tile_index = tile_of(timestamp, settings.tile_seconds)
        newest_tile = self.newest_tile
        if newest_tile is not None and tile_index <= newest_tile - settings.retention_tiles:
            return Outcome.TOO_LATE
        event_id = event.event_id
        if event_id is not None:
            seen_at = self.seen_event_ids.get(event_id)
            if seen_at is not None and self._within_horizon(seen_at, settings):
                return Outcome.DUPLICATE
            self.seen_event_ids[event_id] = timestamp
        tile = self.tiles.get(tile_index)
        if tile is None:
            tile = self.tiles[tile_index] = TileAggregate()
            if self._tile_floor is not None and tile_index < self._tile_floor:
                self._tile_floor = tile_index
        if not _add_to_tile(tile, event, settings):
            self._hit(Cap.DEVICES_PER_TILE)
        if isinstance(event, ProfileEvent):
            self._merge_attributes(event, settings)
        # Newest time and tile move forward. Expired ids and tiles are already invisible (see
        # _within_horizon and the readers' retention filter): deleting them is housekeeping. Ids
        # go when the map has doubled since the last sweep (amortised O(1) per event); tiles are
        # checked once a day of event time.
        if self.newest_ts is None or timestamp > self.newest_ts:
            self.newest_ts = timestamp
        if newest_tile is None or tile_index > newest_tile:
            self.newest_tile = newest_tile = tile_index
        cap = settings.max_event_ids
        if len(self.seen_event_ids) > min(self._ids_sweep_at, cap + cap // 8):
            self._sweep_ids(settings)
        if timestamp >= self.next_prune_ts:
            self.next_prune_ts = timestamp + PRUNE_INTERVAL_SECONDS
            floor = self._tile_floor  # checked here: sparse customers reach this on most events
            slack = settings.tiles_per_day
            if floor is None or floor <= newest_tile - settings.retention_tiles - slack:
                self._sweep_tiles(settings, slack_tiles=slack)
        return Outcome.APPLIED

    def _within_horizon(self, seen_at: float, settings: EngineSettings) -> bool:
        return self.newest_ts is None or seen_at >= self.newest_ts - settings.dedup_horizon_seconds

    def _hit(self, cap: Cap, count: int = 1) -> None:
        self.cap_hits[cap] = self.cap_hits.get(cap, 0) + count

    def _merge_attributes(self, event: ProfileEvent, settings: EngineSettings) -> None:
        at = event.timestamp
        attributes = self.attributes
        for key, value in event.attributes.items():
            current = attributes.get(key)
            if current is not None:
                if at >= current[0]:
                    attributes[key] = (at, value)
                continue
            if len(attributes) >= settings.max_attributes:
                self._hit(Cap.ATTRIBUTES)
                oldest = min(attributes, key=lambda name: (attributes[name][0], name))
                if (attributes[oldest][0], oldest) > (at, key):
                    continue  # the new attribute is the oldest: it is the one left out
                del attributes[oldest]
            attributes[key] = (at, value)

    def prune(self, settings: EngineSettings) -> None:
        """Forget every remembered id past the dedup horizon and every tile past retention."""
        self._sweep_ids(settings)
        self._sweep_tiles(settings, slack_tiles=0)

    def _sweep_ids(self, settings: EngineSettings) -> None:
        seen = self.seen_event_ids
        if self.newest_ts is not None:
            horizon_floor = self.newest_ts - settings.dedup_horizon_seconds
            for event_id in [k for k, ts in seen.items() if ts < horizon_floor]:
                del seen[event_id]
        cap = settings.max_event_ids
        if len(seen) > cap:
            excess = len(seen) - cap
            self._hit(Cap.EVENT_IDS, excess)
            for _, event_id in sorted((ts, k) for k, ts in seen.items())[:excess]:
                del seen[event_id]
        self._ids_sweep_at = min(max(IDS_SWEEP_MINIMUM, 2 * len(seen)), cap + cap // 8)

    def _sweep_tiles(self, settings: EngineSettings, *, slack_tiles: int) -> None:
        """Delete tiles past retention, once a cached lower bound shows some are (plus slack)."""
        if self.newest_tile is None or not self.tiles:
            return
        oldest_kept = self.newest_tile - settings.retention_tiles
        if self._tile_floor is None:
            self._tile_floor = min(self.tiles)
        if self._tile_floor > oldest_kept - slack_tiles:
            return
        for old in [k for k in self.tiles if k <= oldest_kept]:
            del self.tiles[old]
        self._tile_floor = min(self.tiles, default=None)

    def metadata(self) -> dict[str, Any]:
        return {key: value for key, (_, value) in self.attributes.items()}


def _add_to_tile(tile: TileAggregate, event: Event, settings: EngineSettings) -> bool:
    """Add the event; False when a session's device went to the ``other`` bucket."""
    if isinstance(event, PurchaseEvent):
        tile.add_purchase(event.amount, event.timestamp)
    elif isinstance(event, SessionEvent):
        return tile.add_session(event.duration_seconds, event.device, settings.max_devices_per_tile)
    elif isinstance(event, CartEvent):
        tile.add_cart(event.converted, event.value)
    elif isinstance(event, SupportEvent):
        tile.add_support(event.response_time_hours, event.escalated)
    else:
        tile.add_profile()
    return True
