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
from stream_features.core.events import validate_event
from stream_features.store.keys import tiles_key

from . import reference
from .backends import MemoryBackend, RedisBackend
from .same_state import assert_stored_state_equal
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
    # The Rust core stores exactly what the Python reference holds: every tile byte for byte
    # (swept past retention at the same moments), attributes, remembered ids, bookkeeping.
    assert_stored_state_equal(memory.engine, redis_client, prefix)


# Caps small enough for generated streams to run into each of them often.
CAPPED = EngineSettings(
    retention_days=3,
    dedup_horizon_seconds=7200,
    thresholds=Thresholds(short_window_days=1, long_window_days=3),
    max_attributes=3,
    max_devices_per_tile=2,
    max_event_ids=4,
)
capped_events = raw_events(
    ids=st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(9)])),
    attribute_keys=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
    devices=st.sampled_from(["web", "tv", "tablet", "phone", "watch"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(capped_events, max_size=60), batch_size=st.integers(1, 12), cold_cache=st.booleans())
def test_caps_act_the_same_in_both_backends(
    redis_client: redis.Redis, key_prefix: str, events: list[dict[str, Any]], batch_size: int, cold_cache: bool
) -> None:
    """Past each bounded-state cap both backends keep the same devices, attributes and ids: the
    same outcomes (an evicted id counts again), features and metadata, also when every batch
    starts from the state read back from Redis."""
    typed = [validate_event(e, now=NOW) for e in events]
    prefix = f"{key_prefix}:{uuid.uuid4().hex[:8]}"
    memory = MemoryBackend(CAPPED, NOW)
    store = RedisBackend(redis_client, CAPPED, prefix, NOW, batch_size=batch_size, cold_cache=cold_cache)
    assert store.apply(typed) == memory.apply(typed)
    for customer_id in {e.customer_id for e in typed}:
        summary = store.summary(customer_id, 3, NOW)
        assert summary == memory.summary(customer_id, 3, NOW)
        assert len(summary["metadata"]) <= CAPPED.max_attributes
        state = memory.engine.state_of(customer_id)
        if state is not None:
            assert all(len(tile.devices) <= CAPPED.max_devices_per_tile + 1 for tile in state.tiles.values())
            assert len(state.seen_event_ids) <= CAPPED.max_event_ids + CAPPED.max_event_ids // 8
    assert_stored_state_equal(memory.engine, redis_client, prefix)  # the same ids, devices, attributes kept


def test_caps_are_counted_and_deterministic(redis_client: redis.Redis, key_prefix: str) -> None:
    """A hostile producer: 50 devices in one hour, 30 attribute keys, 40 ids for one customer."""
    at = BASE + 3600.0
    raw: list[dict[str, Any]] = [
        {"type": "session", "customer_id": "c", "timestamp": at, "duration_seconds": 1, "device": f"d{i}"}
        for i in range(50)
    ]
    raw += [{"type": "profile", "customer_id": "c", "timestamp": at + i, "attributes": {f"k{i}": i}} for i in range(30)]
    raw += [{"type": "support", "customer_id": "c", "timestamp": at + i, "event_id": f"id{i}"} for i in range(40)]
    typed = [validate_event(e, now=NOW) for e in raw]
    store = RedisBackend(redis_client, CAPPED, key_prefix, NOW, batch_size=17)
    store.apply(typed)
    hits = store.writer.take_cap_hits()
    # Ids: with a cap of 4 the map is swept once it holds 5, so each of ids 5..40 evicts one.
    assert hits == {"devices_per_tile": 48, "attributes": 27, "event_ids": 36}
    memory = MemoryBackend(CAPPED, NOW)
    memory.apply(typed)
    state = memory.engine.state_of("c")
    assert state is not None and {cap.value: count for cap, count in state.cap_hits.items()} == hits
    summary = store.summary("c", 3, at + 3600)
    assert summary["engagement_metrics"]["device_usage"] == {"d0": 1, "d1": 1, "other": 48}
    assert summary["metadata"] == {"k27": 27, "k28": 28, "k29": 29}  # the newest three attributes
    # The oldest ids were forgotten: a re-sent early id counts again, a recent one is a duplicate.
    again = [validate_event({**raw[80], "timestamp": at + 50}, now=NOW), validate_event(raw[119], now=NOW)]
    assert store.apply(again) == ["a", "d"]


def test_every_too_late_record_of_a_batch_is_remembered_for_a_replay(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """A crash between the Redis write and the dead letters' ack replays the batch: every
    too_late record of it must be judged too_late again (so it is dead-lettered), however many."""
    new = {"type": "purchase", "customer_id": "c", "timestamp": BASE + 10 * 86400, "amount": 1}
    old = [{"type": "purchase", "customer_id": "c", "timestamp": BASE + i, "amount": 1} for i in range(40)]
    events = [validate_event(e, now=NOW) for e in [new, *old]]
    store = RedisBackend(redis_client, SMALL, key_prefix, NOW, batch_size=100, cold_cache=True)
    assert store.apply(events) == ["a"] + ["l"] * 40
    store.next_offset = 0  # the replay
    assert store.apply(events) == ["s"] + ["L"] * 40


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
    # The version is a token that no other write produces (any non-zero decimal), not a count.
    assert aux[b"v"].isdigit() and int(aux[b"v"]) > 0 and aux[b"e:e1"] == struct.pack("<d", 7200.5)
    meta = msgspec.msgpack.decode(aux[b"m"])
    assert meta["nt"] == 2 and meta["nts"] == 7300.0 and meta["o"] == {"topic:0": 4} and meta["j"] == {}
    assert meta["np"] == 7200.5 + 86400  # first event + one day
    assert 0 < redis_client.ttl(key) <= 401 * 86400
