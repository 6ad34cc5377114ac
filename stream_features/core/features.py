"""Features and trade-off indicators from tiles (SPEC §4). Pure: the caller passes ``as_of``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .settings import SECONDS_PER_DAY, EngineSettings, Thresholds
from .tiles import TileAggregate
from .timeparse import unix_to_iso
from .windows import VisibleTiles, WindowTotals, window_bounds

PER_DAYS = 30  # frequencies are "per 30 days"
ACTIVITY_TRENDS = ("inactive", "declining", "growing", "stable")
SUMMARY_SECTIONS: dict[str, tuple[str, ...]] = {
    "purchase_metrics": (
        "purchase_count",
        "total_purchase_value",
        "average_order_value",
        "purchase_frequency",
        "purchase_recency_days",
    ),
    "engagement_metrics": (
        "session_count",
        "session_frequency",
        "average_session_duration",
        "device_usage",
        "primary_device",
    ),
    "cart_metrics": (
        "converted_cart_count",
        "abandoned_cart_count",
        "cart_count",
        "cart_conversion_ratio",
        "abandoned_cart_value",
    ),
    "support_metrics": (
        "support_ticket_count",
        "average_response_time_hours",
        "escalation_count",
        "escalation_ratio",
    ),
    "retention_indicators": (
        "engagement_short",
        "engagement_long",
        "high_short_term_activity",
        "declining_engagement",
        "support_risk",
        "cart_abandonment_risk",
        "retention_concern",
        "activity_trend",
    ),
}
TRADEOFF_FIELDS = SUMMARY_SECTIONS["retention_indicators"]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def primary_device(devices: Mapping[str, int]) -> str | None:
    """Most sessions wins; ties go to the lexicographically smallest name."""
    if not devices:
        return None
    return min(devices.items(), key=lambda item: (-item[1], item[0]))[0]


def window_features(totals: WindowTotals, days: int) -> dict[str, Any]:
    """Every §4 window feature from one window's totals."""
    cart_count = totals.converted_carts + totals.abandoned_carts
    return {
        "purchase_count": totals.purchases,
        "total_purchase_value": totals.purchase_value,
        "average_order_value": _ratio(totals.purchase_value, totals.purchases),
        "purchase_frequency": totals.purchases * PER_DAYS / days,
        "session_count": totals.sessions,
        "session_frequency": totals.sessions * PER_DAYS / days,
        "average_session_duration": _ratio(totals.session_seconds, totals.sessions),
        "device_usage": {d: c for d, c in sorted(totals.devices.items()) if c > 0},
        "primary_device": primary_device(totals.devices),
        "converted_cart_count": totals.converted_carts,
        "abandoned_cart_count": totals.abandoned_carts,
        "cart_count": cart_count,
        "cart_conversion_ratio": _ratio(totals.converted_carts, cart_count),
        "abandoned_cart_value": totals.abandoned_value,
        "support_ticket_count": totals.tickets,
        "average_response_time_hours": _ratio(totals.response_hours, totals.answered_tickets),
        "escalation_count": totals.escalations,
        "escalation_ratio": _ratio(totals.escalations, totals.tickets),
    }


def tradeoff_indicators(
    short: WindowTotals, long: WindowTotals, recency_days: float | None, thresholds: Thresholds
) -> dict[str, Any]:
    """Descriptive flags comparing the short window with the long one (§4)."""
    t = thresholds
    engagement_short = (short.purchases + short.sessions) * PER_DAYS / t.short_window_days
    engagement_long = (long.purchases + long.sessions) * PER_DAYS / t.long_window_days
    high_short = engagement_short > 0 and engagement_short >= t.high_activity_ratio * engagement_long
    declining = engagement_long > 0 and engagement_short < t.declining_ratio * engagement_long
    support_risk = short.tickets >= t.support_short_tickets or (
        long.tickets >= t.support_long_tickets
        and _ratio(long.escalations, long.tickets) >= t.support_long_escalation_ratio
    )
    short_carts = short.converted_carts + short.abandoned_carts
    cart_risk = short_carts >= t.cart_min_count and (
        _ratio(short.converted_carts, short_carts) < t.cart_low_conversion_ratio
    )
    retention_concern = (
        declining
        or (recency_days is not None and recency_days > t.recency_concern_days)
        or (support_risk and cart_risk)
    )
    if engagement_long == 0:
        trend = "inactive"
    elif declining:
        trend = "declining"
    elif high_short:
        trend = "growing"
    else:
        trend = "stable"
    return {
        "engagement_short": engagement_short,
        "engagement_long": engagement_long,
        "high_short_term_activity": high_short,
        "declining_engagement": declining,
        "support_risk": support_risk,
        "cart_abandonment_risk": cart_risk,
        "retention_concern": retention_concern,
        "activity_trend": trend,
    }


def flat_features(
    customer_id: str,
    tiles: Mapping[int, TileAggregate],
    *,
    days: int,
    as_of: float,
    settings: EngineSettings,
) -> dict[str, Any]:
    """The flat feature record (§4 "Outputs") for one customer. ``days`` is already validated."""
    visible = VisibleTiles.of(tiles, settings)
    retention_low, high = window_bounds(as_of, settings.retention_days, settings)
    last_purchase = visible.last_purchase_ts(retention_low, high)
    recency = None if last_purchase is None else max(0.0, (as_of - last_purchase) / SECONDS_PER_DAY)
    t = settings.thresholds
    window = visible.totals(window_bounds(as_of, days, settings)[0], high)
    short = visible.totals(window_bounds(as_of, t.short_window_days, settings)[0], high)
    long = visible.totals(window_bounds(as_of, t.long_window_days, settings)[0], high)
    has_history = any(tile.n > 0 for _, tile in visible.in_range(retention_low, high))
    features: dict[str, Any] = {
        "customer_id": customer_id,
        "as_of": unix_to_iso(as_of),
        "window_days": days,
        "has_history": has_history,
    }
    window_values = window_features(window, days)
    for name, value in window_values.items():
        features[name] = value
        if name == "purchase_frequency":
            features["purchase_recency_days"] = recency
    features.update(tradeoff_indicators(short, long, recency, t))
    return features


def summarize(features: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Nest flat features into the summary sections, plus the profile metadata."""
    summary: dict[str, Any] = {key: features[key] for key in ("customer_id", "as_of", "window_days", "has_history")}
    for section, names in SUMMARY_SECTIONS.items():
        summary[section] = {name: features[name] for name in names}
    summary["metadata"] = dict(metadata)
    return summary


def _numeric_feature_names() -> list[str]:
    names: list[str] = []
    for section in SUMMARY_SECTIONS.values():
        names.extend(section)
    return [n for n in names if n not in _NON_NUMERIC]


_NON_NUMERIC = frozenset(
    {
        "device_usage",
        "primary_device",
        "activity_trend",
        "high_short_term_activity",
        "declining_engagement",
        "support_risk",
        "cart_abandonment_risk",
        "retention_concern",
    }
)
FLAG_FIELDS = (
    "has_history",
    "high_short_term_activity",
    "declining_engagement",
    "support_risk",
    "cart_abandonment_risk",
    "retention_concern",
)
NUMERIC_FIELDS = tuple(_numeric_feature_names())


def cohort_summary(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Means of numeric features (nulls left out), flag rates and trend counts over a cohort."""
    rows = list(records)
    count = len(rows)
    means: dict[str, float | None] = {}
    for name in NUMERIC_FIELDS:
        values = [row[name] for row in rows if row[name] is not None]
        means[name] = sum(values) / len(values) if values else None
    flag_rates = {name: (sum(1 for row in rows if row[name]) / count if count else 0.0) for name in FLAG_FIELDS}
    trend_counts = dict.fromkeys(ACTIVITY_TRENDS, 0)
    for row in rows:
        trend_counts[row["activity_trend"]] += 1
    return {
        "customer_count": count,
        "means": means,
        "flag_rates": flag_rates,
        "activity_trend_counts": trend_counts,
    }


def daily_activity(
    customer_id: str,
    tiles: Mapping[int, TileAggregate],
    *,
    days: int,
    as_of: float,
    settings: EngineSettings,
) -> dict[str, Any]:
    """Events per day over a ``days`` window at ``as_of``, oldest first: day ``i`` holds the
    ``tiles_per_day`` tiles ending ``days - 1 - i`` days before the tile of ``as_of`` (the same
    tiles a window of ``days - i`` days adds last). For charts; ``days`` is already validated."""
    visible = VisibleTiles.of(tiles, settings)
    low, high = window_bounds(as_of, days, settings)
    per_day = settings.tiles_per_day
    counts = [0] * days
    for index, tile in visible.in_range(low, high):
        counts[(index - low - 1) // per_day] += tile.n
    return {
        "customer_id": customer_id,
        "as_of": unix_to_iso(as_of),
        "days": [
            {"start": unix_to_iso((low + 1 + day * per_day) * settings.tile_seconds), "events": count}
            for day, count in enumerate(counts)
        ],
    }
