"""A brute-force model of the contract, over raw events, with no tiles: the oracle for the engine.

Deliberately naive (every check rescans every accepted event) so that it is easy to read
against SPEC §3–§5.
"""

from __future__ import annotations

import math
from typing import Any

from stream_features.core.events import CartEvent, Event, PurchaseEvent, SessionEvent, SupportEvent
from stream_features.core.settings import EngineSettings


def accept_in_order(events: list[Event], settings: EngineSettings) -> list[Event]:
    """Events one customer keeps, applying too_late and dedup in stream order."""
    accepted: list[Event] = []
    T, R, H = settings.tile_seconds, settings.retention_tiles, settings.dedup_horizon_seconds
    for event in events:
        tile = math.floor(event.timestamp / T)
        if accepted and tile <= max(math.floor(a.timestamp / T) for a in accepted) - R:
            continue  # too_late
        if event.event_id is not None:
            same_id = [a for a in accepted if a.event_id == event.event_id]
            newest = max(a.timestamp for a in accepted) if accepted else None
            if same_id and (newest is None or same_id[-1].timestamp >= newest - H):
                continue  # duplicate
        accepted.append(event)
    return accepted


def features(accepted: list[Event], *, days: int, as_of: float, settings: EngineSettings) -> dict[str, Any]:
    T, R = settings.tile_seconds, settings.retention_tiles
    per_day = 86400 // T
    newest_tile = max((math.floor(a.timestamp / T) for a in accepted), default=None)
    visible = [a for a in accepted if newest_tile is None or math.floor(a.timestamp / T) > newest_tile - R]
    high = math.floor(as_of / T)

    def window(d: int) -> list[Event]:
        return [a for a in visible if high - d * per_day < math.floor(a.timestamp / T) <= high]

    w = window(days)
    purchases = [e for e in w if isinstance(e, PurchaseEvent)]
    sessions = [e for e in w if isinstance(e, SessionEvent)]
    carts = [e for e in w if isinstance(e, CartEvent)]
    tickets = [e for e in w if isinstance(e, SupportEvent)]
    devices: dict[str, int] = {}
    for s in sessions:
        devices[s.device] = devices.get(s.device, 0) + 1
    converted = sum(1 for c in carts if c.converted)
    answered = [t.response_time_hours for t in tickets if t.response_time_hours is not None]
    escalations = sum(1 for t in tickets if t.escalated)
    lookback = window(settings.retention_days)
    past_purchases = [e.timestamp for e in lookback if isinstance(e, PurchaseEvent)]
    recency = None if not past_purchases else max(0.0, (as_of - max(past_purchases)) / 86400)
    total = sum(p.amount for p in purchases)
    result: dict[str, Any] = {
        "has_history": bool(lookback),
        "purchase_count": len(purchases),
        "total_purchase_value": total,
        "average_order_value": total / len(purchases) if purchases else 0.0,
        "purchase_frequency": len(purchases) * 30 / days,
        "purchase_recency_days": recency,
        "session_count": len(sessions),
        "session_frequency": len(sessions) * 30 / days,
        "average_session_duration": (sum(s.duration_seconds for s in sessions) / len(sessions) if sessions else 0.0),
        "device_usage": devices,
        "primary_device": sorted(devices, key=lambda d: (-devices[d], d))[0] if devices else None,
        "converted_cart_count": converted,
        "abandoned_cart_count": len(carts) - converted,
        "cart_count": len(carts),
        "cart_conversion_ratio": converted / len(carts) if carts else 0.0,
        "abandoned_cart_value": sum(c.value for c in carts if not c.converted and c.value is not None),
        "support_ticket_count": len(tickets),
        "average_response_time_hours": sum(answered) / len(answered) if answered else 0.0,
        "escalation_count": escalations,
        "escalation_ratio": escalations / len(tickets) if tickets else 0.0,
    }
    t = settings.thresholds

    def counts(d: int) -> tuple[int, int, int, int, int, int]:
        ev = window(d)
        return (
            sum(1 for e in ev if isinstance(e, PurchaseEvent | SessionEvent)),
            sum(1 for e in ev if isinstance(e, SupportEvent)),
            sum(1 for e in ev if isinstance(e, SupportEvent) and e.escalated),
            sum(1 for e in ev if isinstance(e, CartEvent)),
            sum(1 for e in ev if isinstance(e, CartEvent) and e.converted),
            0,
        )

    s_eng, s_tickets, _, s_carts, s_conv, _ = counts(t.short_window_days)
    l_eng, l_tickets, l_esc, _, _, _ = counts(t.long_window_days)
    e_short = s_eng * 30 / t.short_window_days
    e_long = l_eng * 30 / t.long_window_days
    high_short = e_short > 0 and e_short >= t.high_activity_ratio * e_long
    declining = e_long > 0 and e_short < t.declining_ratio * e_long
    support_risk = s_tickets >= t.support_short_tickets or (
        l_tickets >= t.support_long_tickets and l_esc / l_tickets >= t.support_long_escalation_ratio
    )
    cart_risk = s_carts >= t.cart_min_count and s_conv / s_carts < t.cart_low_conversion_ratio
    result.update(
        engagement_short=e_short,
        engagement_long=e_long,
        high_short_term_activity=high_short,
        declining_engagement=declining,
        support_risk=support_risk,
        cart_abandonment_risk=cart_risk,
        retention_concern=declining
        or (recency is not None and recency > t.recency_concern_days)
        or (support_risk and cart_risk),
        activity_trend="inactive"
        if e_long == 0
        else "declining"
        if declining
        else "growing"
        if high_short
        else "stable",
    )
    return result
