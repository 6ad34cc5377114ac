"""Hypothesis strategies for raw events near tile edges, with ids that collide on purpose."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

BASE = 1_767_225_600  # 2026-01-01T00:00:00Z, a tile edge for every tile size that divides a day

customer_ids = st.sampled_from(["a", "b:c", "{x}", " padded ", "émoji🙂"])
# Offsets cluster on tile edges (±1 s, ±epsilon) so window boundaries are exercised.
edges = st.integers(min_value=-96, max_value=96).map(lambda h: h * 3600)
jitter = st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 1799.0, 0.000001, -0.000001])
timestamps = st.builds(lambda e, j: BASE + e + j, edges, jitter)
amounts = st.one_of(st.sampled_from([0.0, 0.1, 19.99, 100.0]), st.floats(0, 1e6, allow_nan=False))
event_ids = st.one_of(st.none(), st.sampled_from(["e1", "e2", "e3"]))
attribute_names = st.sampled_from(["tier", "country"])
device_names = st.sampled_from([None, "", "Mobile", " mobile ", "web", "tablet", "tv"])


@st.composite
def raw_events(
    draw: st.DrawFn,
    ids: st.SearchStrategy[str | None] = event_ids,
    attribute_keys: st.SearchStrategy[str] = attribute_names,
    devices: st.SearchStrategy[str | None] = device_names,
    times: st.SearchStrategy[float] = timestamps,
    customers: st.SearchStrategy[str] = customer_ids,
) -> dict[str, Any]:
    kind = draw(st.sampled_from(["purchase", "session", "cart", "support", "profile"]))
    event: dict[str, Any] = {
        "type": kind,
        "customer_id": draw(customers),
        "timestamp": draw(times),
        "event_id": draw(ids),
    }
    if kind == "purchase":
        event["amount"] = draw(amounts)
    elif kind == "session":
        event["duration_seconds"] = draw(amounts)
        event["device"] = draw(devices)
    elif kind == "cart":
        event["status"] = draw(st.sampled_from(["converted", "abandoned"]))
        event["value"] = draw(st.one_of(st.none(), amounts))
    elif kind == "support":
        event["response_time_hours"] = draw(st.one_of(st.none(), amounts))
        event["escalated"] = draw(st.booleans())
    else:
        event["attributes"] = draw(st.dictionaries(attribute_keys, st.text(max_size=3)))
    return event
