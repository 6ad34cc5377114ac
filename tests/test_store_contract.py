"""One contract, two backends: the Redis store must hold exactly what the in-memory engine holds."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_features import EngineSettings, Thresholds
from stream_features.events import validate_event
from stream_features.store.keys import tiles_key

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
    events=st.lists(raw_events(), max_size=30), days=st.integers(1, 3), as_of=timestamps, batch_size=st.integers(1, 12)
)
def test_redis_equals_memory_and_reference(
    redis_client: redis.Redis,
    key_prefix: str,
    events: list[dict[str, Any]],
    days: int,
    as_of: float,
    batch_size: int,
) -> None:
    typed = [validate_event(e, now=NOW) for e in events]
    prefix = f"{key_prefix}:{uuid.uuid4().hex[:8]}"  # hypothesis reuses the fixture across examples
    memory = MemoryBackend(SMALL, NOW)
    store = RedisBackend(redis_client, SMALL, prefix, NOW, batch_size=batch_size)
    assert store.apply(typed) == memory.apply(typed)
    for customer_id in {e.customer_id for e in typed}:
        assert store.summary(customer_id, days, as_of) == memory.summary(customer_id, days, as_of)
        accepted = reference.accept_in_order([e for e in typed if e.customer_id == customer_id], SMALL)
        expected = reference.features(accepted, days=days, as_of=as_of, settings=SMALL)
        got = store.features(customer_id, days, as_of)
        for name, value in expected.items():
            assert got[name] == (pytest.approx(value, rel=1e-9, abs=1e-9) if isinstance(value, float) else value)


def test_batch_boundaries_and_replays_leave_identical_bytes(redis_client: redis.Redis, key_prefix: str) -> None:
    events = [validate_event(e, now=NOW) for e in st.lists(raw_events(), min_size=80, max_size=80).example()]
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
    assert redis_client.hgetall(key) == {
        b"t:2": b"n=2 pc=1 ps=19.99 pt=7200.5 sc=1 sd=60 d:smart%20tv=1",
        b"t:1": b"n=2 ca=1 cav=5 tc=1 rs=1.5 rn=1 te=1",
        b"t:0": b"n=1",
        b"a:tier": b'10 "gold"',
    }
    aux = redis_client.hgetall(key + ":x")
    assert aux[b"o:topic:0"] == b"4" and aux[b"nt"] == b"2" and aux[b"nts"] == b"7300"
    assert aux[b"e:e1"] == b"7200.5"
    assert 0 < redis_client.ttl(key) <= 401 * 86400
