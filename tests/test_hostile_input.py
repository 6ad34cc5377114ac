"""No record stops the stream (SPEC §5): every hostile input is an InvalidEvent with a reason,
in the validator, the Rust fast path, the consumer's batch decoding, ingest(), the getters, the
producer CLI's key, the features table and the HTTP API. No services needed."""

from __future__ import annotations

import io
import json
from typing import Any

import msgspec
import pytest
from confluent_kafka import Message
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_features import CustomerActivityFeatures, InvalidEvent
from stream_features.config import ServiceConfig
from stream_features.core.events import decode_event, validate_event
from stream_features.errors import InvalidQuery
from stream_features.ingest.decode import decode_batch
from stream_features.ingest.producer import key_of
from stream_features.query.api import MAX_BODY_BYTES, create_app

from .hostile import KINDS, NOW, hostile_records


def consumer_decoding(values: list[bytes | None]) -> tuple[list[str | None], dict[int, str]]:
    """The consumer's decoding of a batch: customers of valid records, reasons of invalid ones."""
    batch, invalid = decode_batch(
        [Message(value=v, partition=0, offset=i) for i, v in enumerate(values)], now=NOW, max_future_skew_seconds=86400
    )
    reasons = {index: exc.reason for index, exc in invalid}
    events = [None if (e := batch.event(i)) is None else e[1] for i in range(len(values))]
    return events, reasons


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_hostile_kind_is_an_invalid_event_everywhere(kind: str) -> None:
    records = [data for name, data in hostile_records(700, seed=1) if name == kind]
    events, reasons = consumer_decoding(list(records))
    for index, data in enumerate(records):
        with pytest.raises(InvalidEvent) as caught:
            decode_event(data, now=NOW)
        assert caught.value.reason != "internal_error", (kind, data[:80], caught.value.message)
        assert events[index] is None and reasons[index] == caught.value.reason
        assert key_of(data) is None or isinstance(key_of(data), bytes)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, "too_large"),
        (b'{"type":"purchase","customer_id":"c","timestamp":' + b"9" * 400 + b',"amount":1}', "bad_timestamp"),
        (b'{"type":"purchase","customer_id":"c","timestamp":1795000000,"amount":-5,"junk":1e400}', "negative_value"),
        (b'{"type":"purchase","customer_id":"c","timestamp":"2026-11-26T10:00:00+01:99","amount":1}', "bad_timestamp"),
        (b'{"type":"purchase","customer_id":"c","timestamp":"2026-11-26T10:00:00+24:00","amount":1}', "bad_timestamp"),
        (b'{"type":"purchase","customer_id":"c","timestamp":1795000000,"amount":1e400}', "non_finite"),
    ],
)
def test_named_poison_pills(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(data, now=NOW)
    assert caught.value.reason == reason
    assert consumer_decoding([data])[1] == {0: reason}


def test_the_contract_has_one_answer_for_each_shape() -> None:
    amount_null = b'{"type":"purchase","customer_id":"c","timestamp":1795000000,"amount":null,"value":5}'
    as_dict = json.loads(amount_null)
    engine = CustomerActivityFeatures(clock=lambda: NOW)
    engine.ingest(as_dict)  # the alias applies when amount is null, in ingest() too
    assert engine.get_total_purchase_value("c", as_of=NOW) == 5.0
    assert decode_event(amount_null, now=NOW).amount == 5.0 and consumer_decoding([amount_null])[0] == ["c"]
    # An unknown field holding a number too big for a float is ignored for every type.
    for kind, fields in [("purchase", '"amount":1'), ("profile", '"attributes":{"a":1}')]:
        data = f'{{"type":"{kind}","customer_id":"c","timestamp":1795000000,{fields},"junk":1e400}}'.encode()
        assert decode_event(data, now=NOW).customer_id == "c"
    # -0 is 0 in both decoders (the Rust fast path takes this record).
    zero = b'{"type":"support","customer_id":"c","timestamp":-0.0}'
    batch, _ = decode_batch([Message(value=zero, partition=0, offset=0)], now=NOW, max_future_skew_seconds=86400)
    event = batch.event(0)
    assert event is not None and str(event[2]) == "0.0" and str(decode_event(zero, now=NOW).timestamp) == "0.0"
    # A string of digits is Unix seconds everywhere (events, queries), never an ISO basic date.
    digits = b'{"type":"support","customer_id":"c","timestamp":"20261126"}'
    assert decode_event(digits, now=NOW).timestamp == 20261126.0


def test_ingest_and_getters_refuse_hostile_values_with_clear_errors() -> None:
    engine = CustomerActivityFeatures(clock=lambda: NOW)
    for bad in [{"type": "purchase", "customer_id": "c", "timestamp": 10**400, "amount": 1}, {"nested": [[[[]]]]}]:
        with pytest.raises(InvalidEvent):
            engine.ingest(bad)
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert engine.set_customer_metadata("c", {"deep": deep}) in (True, False)
    with pytest.raises(InvalidQuery):
        engine.get_all_features("c", as_of=10**400)
    with pytest.raises(InvalidQuery):
        engine.get_all_features("c", as_of="2026-11-26T10:00:00+01:99")
    assert engine.get_all_features("c", as_of="20261126")["as_of"] == "1970-08-23T12:05:26Z"


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(data: bytes) -> None:
    try:
        event = decode_event(data, now=NOW)
    except InvalidEvent as exc:
        assert exc.reason != "internal_error", exc.message
        assert consumer_decoding([data])[1] == {0: exc.reason}
    else:
        assert consumer_decoding([data])[0] == [event.customer_id]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither (1e400 comes separately)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        *("type", "customer_id", "timestamp", "event_id", "amount", "value", "device", "duration_seconds"),
        *("status", "response_time_hours", "escalated", "attributes", "order_id", "junk"),
    ]
)
kinds = st.sampled_from(["purchase", "session", "cart", "support", "profile", "other"])


@settings(max_examples=500, deadline=None)
@given(kind=kinds, fields=st.dictionaries(field_names, json_values, max_size=8), number=st.sampled_from(["", "1e400"]))
def test_event_shaped_objects_agree_between_decoders(kind: str, fields: dict[str, Any], number: str) -> None:
    """Objects that look like events, with any JSON in any field: the validator, ingest() and
    the consumer's batch decoding (Rust fast path + Python) all give the same answer."""
    obj = {"type": kind, "customer_id": "c", "timestamp": NOW - 60, **fields}
    data = msgspec.json.encode(obj)
    if number:
        data = data[:-1] + b',"big":' + number.encode() + b"}"
    events, reasons = consumer_decoding([data])
    try:
        event = decode_event(data, now=NOW)
    except InvalidEvent as exc:
        assert exc.reason != "internal_error", exc.message
        assert reasons == {0: exc.reason}
        with pytest.raises(InvalidEvent) as again:
            validate_event(obj, now=NOW)
        assert again.value.reason == exc.reason
    else:
        assert reasons == {} and events == [event.customer_id]
        assert validate_event(obj, now=NOW) == event


def test_features_table_shows_event_data_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_features import cli

    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    result = CustomerActivityFeatures(clock=lambda: NOW)
    result.add_session("[/x]", 10, "[link=http://evil]click[/link]\x1b[31m", NOW - 60)
    cli._print_table(result.get_all_features("[/x]", as_of=NOW))
    text = out.getvalue()
    assert "[/x]" in text and "[link=http://evil]click[/link]" in text and "\x1b[31m" not in text


def test_api_caps_bodies_and_checks_cohort_ids() -> None:
    client = TestClient(create_app(ServiceConfig(redis_url="redis://127.0.0.1:1/0")))
    big = b'{"customer_ids": ["' + b"x" * MAX_BODY_BYTES + b'"]}'

    def chunks() -> Any:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    for body in (big, chunks()):
        response = client.post("/v1/cohorts/features", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    for ids in ([""], [" "], ["x" * 257], ["ok", "y" * 1_000_000], ["", "ok"]):
        response = client.post("/v1/cohorts/summary", json={"customer_ids": ids})
        assert response.status_code == 422 and response.json()["error"] == "invalid_request", response.text
