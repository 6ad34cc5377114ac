"""The Rust twin of the feature maths (``_native.FeatureMaths``, used by the readers) against
``core/features.py`` on generated customers, without Redis: the same record, key for key and
bit for bit; and every hash it cannot read exactly as Python would is left to Python."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_features import CustomerActivityFeatures, EngineSettings, InvalidEvent, Thresholds
from stream_features.core.features import flat_features
from stream_features.core.tiles import encode_tile
from stream_features.core.timeparse import unix_to_iso
from stream_features.query.reader import feature_maths
from stream_features.store.hash_fields import encode_attribute
from stream_features.store.tile_hash import decode_customer_hash

from .strategies import BASE, raw_events, timestamps

NOW = BASE + 30 * 86400
SMALL = EngineSettings(
    retention_days=3,
    max_devices_per_tile=2,
    thresholds=Thresholds(short_window_days=1, long_window_days=3, high_activity_ratio=1.2, cart_min_count=1),
)


def _hashes(raw: list[dict[str, Any]], engine_settings: EngineSettings) -> dict[str, dict[bytes, bytes]]:
    """Customers' tiles hashes as Redis holds them, from the in-memory engine's states."""
    engine = CustomerActivityFeatures(engine_settings, clock=lambda: NOW)
    for event in raw:
        try:
            engine.ingest(event)
        except InvalidEvent:
            continue
    hashes = {}
    for customer in engine.customer_ids():
        state = engine.state_of(customer)
        assert state is not None
        fields = {f"t:{index}".encode(): encode_tile(tile) for index, tile in state.tiles.items()}
        for key, (at, value) in state.attributes.items():
            fields[f"a:{key}".encode()] = encode_attribute(at, value)
        hashes[customer] = fields
    return hashes


def _same(raw: list[dict[str, Any]], days: int, as_of: float, engine_settings: EngineSettings) -> None:
    hashes = _hashes(raw, engine_settings)
    customers = list(hashes)
    replies = [hashes[c] for c in customers]
    flat_replies = [[item for pair in reply.items() for item in pair] for reply in replies]
    maths = feature_maths(engine_settings)
    for shape in (replies, flat_replies):  # redis-py's dicts, or raw RESP lists
        fast = maths.flat(customers, shape, days, as_of, unix_to_iso(as_of))
        for customer, got in zip(customers, fast, strict=True):
            tiles, _ = decode_customer_hash(hashes[customer], customer)
            expected = flat_features(customer, tiles, days=days, as_of=as_of, settings=engine_settings)
            assert got is not None
            assert list(got) == list(expected)  # the same keys in the same order
            assert got == expected
            assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


@settings(max_examples=300, deadline=None)
@given(st.lists(raw_events(), max_size=50), st.integers(1, 3), timestamps)
def test_rust_maths_equal_python_maths_small_retention(raw: list[dict[str, Any]], days: int, as_of: float) -> None:
    _same(raw, days, as_of, SMALL)


@settings(max_examples=150, deadline=None)
@given(st.lists(raw_events(), max_size=50), st.sampled_from([1, 7, 30, 90, 400]), timestamps)
def test_rust_maths_equal_python_maths_default_settings(raw: list[dict[str, Any]], days: int, as_of: float) -> None:
    _same(raw, days, as_of, EngineSettings())


@pytest.mark.parametrize(
    "fields",
    [
        {b"fv": b"2", b"t:1": b""},  # a later layout
        {b"t:+5": b"\x00\x00"},  # int() reads it, the fast path does not
        {b"t:5": b"\x00\x00", b"t:05": b"\x00\x00"},  # one tile to Python
        {b"t:5": b"\x01\x00"},  # too short
        {b"t:5": b"\x01\x00" + b"\x00" * 7},
        {b"a:tier": b'not-a-time "gold"'},
        {b"a:tier": b"1 {broken"},
        {b"\xff": b"x"},  # not UTF-8
        {b"t:5": b"\x00\x00\x03\x00web\x01\x00\x00\x00\x03\x00web\x02\x00\x00\x00"},  # a device twice
    ],
)
def test_what_the_fast_path_cannot_read_exactly_is_left_to_python(fields: dict[bytes, bytes]) -> None:
    maths = feature_maths(EngineSettings())
    assert maths.flat(["c"], [fields], 30, NOW, unix_to_iso(NOW)) == [None]
