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


def purchase(
    customer: str, event_id: str, timestamp: float, amount: float, partition: int, offset: int
) -> PendingEvent:
    raw = (
        f'{{"type": "purchase", "customer_id": "{customer}", "event_id": "{event_id}",'
        f' "timestamp": {timestamp}, "amount": {amount}}}'
    )
    return PendingEvent(decode_event(raw.encode(), now=NOW), partition, offset)


def purchases(customer: str, first_offset: int, count: int, partition: int = 0) -> list[PendingEvent]:
    offsets = range(first_offset, first_offset + count)
    return [
        purchase(customer, f"p{partition}-{o}", NOW - 86400 + 60 * o, o - first_offset + 1, partition, o)
        for o in offsets
    ]


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


def hourly_purchases(customer: str, count: int, *, partition: int = 0, first_offset: int = 0) -> list[PendingEvent]:
    """Purchases an hour apart: each lands in a tile of its own (two fields per event: tile, id)."""
    return [
        purchase(customer, f"h{partition}-{i}", NOW - 3600 * (count - i), i % 7 + 0.25, partition, first_offset + i)
        for i in range(count)
    ]


def engine_features(events: list[PendingEvent], customer: str) -> dict[str, object]:
    from stream_features import CustomerActivityFeatures

    engine = CustomerActivityFeatures(SETTINGS, clock=lambda: NOW)
    for item in events:
        engine.apply(item.event)
    return engine.get_all_features(customer, 400, NOW)


def test_a_customer_larger_than_the_call_budget_is_split_across_calls_and_written_once(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    from stream_features.ingest.decode import batch_of

    writer = StateWriter(redis_client, SETTINGS, prefix=key_prefix, call_budget_us=800.0)
    big = hourly_purchases("big", 3000)
    small = [item for i in range(40) for item in hourly_purchases(f"s{i}", 5, first_offset=10_000 + 5 * i)]
    batch = batch_of(big + small)
    prepared = writer.prepare(batch)
    costs = prepared.costs()
    # 3,000 events = 6,000 fields: far over one call's budget, so several calls, none over it.
    assert len(prepared) >= 6000 * 0.8 / 800 and max(costs) <= 800.0
    assert writer.settle(batch, prepared, writer.execute(prepared)) == []
    assert batch.codes() == APPLIED * len(big + small)
    assert redis_client.hlen(f"{key_prefix}:{{big}}") == 3000
    reader = FeatureReader(redis_client, SETTINGS, prefix=key_prefix, clock=lambda: NOW)
    assert reader.get_features("big", days=400) == engine_features(big, "big")
    # Written once: the same records again are all recognised as already applied.
    assert apply_events(writer, {"big": big}) == {"big": "s" * 3000}
    assert reader.get_features("big", days=400) == engine_features(big, "big")


def test_a_write_between_two_parts_of_a_customer_is_neither_lost_nor_doubled(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """Another writer writes the customer after its first part and before the rest: the rest is
    refused (each part expects the version its previous part wrote, a token no other write can
    produce) and redone on top of what is there, without repeating the first part."""
    from stream_features.ingest.decode import batch_of
    from stream_features.store.clients import roundtrip

    writer = StateWriter(redis_client, SETTINGS, prefix=key_prefix, call_budget_us=200.0)
    other = StateWriter(redis_client, SETTINGS, prefix=key_prefix)
    events = hourly_purchases("big", 600)
    batch = batch_of(events)
    prepared = writer.prepare(batch)
    assert len(prepared) >= 3
    redis_client.script_load(writer._source)
    first = roundtrip(redis_client, prepared.packed(writer._sha, 0, 1), 1)
    interloper = purchases("big", 0, 1, partition=1)
    assert apply_events(other, {"big": interloper}) == {"big": APPLIED}
    rest = roundtrip(redis_client, prepared.packed(writer._sha, 1, len(prepared)), len(prepared) - 1)
    replies = [reply.decode() for reply in [*first, *rest]]
    assert replies[0] == "1" and set(replies[1:]) == {"0"}
    assert writer.settle(batch, prepared, replies) == ["big"]
    done = batch.codes().count(APPLIED)  # the first part's records
    assert 0 < done < 600
    writer.apply(batch, ["big"])
    assert batch.codes() == APPLIED * 600  # the first part's records keep their outcome
    reader = FeatureReader(redis_client, SETTINGS, prefix=key_prefix, clock=lambda: NOW)
    expected = engine_features([*events[:done], *interloper, *events[done:]], "big")
    assert reader.get_features("big", days=400) == expected
