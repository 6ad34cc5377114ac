"""Every invalid-event reason of SPEC §2, and the shapes that must be accepted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_features import InvalidEvent, decode_event, validate_event
from stream_features.core.events import CartEvent, ProfileEvent, PurchaseEvent, SessionEvent, SupportEvent, fast_decode
from stream_features.ingest.decode import decode_batch

from .strategies import raw_events
from .test_native import native_view, python_view

NOW = 1_800_000_000.0
OK_TS = "2027-01-15T08:00:00Z"


def _decode(obj: object) -> object:
    return decode_event(json.dumps(obj).encode(), now=NOW)


def _purchase(**extra: object) -> dict[str, object]:
    return {"type": "purchase", "customer_id": "c1", "timestamp": OK_TS, "amount": 10, **extra}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"type": "purchase", "customer_id": "c", "timestamp": 0, "amount": 1e400}', "non_finite"),
        (b'{"type": "purchase", "customer_id": "c", "timestamp": 0, "amount": NaN}', "malformed_json"),
        (b"{" + b'"pad": "' + b"x" * 70000 + b'"}', "too_large"),
    ],
)
def test_malformed_bytes(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, now=NOW)
    assert info.value.reason == reason
    assert info.value.raw == raw


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"customer_id": "c1", "timestamp": OK_TS, "amount": 1}, "missing_field"),
        ({"type": "refund", "customer_id": "c1", "timestamp": OK_TS}, "unknown_type"),
        ({"type": 3, "customer_id": "c1", "timestamp": OK_TS}, "bad_type"),
        (_purchase(customer_id=None), "missing_field"),
        (_purchase(customer_id=7), "bad_type"),
        (_purchase(customer_id="   "), "bad_customer_id"),
        (_purchase(customer_id=""), "bad_customer_id"),
        (_purchase(customer_id="é" * 129), "bad_customer_id"),
        (_purchase(timestamp=None), "missing_field"),
        (_purchase(timestamp=True), "bad_type"),
        (_purchase(timestamp=[1]), "bad_type"),
        (_purchase(timestamp="yesterday"), "bad_timestamp"),
        (_purchase(timestamp=-5), "bad_timestamp"),
        (_purchase(timestamp=NOW + 86400 + 1), "future_timestamp"),
        (_purchase(amount=None), "missing_field"),
        ({"type": "purchase", "customer_id": "c1", "timestamp": OK_TS}, "missing_field"),
        (_purchase(amount="10"), "bad_type"),
        (_purchase(amount=True), "bad_type"),
        (_purchase(amount=-0.01), "negative_value"),
        (_purchase(amount=1e16), "too_large"),
        (_purchase(event_id="x" * 129), "too_large"),
        (_purchase(event_id=5), "bad_type"),
        ({"type": "session", "customer_id": "c", "timestamp": OK_TS}, "missing_field"),
        (
            {"type": "session", "customer_id": "c", "timestamp": OK_TS, "duration_seconds": -1},
            "negative_value",
        ),
        (
            {"type": "session", "customer_id": "c", "timestamp": OK_TS, "duration_seconds": 1, "device": 3},
            "bad_type",
        ),
        (
            {
                "type": "session",
                "customer_id": "c",
                "timestamp": OK_TS,
                "duration_seconds": 1,
                "device": "d" * 65,
            },
            "too_large",
        ),
        ({"type": "cart", "customer_id": "c", "timestamp": OK_TS}, "missing_field"),
        ({"type": "cart", "customer_id": "c", "timestamp": OK_TS, "status": "lost"}, "bad_value"),
        (
            {"type": "cart", "customer_id": "c", "timestamp": OK_TS, "status": "abandoned", "value": -2},
            "negative_value",
        ),
        (
            {"type": "cart", "customer_id": "c", "timestamp": OK_TS, "status": "abandoned", "value": "2"},
            "bad_type",
        ),
        ({"type": "support", "customer_id": "c", "timestamp": OK_TS, "escalated": "yes"}, "bad_type"),
        (
            {"type": "support", "customer_id": "c", "timestamp": OK_TS, "response_time_hours": -1},
            "negative_value",
        ),
        ({"type": "profile", "customer_id": "c", "timestamp": OK_TS}, "missing_field"),
        ({"type": "profile", "customer_id": "c", "timestamp": OK_TS, "attributes": [1]}, "bad_type"),
    ],
)
def test_rule_breaches(event: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        _decode(event)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2027-01-15T08:00:00Z", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()),
        ("2027-01-15T10:00:00+02:00", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()),
        ("2027-01-15T08:00:00", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()),
        ("2027-01-15T08:00:00.250Z", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() + 0.25),
        (1_784_102_400, 1_784_102_400.0),
        (1_784_102_400.5, 1_784_102_400.5),
    ],
)
def test_timestamp_shapes(timestamp: object, expected: float) -> None:
    event = _decode(_purchase(timestamp=timestamp))
    assert isinstance(event, PurchaseEvent)
    assert event.timestamp == expected


def test_value_alias_and_types() -> None:
    purchase = _decode({"type": "purchase", "customer_id": "c", "timestamp": 0, "value": 12.5, "x": 1})
    assert isinstance(purchase, PurchaseEvent) and purchase.amount == 12.5
    session = _decode(
        {"type": "session", "customer_id": "c", "timestamp": 0, "duration_seconds": 3, "device": "  MoBiLe "}
    )
    assert isinstance(session, SessionEvent) and session.device == "mobile"
    blank = _decode({"type": "session", "customer_id": "c", "timestamp": 0, "duration_seconds": 3, "device": " "})
    assert isinstance(blank, SessionEvent) and blank.device == "unknown"
    cart = _decode({"type": "cart", "customer_id": "c", "timestamp": 0, "status": "abandoned", "value": None})
    assert isinstance(cart, CartEvent) and not cart.converted and cart.value is None
    ticket = _decode({"type": "support", "customer_id": "c", "timestamp": 0})
    assert isinstance(ticket, SupportEvent) and ticket.response_time_hours is None and not ticket.escalated
    profile = _decode({"type": "profile", "customer_id": "c", "timestamp": 0, "attributes": {"a": {"b": 1}}})
    assert isinstance(profile, ProfileEvent) and profile.attributes == {"a": {"b": 1}}


@pytest.mark.parametrize("customer_id", ["a:b", "{x}", " padded ", "🙂 emoji", "x" * 256, "é" * 128])
def test_odd_customer_ids_are_kept_verbatim(customer_id: str) -> None:
    event = _decode(_purchase(customer_id=customer_id))
    assert isinstance(event, PurchaseEvent) and event.customer_id == customer_id


@settings(max_examples=400, deadline=None)
@given(
    raw_events(), st.sampled_from(["number", "iso", "offset", "naive", "lowercase", "nanoseconds", "spaced", "date"])
)
def test_fast_path_agrees_with_the_validator(event: dict[str, object], shape: str) -> None:
    """The typed fast path must return exactly the validator's event, or defer to it; it takes
    every valid non-profile event with a number or RFC 3339 timestamp. The consumer's Rust fast
    path agrees too, and takes them when no string holds a JSON escape."""
    moment = datetime.fromtimestamp(float(event["timestamp"]), tz=UTC)  # type: ignore[arg-type]
    if shape == "iso":
        event["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    elif shape == "offset":
        event["timestamp"] = moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    elif shape == "naive":
        event["timestamp"] = moment.replace(tzinfo=None).isoformat()
    elif shape == "lowercase":
        event["timestamp"] = moment.isoformat().replace("+00:00", "z").replace("T", "t")
    elif shape == "nanoseconds":  # more digits than datetime keeps
        event["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "789Z"
    elif shape == "spaced":  # not RFC 3339: only the validator's ISO 8601 reading accepts it
        event["timestamp"] = " " + moment.isoformat() + " "
    elif shape == "date":
        event["timestamp"] = moment.date().isoformat()
    data = json.dumps(event).encode()
    fast = fast_decode(data, now=NOW, max_future_skew_seconds=86400)
    try:
        slow: object = validate_event(json.loads(data), now=NOW)
    except InvalidEvent:
        slow = None
    if fast is not None:
        assert fast == slow
    common = slow is not None and event["type"] != "profile"
    if common and shape not in ("spaced", "date"):
        assert fast is not None, data
    assert decode_or_none(data) == slow
    batch, _ = decode_batch([Message(value=data, offset=0)], now=NOW, max_future_skew_seconds=86400)
    if 0 not in batch.fallback():  # taken by the Rust fast path: exactly the validator's event
        assert slow is not None and native_view(batch.event(0)) == python_view(slow), data
    elif common and shape in ("number", "iso", "offset", "naive") and b"\\" not in data:
        raise AssertionError(f"the Rust fast path deferred a common event: {data!r}")


def decode_or_none(data: bytes) -> object:
    try:
        return decode_event(data, now=NOW)
    except InvalidEvent:
        return None
