"""One contract, two backends: the Redis store must hold exactly what the in-memory engine holds."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_features import EngineSettings, Thresholds
from stream_features.events import validate_event
from stream_features.store.keys import tiles_key
from stream_features.tiles import encode_tile

from . import reference
from .backends import MemoryBackend, RedisBackend
from .strategies import BASE, raw_events, timestamps

pytestmark = pytest.mark.integration
NOW = BASE + 30 * 86400
SMALL = EngineSettings(
    retention_days=3, dedup_horizon_seconds=7200, thresholds=Thresholds(short_window_days=1, long_window_days=3)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(raw_events(), max_size=30),
    days=st.integers(1, 3),
    as_of=timestamps,
    batch_size=st.integers(1, 12),
    cold_cache=st.booleans(),
)
def test_redis_equals_memory_and_reference(
    redis_client: redis.Redis,
    key_prefix: str,
    events: list[dict[str, Any]],
    days: int,
    as_of: float,
    batch_size: int,
    cold_cache: bool,
) -> None:
    """cold_cache: the writer forgets every customer after each batch, so each batch starts from
    the state read back from Redis (ids, offsets, tiles): the stored form must lose nothing."""
    typed = [validate_event(e, now=NOW) for e in events]
    prefix = f"{key_prefix}:{uuid.uuid4().hex[:8]}"  # hypothesis reuses the fixture across examples
    memory = MemoryBackend(SMALL, NOW)
    store = RedisBackend(redis_client, SMALL, prefix, NOW, batch_size=batch_size, cold_cache=cold_cache)
    assert store.apply(typed) == memory.apply(typed)
    for customer_id in {e.customer_id for e in typed}:
        assert store.summary(customer_id, days, as_of) == memory.summary(customer_id, days, as_of)
        accepted = reference.accept_in_order([e for e in typed if e.customer_id == customer_id], SMALL)
        expected = reference.features(accepted, days=days, as_of=as_of, settings=SMALL)
        got = store.features(customer_id, days, as_of)
        for name, value in expected.items():
            assert got[name] == (pytest.approx(value, rel=1e-9, abs=1e-9) if isinstance(value, float) else value)
        # The Rust core stores each tile exactly as the Python reference encodes it (tiles past
        # retention may be swept at different moments, so only tiles both still hold compare).
        state = memory.engine.state_of(customer_id)
        stored = redis_client.hgetall(tiles_key(customer_id, prefix))
        for index, tile in (state.tiles if state else {}).items():
            raw = stored.get(f"t:{index}".encode())
            assert raw is None or raw == encode_tile(tile)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.lists(raw_events(), min_size=1, max_size=80))
def test_batch_boundaries_and_replays_leave_identical_bytes(
    redis_client: redis.Redis, key_prefix: str, raw: list[dict[str, Any]]
) -> None:
    """The tiles hash depends only on the events, never on batching; a replay changes nothing."""
    events = [validate_event(e, now=NOW) for e in raw]
    key_prefix = f"{key_prefix}:{uuid.uuid4().hex[:8]}"
    snapshots = []
    for run, batch_size in enumerate((1, 5, 80)):
        prefix = f"{key_prefix}:{run}"
        store = RedisBackend(redis_client, SMALL, prefix, NOW, batch_size=batch_size)
        store.apply(events)
        store.next_offset = 0
        assert set(store.apply(events)) <= {"s", "L"}  # a full replay changes nothing
        snapshots.append({e.customer_id: redis_client.hgetall(tiles_key(e.customer_id, prefix)) for e in events})
    assert snapshots[0] == snapshots[1] == snapshots[2]


def test_key_layout_is_pinned(redis_client: redis.Redis, key_prefix: str) -> None:
    """The README documents these exact bytes; another language may read them."""
    raw = [
        {"type": "purchase", "customer_id": "c{1}", "timestamp": 7200.5, "amount": 19.99, "event_id": "e1"},
        {"type": "session", "customer_id": "c{1}", "timestamp": 7300, "duration_seconds": 60, "device": "Smart TV"},
        {"type": "support", "customer_id": "c{1}", "timestamp": 3600, "response_time_hours": 1.5, "escalated": True},
        {"type": "cart", "customer_id": "c{1}", "timestamp": 3601, "status": "abandoned", "value": 5},
        {"type": "profile", "customer_id": "c{1}", "timestamp": 10, "attributes": {"tier": "gold"}},
    ]
    store = RedisBackend(redis_client, EngineSettings(), key_prefix, 1e9, batch_size=10)
    store.apply([validate_event(e, now=1e9) for e in raw])
    key = f"{key_prefix}:{{c%7B1%7D}}"

    def doubles(*values: float) -> bytes:
        return struct.pack(f"<{len(values)}d", *values)

    # tile 2: n pc ps pt sc sd (bits 0-5) + device "smart tv" with one session
    tile2 = struct.pack("<H", 0b111111) + doubles(2, 1, 19.99, 7200.5, 1, 60) + struct.pack("<H", 8) + b"smart tv"
    tile2 += struct.pack("<I", 1)
    # tile 1: n ca cav tc rs rn te (bits 0, 7, 8, 9, 10, 11, 12)
    tile1 = struct.pack("<H", 0b1111110000001) + doubles(2, 1, 5, 1, 1.5, 1, 1)
    assert redis_client.hgetall(key) == {
        b"t:2": tile2,
        b"t:1": tile1,
        b"t:0": struct.pack("<H", 1) + doubles(1),
        b"a:tier": b'10.0 "gold"',
    }
    aux = redis_client.hgetall(key + ":x")
    assert aux[b"v"] == b"1" and aux[b"e:e1"] == struct.pack("<d", 7200.5)
    meta = msgspec.msgpack.decode(aux[b"m"])
    assert meta["nt"] == 2 and meta["nts"] == 7300.0 and meta["o"] == {"topic:0": 4} and meta["j"] == {}
    assert meta["np"] == 7200.5 + 86400  # first event + one day
    assert 0 < redis_client.ttl(key) <= 401 * 86400
