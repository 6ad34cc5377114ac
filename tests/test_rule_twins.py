"""The rules' two implementations held equal on every ``pytest``, without Redis: the Rust core
(what the consumer runs) and ``CustomerState`` (the reference the in-memory engine runs) are
fed the same generated event streams, cut into batches at random, and must give the same
outcome for every event and the same state for every customer (tiles byte for byte, newest
time and tile, remembered ids, attributes, housekeeping and sweep points)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stream_features import EngineSettings, InvalidEvent, Thresholds
from stream_features._native import Core
from stream_features.core.customer_state import CustomerState
from stream_features.core.events import Event, validate_event
from stream_features.core.tiles import encode_tile
from stream_features.ingest.decode import PendingEvent, batch_of
from stream_features.store.hash_fields import encode_attribute

from .strategies import BASE, raw_events, timestamps

NOW = BASE + 30 * 86400
SMALL = EngineSettings(
    retention_days=3,
    dedup_horizon_seconds=7200,
    max_attributes=2,
    max_devices_per_tile=2,
    max_event_ids=3,
    thresholds=Thresholds(short_window_days=1, long_window_days=3),
)
many_ids = st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(60)]))  # past the id sweep (32)
many_keys = st.sampled_from(["tier", "country", "plan", "lang"])
# Mostly one tile (so per-tile device caps are reached), sometimes days apart (too_late, pruning).
crowded = st.builds(lambda second: BASE + second, st.integers(0, 3599))
many_devices = st.sampled_from([None, "web", "tv", "tablet", "Mobile", "watch"])
FOUR_DEVICES = [
    {"type": "session", "customer_id": "a", "timestamp": BASE + i, "duration_seconds": 1, "device": device}
    for i, device in enumerate(["web", "tv", "tablet", "mobile"])
]
times = st.one_of(crowded, crowded, timestamps)


def _python(events: list[Event], engine: EngineSettings) -> tuple[str, dict[str, dict[str, Any]]]:
    states: dict[str, CustomerState] = {}
    codes = ""
    for event in events:
        codes += states.setdefault(event.customer_id, CustomerState()).apply(event, engine).code
    return codes, {customer: _snapshot(state) for customer, state in states.items()}


def _snapshot(state: CustomerState) -> dict[str, Any]:
    return {
        "tiles": {index: encode_tile(tile) for index, tile in state.tiles.items()},
        "newest_ts": state.newest_ts,
        "newest_tile": state.newest_tile,
        "seen_event_ids": dict(state.seen_event_ids),
        "attributes": {key: (at, encode_attribute(at, value)) for key, (at, value) in state.attributes.items()},
        "next_prune_ts": state.next_prune_ts,
        "ids_sweep_at": state._ids_sweep_at,
    }


def _rust(batches: list[list[Event]], engine: EngineSettings) -> tuple[str, dict[str, dict[str, Any]]]:
    core = Core(
        topic="t",
        prefix="sf",
        tile_seconds=engine.tile_seconds,
        retention_tiles=engine.retention_tiles,
        tiles_per_day=engine.tiles_per_day,
        dedup_horizon_seconds=engine.dedup_horizon_seconds,
        max_attributes=engine.max_attributes,
        max_devices_per_tile=engine.max_devices_per_tile,
        max_event_ids=engine.max_event_ids,
        key_ttl_seconds=0,
        customers_per_call=3,
        call_budget_us=60.0,
        cache_limit_bytes=1 << 40,
    )
    codes, offset, customers = "", 0, set()
    for events in batches:
        batch = batch_of(PendingEvent(event, 0, offset + i) for i, event in enumerate(events))
        offset += len(events)
        for customer in core.missing(batch):
            core.load(customer, [], [])  # a new customer: both hashes empty
        prepared = core.prepare(batch, None, NOW)
        written = ["1" * (len(prepared.call(i)[0]) // 2) for i in range(len(prepared))]
        assert core.settle(batch, prepared, written) == []
        codes += batch.codes()
        customers.update(batch.customers)
    snapshots = {customer: core.snapshot(customer) for customer in customers}
    return codes, {customer: snapshot for customer, snapshot in snapshots.items() if snapshot is not None}


def _compare(raw: list[dict[str, Any]], cuts: list[int], engine: EngineSettings) -> None:
    events = []
    for item in raw:
        try:
            events.append(validate_event(item, now=NOW))
        except InvalidEvent:
            continue
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    batches = [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    python_codes, python_states = _python(events, engine)
    rust_codes, rust_states = _rust(batches, engine)
    assert rust_codes == python_codes
    assert rust_states == python_states


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        raw_events(
            ids=many_ids, attribute_keys=many_keys, devices=many_devices, times=times, customers=st.sampled_from("ab")
        ),
        max_size=120,
    ),
    st.lists(st.integers(0, 120)),
)
@example(FOUR_DEVICES, [])  # past the device cap in one tile, for certain
def test_rust_rules_equal_python_rules_with_small_caps(raw: list[dict[str, Any]], cuts: list[int]) -> None:
    _compare(raw, cuts, SMALL)


@settings(max_examples=150, deadline=None)
@given(st.lists(raw_events(), max_size=60), st.lists(st.integers(0, 60)))
def test_rust_rules_equal_python_rules_with_default_settings(raw: list[dict[str, Any]], cuts: list[int]) -> None:
    _compare(raw, cuts, EngineSettings())
