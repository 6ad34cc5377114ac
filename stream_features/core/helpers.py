"""One-shot helpers for callers that only hold a list of purchases or sessions (the seed's API)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from .memory import CustomerActivityFeatures
from .timeparse import parse_as_of

_CUSTOMER = "one-shot"


def calculate_purchase_features(
    purchases: Iterable[Mapping[str, Any]], days: int | None = None, as_of: object = None
) -> dict[str, Any]:
    """Purchase features over dicts with ``amount`` (or ``value``) and ``timestamp``.

    Entries that are not valid purchases are skipped, as ``add_purchase`` would.

    >>> calculate_purchase_features([{"amount": 10, "timestamp": 0}, {"value": 30, "timestamp": 60}],
    ...                             as_of=3600)["average_order_value"]
    20.0
    """
    moment = parse_as_of(as_of, now=time.time())
    engine = CustomerActivityFeatures(clock=lambda: moment)
    for purchase in purchases:
        if isinstance(purchase, Mapping):
            engine.add_purchase(
                _CUSTOMER,
                purchase.get("amount", purchase.get("value")),
                purchase.get("timestamp"),
                event_id=purchase.get("event_id"),
            )
    features = engine.get_all_features(_CUSTOMER, days, moment)
    keys = (
        "purchase_count",
        "purchase_frequency",
        "average_order_value",
        "purchase_recency_days",
        "total_purchase_value",
    )
    return {key: features[key] for key in keys}


def calculate_session_features(
    sessions: Iterable[Mapping[str, Any]], days: int | None = None, as_of: object = None
) -> dict[str, Any]:
    """Session features over dicts with ``duration_seconds`` (or ``duration``), ``device``, ``timestamp``."""
    moment = parse_as_of(as_of, now=time.time())
    engine = CustomerActivityFeatures(clock=lambda: moment)
    for session in sessions:
        if isinstance(session, Mapping):
            engine.add_session(
                _CUSTOMER,
                session.get("duration_seconds", session.get("duration")),
                session.get("device"),
                session.get("timestamp"),
                event_id=session.get("event_id"),
            )
    features = engine.get_all_features(_CUSTOMER, days, moment)
    keys = (
        "session_count",
        "session_frequency",
        "average_session_duration",
        "device_usage",
        "primary_device",
    )
    return {key: features[key] for key in keys}
