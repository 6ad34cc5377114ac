"""``CustomerActivityFeatures``: the whole engine in memory, with the seed's method names (SPEC §6).

Events go through the same validation, tile rules and feature maths as the streaming service,
so a feature computed here equals the one the Redis-backed reader returns for the same events.

>>> engine = CustomerActivityFeatures(clock=lambda: 1_800_000_000.0)
>>> engine.add_purchase("c1", 40.0, timestamp=1_799_990_000)
True
>>> engine.get_average_order_value("c1")
40.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ..errors import InvalidEvent
from .customer_state import TOO_LATE_MESSAGE, CustomerState, Outcome
from .events import Event, validate_event
from .features import cohort_summary, daily_activity, flat_features, primary_device, summarize, tradeoff_indicators
from .features import window_features as _window_features
from .metadata import sanitize_attributes
from .query import resolve
from .settings import SECONDS_PER_DAY, EngineSettings, Thresholds
from .timeparse import TimestampInput, parse_as_of, parse_timestamp
from .windows import VisibleTiles, WindowTotals, window_bounds

Clock = Callable[[], float]


class CustomerActivityFeatures:
    """Per-customer tiled aggregates in memory and every feature getter of the contract."""

    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        thresholds: Thresholds | None = None,
        clock: Clock = time.time,
    ) -> None:
        settings = settings or EngineSettings()
        if thresholds is not None:
            settings = EngineSettings(
                tile_seconds=settings.tile_seconds,
                retention_days=settings.retention_days,
                max_future_skew_seconds=settings.max_future_skew_seconds,
                dedup_horizon_seconds=settings.dedup_horizon_seconds,
                thresholds=thresholds,
            )
        self.settings = settings
        self._clock = clock
        self._customers: dict[str, CustomerState] = {}

    # ----- ingestion -------------------------------------------------------------------------

    def ingest(self, event: Mapping[str, Any]) -> Outcome:
        """Apply one event in the §2 JSON shape. Raises ``InvalidEvent`` and changes nothing if bad."""
        typed = validate_event(event, now=self._clock(), max_future_skew_seconds=self.settings.max_future_skew_seconds)
        return self.apply(typed)

    def apply(self, event: Event) -> Outcome:
        """Apply an already validated event. ``too_late`` is judged here, and raised as the
        invalid event it is (SPEC §3): APPLIED or DUPLICATE otherwise."""
        state = self._customers.get(event.customer_id)
        if state is None:  # a new customer has no retention to be older than
            state = self._customers[event.customer_id] = CustomerState()
        outcome = state.apply(event, self.settings)
        if outcome is Outcome.TOO_LATE:
            raise InvalidEvent("too_late", TOO_LATE_MESSAGE, event)
        return outcome

    def _try_ingest(self, event: dict[str, Any], timestamp: TimestampInput | None) -> bool:
        try:
            event["timestamp"] = self._clock() if timestamp is None else parse_timestamp(timestamp)
            self.ingest(event)
        except (InvalidEvent, ValueError):
            return False
        return True

    def add_purchase(
        self,
        customer_id: str,
        amount: float | None = None,
        timestamp: TimestampInput | None = None,
        *,
        value: float | None = None,
        order_id: str | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Record a purchase; False (and no change) if any value is invalid."""
        event = {
            "type": "purchase",
            "customer_id": customer_id,
            "amount": value if amount is None else amount,
            "order_id": order_id,
            "event_id": event_id,
        }
        return self._try_ingest(event, timestamp)

    def add_session(
        self,
        customer_id: str,
        duration_seconds: float | None = None,
        device: str | TimestampInput | None = None,
        timestamp: TimestampInput | str | None = None,
        *,
        duration: float | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Record a session of ``duration_seconds`` (alias ``duration``) on ``device``."""
        if isinstance(device, datetime | int | float) and not isinstance(device, bool):
            device, timestamp = (timestamp if isinstance(timestamp, str) else None), device  # (…, ts, device) order
        event = {
            "type": "session",
            "customer_id": customer_id,
            "device": device,
            "event_id": event_id,
            "duration_seconds": duration if duration_seconds is None else duration_seconds,
        }
        return self._try_ingest(event, timestamp)

    def add_cart_event(
        self,
        customer_id: str,
        status: str | bool | float | None = None,
        value: float | str | bool | None = None,
        timestamp: TimestampInput | None = None,
        *,
        converted: bool | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Record a cart that was ``"converted"`` or ``"abandoned"`` (or ``converted=True/False``)."""
        if isinstance(status, int | float) and not isinstance(status, bool) and isinstance(value, bool | str):
            status, value = value, status  # also accept (customer_id, value, status, …)
        flag = converted if status is None else status
        if isinstance(flag, bool):
            flag = "converted" if flag else "abandoned"
        event = {
            "type": "cart",
            "customer_id": customer_id,
            "status": flag,
            "value": value,
            "event_id": event_id,
        }
        return self._try_ingest(event, timestamp)

    def add_support_interaction(
        self,
        customer_id: str,
        response_time_hours: float | None = None,
        escalated: bool = False,
        timestamp: TimestampInput | None = None,
        *,
        event_id: str | None = None,
    ) -> bool:
        """Record a support ticket; ``response_time_hours=None`` means not answered yet."""
        event = {
            "type": "support",
            "customer_id": customer_id,
            "escalated": escalated,
            "response_time_hours": response_time_hours,
            "event_id": event_id,
        }
        return self._try_ingest(event, timestamp)

    def set_customer_metadata(
        self, customer_id: str, metadata: object, timestamp: TimestampInput | None = None
    ) -> bool:
        """Merge profile attributes key by key (a profile event); they are sanitised to JSON values."""
        if not isinstance(metadata, Mapping):
            return False
        return self._try_ingest(
            {"type": "profile", "customer_id": customer_id, "attributes": sanitize_attributes(metadata)},
            timestamp,
        )

    # ----- reads -----------------------------------------------------------------------------

    def customer_ids(self) -> list[str]:
        return list(self._customers)

    def state_of(self, customer_id: str) -> CustomerState | None:
        return self._customers.get(customer_id)

    def _resolve(self, days: object, as_of: object) -> tuple[int, float]:
        return resolve(days, as_of, self.settings, now=self._clock())

    def _visible(self, customer_id: str) -> VisibleTiles:
        state = self._customers.get(customer_id) if isinstance(customer_id, str) else None
        return VisibleTiles.of(state.tiles if state else {}, self.settings)

    def _totals(self, customer_id: str, days: int, as_of: float) -> WindowTotals:
        low, high = window_bounds(as_of, days, self.settings)
        return self._visible(customer_id).totals(low, high)

    def _window_feature(self, name: str, customer_id: str, days: object, as_of: object) -> Any:
        resolved_days, moment = self._resolve(days, as_of)
        totals = self._totals(customer_id, resolved_days, moment)
        return _window_features(totals, resolved_days)[name]

    def get_purchase_frequency(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("purchase_frequency", customer_id, days, as_of))

    def get_average_order_value(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("average_order_value", customer_id, days, as_of))

    def get_total_purchase_value(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("total_purchase_value", customer_id, days, as_of))

    def get_purchase_recency(self, customer_id: str, as_of: object = None) -> float | None:
        """Days since the latest purchase at or before ``as_of``'s tile, within retention."""
        moment = parse_as_of(as_of, now=self._clock())
        low, high = window_bounds(moment, self.settings.retention_days, self.settings)
        latest = self._visible(customer_id).last_purchase_ts(low, high)
        return None if latest is None else max(0.0, (moment - latest) / SECONDS_PER_DAY)

    def get_session_frequency(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("session_frequency", customer_id, days, as_of))

    def get_average_session_duration(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("average_session_duration", customer_id, days, as_of))

    def get_device_usage_pattern(self, customer_id: str, days: int = 30, as_of: object = None) -> dict[str, int]:
        return dict(self._window_feature("device_usage", customer_id, days, as_of))

    def get_primary_device(self, customer_id: str, days: int = 30, as_of: object = None) -> str | None:
        resolved_days, moment = self._resolve(days, as_of)
        return primary_device(self._totals(customer_id, resolved_days, moment).devices)

    def get_abandoned_cart_count(self, customer_id: str, days: int = 30, as_of: object = None) -> int:
        return int(self._window_feature("abandoned_cart_count", customer_id, days, as_of))

    def get_cart_conversion_ratio(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("cart_conversion_ratio", customer_id, days, as_of))

    def get_abandoned_cart_value(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("abandoned_cart_value", customer_id, days, as_of))

    def get_support_ticket_count(self, customer_id: str, days: int = 30, as_of: object = None) -> int:
        return int(self._window_feature("support_ticket_count", customer_id, days, as_of))

    def get_average_response_time(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("average_response_time_hours", customer_id, days, as_of))

    def get_escalation_count(self, customer_id: str, days: int = 30, as_of: object = None) -> int:
        return int(self._window_feature("escalation_count", customer_id, days, as_of))

    def get_escalation_ratio(self, customer_id: str, days: int = 30, as_of: object = None) -> float:
        return float(self._window_feature("escalation_ratio", customer_id, days, as_of))

    def get_activity_retention_tradeoff(self, customer_id: str, as_of: object = None) -> dict[str, Any]:
        """Short- vs long-window flags (§4): declining engagement, support risk, retention concern…"""
        moment = parse_as_of(as_of, now=self._clock())
        t = self.settings.thresholds
        short = self._totals(customer_id, t.short_window_days, moment)
        long = self._totals(customer_id, t.long_window_days, moment)
        return tradeoff_indicators(short, long, self.get_purchase_recency(customer_id, moment), t)

    def get_all_features(self, customer_id: str, days: int | None = None, as_of: object = None) -> dict[str, Any]:
        resolved_days, moment = self._resolve(days, as_of)
        return self._flat(customer_id, resolved_days, moment)

    def _flat(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]:
        state = self._customers.get(customer_id) if isinstance(customer_id, str) else None
        return flat_features(customer_id, state.tiles if state else {}, days=days, as_of=as_of, settings=self.settings)

    def get_daily_activity(self, customer_id: str, days: int | None = 90, as_of: object = None) -> dict[str, Any]:
        """Events per day over the last ``days`` days (for charts; the readers answer the same)."""
        resolved_days, moment = self._resolve(days, as_of)
        state = self._customers.get(customer_id) if isinstance(customer_id, str) else None
        tiles = state.tiles if state else {}
        return daily_activity(customer_id, tiles, days=resolved_days, as_of=moment, settings=self.settings)

    def get_feature_summary(self, customer_id: str, days: int | None = None, as_of: object = None) -> dict[str, Any]:
        resolved_days, moment = self._resolve(days, as_of)
        state = self._customers.get(customer_id) if isinstance(customer_id, str) else None
        return summarize(self._flat(customer_id, resolved_days, moment), state.metadata() if state else {})

    def get_cohort_features(
        self, customer_ids: Iterable[str], days: int | None = None, as_of: object = None
    ) -> dict[str, dict[str, Any]]:
        resolved_days, moment = self._resolve(days, as_of)
        # No bound here: nothing is fetched (the readers' bound is about Redis round trips).
        return {cid: self._flat(cid, resolved_days, moment) for cid in dict.fromkeys(customer_ids)}

    def get_cohort_summary(
        self, customer_ids: Iterable[str], days: int | None = None, as_of: object = None
    ) -> dict[str, Any]:
        return cohort_summary(self.get_cohort_features(customer_ids, days, as_of).values())
