"""The in-memory engine: seed API, ordering rules, metadata, cohorts and edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_features import (
    ConfigurationError,
    CustomerActivityFeatures,
    EngineSettings,
    InvalidEvent,
    InvalidQuery,
    Outcome,
    Thresholds,
    calculate_purchase_features,
    calculate_session_features,
)

NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


def engine(**kwargs: Any) -> CustomerActivityFeatures:
    return CustomerActivityFeatures(EngineSettings(**kwargs), clock=NOW.timestamp)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_seed_api_end_to_end() -> None:
    e = engine()
    assert e.add_purchase("c", 100.0, days_ago(1))
    assert e.add_purchase("c", 50.0, days_ago(10))
    assert e.add_purchase("c", 30.0, days_ago(45))
    assert e.add_session("c", 120, "Mobile", days_ago(2))
    assert e.add_session("c", 60, "web", days_ago(3))
    assert e.add_session("c", 30, "web", days_ago(4))
    assert e.add_cart_event("c", "abandoned", 80.0, days_ago(1))
    assert e.add_cart_event("c", "converted", 20.0, days_ago(1))
    assert e.add_cart_event("c", False, None, days_ago(1))
    assert e.add_support_interaction("c", 4.0, True, days_ago(5))
    assert e.add_support_interaction("c", None, False, days_ago(6))
    assert e.get_purchase_frequency("c", days=30) == 2.0
    assert e.get_average_order_value("c", days=30) == 75.0
    assert e.get_total_purchase_value("c", days=60) == 180.0
    assert e.get_purchase_recency("c") == pytest.approx(1.0)
    assert e.get_session_frequency("c", days=15) == 6.0
    assert e.get_average_session_duration("c") == 70.0
    assert e.get_device_usage_pattern("c") == {"mobile": 1, "web": 2}
    assert e.get_primary_device("c") == "web"
    assert e.get_abandoned_cart_count("c") == 2
    assert e.get_cart_conversion_ratio("c") == pytest.approx(1 / 3)
    assert e.get_abandoned_cart_value("c") == 80.0
    assert e.get_support_ticket_count("c") == 2
    assert e.get_average_response_time("c") == 4.0
    assert e.get_escalation_count("c") == 1
    assert e.get_escalation_ratio("c") == 0.5
    tradeoff = e.get_activity_retention_tradeoff("c")
    assert tradeoff["engagement_short"] == 5.0
    assert tradeoff["engagement_long"] == pytest.approx(6 * 30 / 90)
    assert tradeoff["high_short_term_activity"] and tradeoff["activity_trend"] == "growing"
    assert tradeoff["cart_abandonment_risk"] is False  # 1 of 3 converted: 0.33 >= 0.3


def test_invalid_values_return_false_and_change_nothing() -> None:
    e = engine()
    assert not e.add_purchase("c", -1.0, days_ago(1))
    assert not e.add_purchase("", 10.0, days_ago(1))
    assert not e.add_purchase("c", float("nan"), days_ago(1))
    assert not e.add_purchase("c", None, days_ago(1))
    assert not e.add_session("c", "long", "web", days_ago(1))  # type: ignore[arg-type]
    assert not e.add_cart_event("c", "maybe", 1.0, days_ago(1))
    assert not e.add_support_interaction("c", -3.0, False, days_ago(1))
    assert not e.add_purchase("c", 1.0, "not a date")
    assert not e.set_customer_metadata("c", "not a mapping")  # type: ignore[arg-type]
    assert e.customer_ids() == []
    features = e.get_all_features("c")
    assert features["has_history"] is False and features["purchase_count"] == 0


def test_ingest_raises_with_reason_and_keeps_state() -> None:
    e = engine()
    with pytest.raises(InvalidEvent) as info:
        e.ingest({"type": "purchase", "customer_id": "c", "timestamp": NOW.isoformat(), "amount": -1})
    assert info.value.reason == "negative_value"
    assert e.state_of("c") is None


def test_unknown_customer_gets_zeros() -> None:
    features = engine().get_all_features("nobody", days=7)
    assert features["has_history"] is False
    assert features["purchase_recency_days"] is None and features["primary_device"] is None
    assert features["window_days"] == 7 and features["activity_trend"] == "inactive"
    assert features["as_of"] == "2027-03-01T12:00:00Z"


def test_too_late_is_judged_against_the_newest_tile() -> None:
    e = engine(retention_days=2, thresholds=Thresholds(short_window_days=1, long_window_days=2))
    e.ingest({"type": "purchase", "customer_id": "c", "timestamp": days_ago(0).isoformat(), "amount": 1})
    with pytest.raises(InvalidEvent) as info:
        e.ingest({"type": "purchase", "customer_id": "c", "timestamp": days_ago(2).isoformat(), "amount": 1})
    assert info.value.reason == "too_late"
    # One tile (hour) newer is still inside retention.
    e.ingest(
        {
            "type": "purchase",
            "customer_id": "c",
            "timestamp": (days_ago(2) + timedelta(hours=1)).isoformat(),
            "amount": 1,
        }
    )
    # A different customer has its own retention: an old event is fine there.
    e.ingest({"type": "purchase", "customer_id": "d", "timestamp": days_ago(30).isoformat(), "amount": 1})


def test_out_of_order_events_land_in_their_own_tiles() -> None:
    e = engine()
    for days in (1, 40, 3, 80, 2):
        assert e.add_purchase("c", 10.0, days_ago(days))
    assert e.get_purchase_frequency("c", days=30) == 3.0
    assert e.get_purchase_frequency("c", days=90) == pytest.approx(5 * 30 / 90)
    assert e.get_purchase_recency("c", as_of=days_ago(39)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("gap_seconds", "counted"),
    [(7 * 86400, 1), (7 * 86400 + 1, 2)],  # the horizon boundary is inclusive
)
def test_duplicate_horizon_boundary(gap_seconds: int, counted: int) -> None:
    e = engine()
    start = days_ago(20).timestamp()
    assert (
        e.ingest({"type": "purchase", "customer_id": "c", "timestamp": start, "amount": 5, "event_id": "x"})
        is Outcome.APPLIED
    )
    e.ingest({"type": "session", "customer_id": "c", "timestamp": start + gap_seconds, "duration_seconds": 1})
    e.ingest({"type": "purchase", "customer_id": "c", "timestamp": start, "amount": 5, "event_id": "x"})
    assert e.get_all_features("c", days=30)["purchase_count"] == counted


def test_duplicate_is_per_customer_and_first_wins() -> None:
    e = engine()
    ts = days_ago(1).timestamp()
    assert (
        e.ingest({"type": "purchase", "customer_id": "a", "timestamp": ts, "amount": 5, "event_id": "x"})
        is Outcome.APPLIED
    )
    assert (
        e.ingest({"type": "purchase", "customer_id": "a", "timestamp": ts, "amount": 9, "event_id": "x"})
        is Outcome.DUPLICATE
    )
    assert (
        e.ingest({"type": "purchase", "customer_id": "b", "timestamp": ts, "amount": 9, "event_id": "x"})
        is Outcome.APPLIED
    )
    assert e.get_total_purchase_value("a") == 5.0
    assert e.get_total_purchase_value("b") == 9.0


@pytest.mark.parametrize("customer_id", ["a:b", "a", "{a}", " a ", "🙂", "x" * 256])
def test_odd_ids_never_share_state(customer_id: str) -> None:
    e = engine()
    ids = ["a:b", "a", "{a}", " a ", "🙂", "x" * 256]
    for index, cid in enumerate(ids):
        assert e.add_purchase(cid, float(index + 1), days_ago(1))
    assert e.get_total_purchase_value(customer_id) == float(ids.index(customer_id) + 1)


def test_window_edges_by_tile() -> None:
    e = engine()
    as_of = datetime(2027, 3, 1, 12, 30, tzinfo=UTC)
    assert e.add_purchase("c", 1.0, datetime(2027, 3, 1, 12, 59, tzinfo=UTC))  # later in as_of's tile: counts
    assert e.add_purchase("c", 2.0, datetime(2027, 3, 1, 13, 0, tzinfo=UTC))  # next tile: does not
    assert e.add_purchase("c", 4.0, datetime(2027, 2, 28, 13, 0, tzinfo=UTC))  # first tile of 1-day window
    assert e.add_purchase("c", 8.0, datetime(2027, 2, 28, 12, 59, tzinfo=UTC))  # just before it
    assert e.get_total_purchase_value("c", days=1, as_of=as_of) == 5.0
    assert e.get_purchase_recency("c", as_of=as_of) == 0.0  # a purchase later in the same tile: not below 0


def test_days_and_as_of_validation() -> None:
    e = engine(retention_days=100)
    with pytest.raises(ConfigurationError):
        engine(retention_days=60)  # the 90-day trade-off window would not fit
    for bad in (0, 101, -1, 2.5, True, "7"):
        with pytest.raises(InvalidQuery):
            e.get_all_features("c", days=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        e.get_all_features("c", as_of="soon")
    naive = e.get_all_features("c", as_of=datetime(2027, 1, 1))
    assert naive["as_of"] == "2027-01-01T00:00:00Z"
    assert e.get_all_features("c", as_of=0)["as_of"] == "1970-01-01T00:00:00Z"


def test_metadata_merges_newest_event_time_wins() -> None:
    e = engine()
    assert e.set_customer_metadata("c", {"tier": "gold", "country": "FR"}, days_ago(2))
    assert e.set_customer_metadata("c", {"tier": "silver"}, days_ago(1))
    assert e.set_customer_metadata("c", {"tier": "bronze", "lang": "fr"}, days_ago(3))  # older: tier stays
    summary = e.get_feature_summary("c")
    assert summary["metadata"] == {"tier": "silver", "country": "FR", "lang": "fr"}
    assert summary["has_history"] is True  # a profile event is an event


def test_metadata_sanitised_never_crashes() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(1000):
        node["n"] = {}
        node = node["n"]
    e = engine()
    assert e.set_customer_metadata(
        "c",
        {
            "circular": circular,
            "deep": deep,
            "set": {1, 2},
            "obj": object(),
            "nan": float("nan"),
            "big": "x" * 100_000,
            "many": list(range(100_000)),
            7: "int key",
        },
    )
    meta = e.get_feature_summary("c")["metadata"]
    assert meta["circular"] == {"self": "<circular>"}
    assert meta["nan"] is None and meta["7"] == "int key"
    assert len(meta["big"]) <= 1025 and len(meta["many"]) == 100
    import json

    json.dumps(meta)  # JSON-safe


def test_summary_and_cohorts() -> None:
    e = engine()
    e.add_purchase("a", 10.0, days_ago(1))
    e.add_support_interaction("b", 2.0, True, days_ago(1))
    e.add_support_interaction("b", 4.0, True, days_ago(2))
    summary = e.get_feature_summary("a")
    assert summary["purchase_metrics"]["purchase_count"] == 1
    assert set(summary) == {
        "customer_id",
        "as_of",
        "window_days",
        "has_history",
        "purchase_metrics",
        "engagement_metrics",
        "cart_metrics",
        "support_metrics",
        "retention_indicators",
        "metadata",
    }
    cohort = e.get_cohort_features(["a", "b", "zz", "a"])
    assert list(cohort) == ["a", "b", "zz"]
    stats = e.get_cohort_summary(["a", "b", "zz"])
    assert stats["customer_count"] == 3
    assert stats["means"]["purchase_count"] == pytest.approx(1 / 3)
    assert stats["means"]["purchase_recency_days"] == pytest.approx(1.0)  # nulls left out
    assert stats["flag_rates"]["support_risk"] == pytest.approx(1 / 3)
    assert stats["flag_rates"]["has_history"] == pytest.approx(2 / 3)
    assert stats["activity_trend_counts"] == {"inactive": 2, "declining": 0, "growing": 1, "stable": 0}
    empty = e.get_cohort_summary([])
    assert empty["customer_count"] == 0 and empty["means"]["purchase_count"] is None


def test_thresholds_are_settings() -> None:
    strict = CustomerActivityFeatures(thresholds=Thresholds(support_short_tickets=1), clock=NOW.timestamp)
    default = engine()
    for e in (strict, default):
        e.add_support_interaction("c", 1.0, False, days_ago(1))
    assert strict.get_activity_retention_tradeoff("c")["support_risk"] is True
    assert default.get_activity_retention_tradeoff("c")["support_risk"] is False


def test_declining_and_recency_concern() -> None:
    e = engine()
    for day in range(31, 90, 3):
        e.add_session("c", 10, "web", days_ago(day))
    flags = e.get_activity_retention_tradeoff("c")
    assert flags["declining_engagement"] and flags["retention_concern"]
    assert flags["activity_trend"] == "declining"
    e2 = engine()
    e2.add_purchase("c", 1.0, days_ago(61))
    assert e2.get_activity_retention_tradeoff("c")["retention_concern"] is True


def test_one_shot_helpers() -> None:
    as_of = NOW.timestamp()
    purchases = [
        {"value": 10, "timestamp": as_of - 86400},
        {"amount": 30, "timestamp": days_ago(2).isoformat()},
        {"amount": -5, "timestamp": as_of},
        "junk",
        {"amount": 1},
    ]
    result = calculate_purchase_features(purchases, days=30, as_of=as_of)  # type: ignore[arg-type]
    assert result["purchase_count"] == 3  # the one without timestamp is taken as "now"
    assert result["total_purchase_value"] == 41.0
    sessions = [
        {"duration": 60, "device": "Web", "timestamp": as_of - 10},
        {"duration_seconds": 30, "timestamp": as_of - 20},
        {"device": "web"},
    ]
    session_result = calculate_session_features(sessions, as_of=as_of)
    assert session_result == {
        "session_count": 2,
        "session_frequency": 2.0,
        "average_session_duration": 45.0,
        "device_usage": {"unknown": 1, "web": 1},
        "primary_device": "unknown",
    }


def test_seed_call_orders_are_tolerated() -> None:
    e = engine()
    assert e.add_cart_event("c", 50.0, True, days_ago(1))  # (value, converted) order
    assert e.add_cart_event("c", "abandoned", 20.0, days_ago(1))
    assert e.add_session("c", 30, days_ago(1), "Web")  # (timestamp, device) order
    assert e.get_cart_conversion_ratio("c") == 0.5 and e.get_abandoned_cart_value("c") == 20.0
    assert e.get_device_usage_pattern("c") == {"web": 1}
