"""The Rust fast path decodes exactly what Python's ``decode_event`` decodes, or leaves it alone.

The rules and stored bytes of the Rust core are held to the Python reference by the store
contract tests (Redis through the core vs the in-memory engine); this file covers decoding,
where the core must never accept what Python rejects nor read a field differently.
"""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_features import InvalidEvent, decode_event
from stream_features.core.events import CartEvent, Event, PurchaseEvent, SessionEvent, SupportEvent
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.decode import decode_batch

NOW = 1_800_000_000.0
SKEW = 86400.0


def python_view(event: Event) -> tuple[Any, ...]:
    amount: float | None = None
    flag, device = False, None
    if isinstance(event, PurchaseEvent):
        amount = event.amount
    elif isinstance(event, SessionEvent):
        amount, device = event.duration_seconds, event.device
    elif isinstance(event, CartEvent):
        amount, flag = event.value, event.converted
    elif isinstance(event, SupportEvent):
        amount, flag = event.response_time_hours, event.escalated
    return (event.kind, event.customer_id, repr(event.timestamp), event.event_id, repr(amount), flag, device)


def native_view(view: tuple[Any, ...]) -> tuple[Any, ...]:
    kind, customer_id, timestamp, event_id, amount, flag, device = view
    return (kind, customer_id, repr(timestamp), event_id, repr(amount), flag, device)


def rfc3339(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([1969, 1970, 2024, 2026, 2255, 2300, 9999]))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 61))
    fraction = draw(st.sampled_from(["", ".5", ".123456", ".1234567", ".999999999", "."]))
    zone = draw(st.sampled_from(["Z", "z", "", "+01:00", "-05:30", "+24:00", "+0100", " "]))
    separator = draw(st.sampled_from(["T", "T", "t", " "]))
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e15, 1e15 + 1, 2.0**53 + 1, -1.0, 19.99]),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=3),
)
texts = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from([" ", "\x1c", "\u3000", "\t", "A", "é"])),
    max_size=8,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["purchase", "session", "cart", "support", "profile", "Purchase", None, 1])),
        "customer_id": draw(st.one_of(texts, st.sampled_from(["c1", "x" * 300, "é" * 70, "", 7]))),
        "timestamp": draw(
            st.one_of(
                st.builds(lambda: None).flatmap(lambda _: st.just(rfc3339(draw))),
                st.floats(-10, 3e11),
                st.integers(-5, 300_000_000_000),
                st.sampled_from(["", "yesterday", True, None, NOW + SKEW + 1, NOW + SKEW]),
            )
        ),
    }
    for name in ("event_id", "amount", "value", "duration_seconds", "response_time_hours"):
        if draw(st.booleans()):
            event[name] = draw(numbers if name != "event_id" else st.one_of(st.none(), texts, st.just("e" * 129)))
    if draw(st.booleans()):
        event["order_id"] = draw(st.one_of(st.none(), texts, st.integers(), st.floats(), st.booleans()))
    if draw(st.booleans()):
        event["device"] = draw(st.one_of(st.none(), texts, st.sampled_from([" Mobile ", "TV", "x" * 65, "Télé", 3])))
    if draw(st.booleans()):
        event["status"] = draw(st.sampled_from(["converted", "abandoned", "open", None, 1]))
    if draw(st.booleans()):
        event["escalated"] = draw(st.sampled_from([True, False, None, 1, "yes"]))
    if draw(st.booleans()):
        event["attributes"] = {"tier": "gold"}
    raw = json.dumps(event, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.integers(0, 9)) == 0:  # a repeated field: JSON parsers differ on which one wins
        raw = raw[:-1] + b', "amount": 3}'
    return raw


@settings(max_examples=600, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=20))
def test_fast_path_agrees_with_python_or_defers(raw_messages: list[bytes]) -> None:
    batch, invalid = decode_batch(
        [Message(value=raw, offset=i) for i, raw in enumerate(raw_messages)], now=NOW, max_future_skew_seconds=SKEW
    )
    fallback = set(batch.fallback())
    rejected = {index for index, _ in invalid}
    for index, raw in enumerate(raw_messages):
        try:
            expected = decode_event(raw, now=NOW, max_future_skew_seconds=SKEW)
        except InvalidEvent:
            assert index in rejected and index in fallback, raw  # only Python judges invalid input
            assert batch.event(index) is None
            continue
        decoded = batch.event(index)
        assert decoded is not None, raw
        assert native_view(decoded) == python_view(expected), raw


def test_common_events_take_the_fast_path() -> None:
    """Guards the speed: generated non-profile events should almost never need Python."""
    now = time.time()
    lines = list(generate_events(GeneratorOptions(customers=500, events=5000, start=now - 30 * 86400, end=now - 60)))
    batch, _ = decode_batch(
        [Message(value=line, offset=i) for i, line in enumerate(lines)], now=now, max_future_skew_seconds=SKEW
    )
    kinds = [_kind(line) for line in lines]
    deferred = [index for index in batch.fallback() if kinds[index] in ("purchase", "session", "cart", "support")]
    valid_common = [
        index for index, line in enumerate(lines) if kinds[index] in ("purchase", "session", "cart", "support")
    ]
    decoded_by_python = 0
    for index in deferred:
        try:
            decode_event(lines[index], now=now)
            decoded_by_python += 1
        except InvalidEvent:
            pass
    assert decoded_by_python <= 0.01 * len(valid_common)


def _kind(line: bytes) -> Any:
    try:
        return json.loads(line).get("type")
    except (ValueError, AttributeError):
        return None


def test_missing_value_and_oversized_messages_go_to_python() -> None:
    records = [Message(value=None, offset=0), Message(value=b"{" + b" " * 70_000 + b"}", offset=1)]
    batch, invalid = decode_batch(records, now=NOW, max_future_skew_seconds=SKEW)
    assert batch.fallback() == [0, 1]
    assert [(index, error.reason) for index, error in invalid] == [(0, "malformed_json"), (1, "too_large")]


def test_the_rust_core_speaks_the_same_vocabulary_and_limits_as_python() -> None:
    """One vocabulary across the two languages: outcome letters and the contract's limits."""
    from stream_features import Outcome, _native
    from stream_features.core import limits

    assert {outcome.value: outcome.code for outcome in Outcome} == _native.OUTCOME_CODES
    assert {Outcome.of_code(code) for code in _native.OUTCOME_CODES.values()} == set(Outcome)
    python_limits = {name: getattr(limits, name) for name in dir(limits) if name.isupper()}
    rust_limits = dict(_native.LIMITS)
    rust_limits["EVENT_TYPES"] = tuple(rust_limits["EVENT_TYPES"])
    assert rust_limits == python_limits
