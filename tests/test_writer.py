"""The Redis writer's failure paths against a real Redis: lost script cache, concurrent writers,
error replies."""

from __future__ import annotations

import pytest
import redis

from stream_features import EngineSettings, Outcome, decode_event
from stream_features.ingest.decode import PendingEvent, apply_events
from stream_features.query.reader import FeatureReader
from stream_features.store.writer import StateWriter

APPLIED = Outcome.APPLIED.code

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0
SETTINGS = EngineSettings()


def purchases(customer: str, first_offset: int, count: int, partition: int = 0) -> list[PendingEvent]:
    events = []
    for index in range(count):
        raw = (
            f'{{"type": "purchase", "customer_id": "{customer}", "event_id": "p{partition}-{first_offset + index}",'
            f' "timestamp": {NOW - 86400 + 60 * (first_offset + index)}, "amount": {index + 1}}}'
        )
        events.append(PendingEvent(decode_event(raw.encode(), now=NOW), partition, first_offset + index))
    return events


def purchase_count(client: redis.Redis, prefix: str, customer: str) -> int:
    reader = FeatureReader(client, SETTINGS, prefix=prefix, clock=lambda: NOW)
    return int(reader.get_features(customer, days=7)["purchase_count"])


def test_lost_script_cache_is_reloaded_and_the_batch_still_applies_once(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    writer = StateWriter(redis_client, SETTINGS, prefix=key_prefix, customers_per_call=2)
    batch = {f"c{i}": purchases(f"c{i}", 0, 3) for i in range(5)}
    assert apply_events(writer, batch) == {customer: APPLIED * 3 for customer in batch}
    redis_client.script_flush()  # as after a Redis restart without persistence of scripts
    later = {f"c{i}": purchases(f"c{i}", 3, 2) for i in range(5)}
    assert apply_events(writer, later) == {customer: APPLIED * 2 for customer in later}
    assert [purchase_count(redis_client, key_prefix, f"c{i}") for i in range(5)] == [5] * 5


def test_a_customer_written_by_another_writer_is_reloaded_not_overwritten(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """Two writers (two consumers after a rebalance, or one customer on two partitions)."""
    first = StateWriter(redis_client, SETTINGS, prefix=key_prefix)
    second = StateWriter(redis_client, SETTINGS, prefix=key_prefix)
    apply_events(first, {"c": purchases("c", 0, 2, partition=0)})
    apply_events(second, {"c": purchases("c", 0, 3, partition=1)})  # first's cached version is now stale
    outcome = apply_events(first, {"c": purchases("c", 2, 4, partition=0)})
    assert outcome == {"c": APPLIED * 4}
    assert purchase_count(redis_client, key_prefix, "c") == 2 + 3 + 4
    # and the stale writer's redelivery of what it wrote before is still recognised
    assert apply_events(first, {"c": purchases("c", 0, 2, partition=0)}) == {"c": "ss"}


def test_an_error_reply_is_raised_not_retried_as_a_conflict(redis_client: redis.Redis, key_prefix: str) -> None:
    writer = StateWriter(redis_client, SETTINGS, prefix=key_prefix)
    apply_events(writer, {"c": purchases("c", 0, 1)})
    previous = redis_client.config_get("maxmemory")["maxmemory"]
    redis_client.config_set("maxmemory", 1)  # every write is refused with OOM
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            apply_events(writer, {"c": purchases("c", 1, 1)})
    finally:
        redis_client.config_set("maxmemory", previous)
    # nothing was written, and once Redis accepts writes the same batch applies normally
    assert apply_events(writer, {"c": purchases("c", 1, 1)}) == {"c": APPLIED}
    assert purchase_count(redis_client, key_prefix, "c") == 2
