"""The tile engine against the brute-force reference, on random events, windows and as_of values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_features import CustomerActivityFeatures, EngineSettings, InvalidEvent, Thresholds
from stream_features.core.events import Event, validate_event

from . import reference
from .strategies import BASE, raw_events, timestamps

NOW = BASE + 30 * 86400
SMALL = EngineSettings(
    retention_days=3,
    dedup_horizon_seconds=7200,
    thresholds=Thresholds(short_window_days=1, long_window_days=3),
)


def _compare(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        got = actual[name]
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-9, abs=1e-9), name
        else:
            assert got == value, name


def _run(raw: list[dict[str, Any]], engine_settings: EngineSettings, days: int, as_of: float) -> None:
    engine = CustomerActivityFeatures(engine_settings, clock=lambda: NOW)
    per_customer: dict[str, list[Event]] = {}
    for event in raw:
        typed = validate_event(event, now=NOW)
        per_customer.setdefault(typed.customer_id, []).append(typed)
        try:
            engine.ingest(event)
        except InvalidEvent as exc:
            assert exc.reason == "too_late"
    for customer_id, events in per_customer.items():
        accepted = reference.accept_in_order(events, engine_settings)
        expected = reference.features(accepted, days=days, as_of=as_of, settings=engine_settings)
        _compare(engine.get_all_features(customer_id, days=days, as_of=as_of), expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(raw_events(), max_size=40), st.integers(1, 3), timestamps)
def test_small_retention_matches_reference(raw: list[dict[str, Any]], days: int, as_of: float) -> None:
    _run(raw, SMALL, days, as_of)


@settings(max_examples=150, deadline=None)
@given(st.lists(raw_events(), max_size=40), st.sampled_from([1, 7, 30, 90, 400]), timestamps)
def test_default_settings_match_reference(raw: list[dict[str, Any]], days: int, as_of: float) -> None:
    _run(raw, EngineSettings(), days, as_of)


@settings(max_examples=100, deadline=None)
@given(st.lists(raw_events(), max_size=30), st.integers(1, 3), timestamps)
def test_tile_of_one_day_matches_reference(raw: list[dict[str, Any]], days: int, as_of: float) -> None:
    daily = EngineSettings(
        tile_seconds=86400,
        retention_days=3,
        dedup_horizon_seconds=86400,
        thresholds=Thresholds(short_window_days=1, long_window_days=2),
    )
    _run(raw, daily, days, as_of)
