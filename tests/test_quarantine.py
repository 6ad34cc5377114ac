"""One customer's unreadable state quarantines that customer, not the stream (SPEC §5), and
`stream-features repair` rebuilds it from Kafka. Real Kafka, real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from stream_features.errors import StateUnreadable
from stream_features.store.keys import aux_key, tiles_key

from .streaming import Pipeline, memory_engine

pytestmark = pytest.mark.integration
NOW = time.time()


def _event(customer: str, n: int, kind: str = "purchase") -> bytes:
    base = {"customer_id": customer, "timestamp": NOW - 86400 + 60 * n, "event_id": f"{customer}-{n}"}
    if kind == "purchase":
        return json.dumps({**base, "type": "purchase", "amount": n + 0.5}).encode()
    return json.dumps({**base, "type": "profile", "attributes": {"tier": f"t{n}"}}).encode()


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    yield fresh
    fresh.cleanup()


def _corrupt(client: redis.Redis, prefix: str, kind: str) -> None:
    main, aux = tiles_key("victim", prefix), aux_key("victim", prefix)
    if kind == "tile":
        field = next(f for f in client.hkeys(main) if f.startswith(b"t:"))
        client.hset(main, field, b"\x01")
    elif kind == "attribute":
        client.hset(main, "a:tier", b"garbage")
    elif kind == "format_version":
        client.hset(main, "fv", b"2")
    elif kind == "bookkeeping":
        client.hset(aux, "m", b"\xc1\xc1 not msgpack")
    elif kind == "event_id":
        client.hset(aux, "e:victim-1", b"abc")
    else:
        client.delete(main)
        client.set(main, b"a string under our key")


@pytest.mark.parametrize("kind", ["tile", "attribute", "format_version", "bookkeeping", "event_id", "wrong_type"])
def test_an_unreadable_customer_is_quarantined_and_repaired(
    pipeline: Pipeline, redis_client: redis.Redis, kind: str
) -> None:
    first = [_event(c, n, "profile" if n == 1 else "purchase") for n in range(6) for c in ("victim", "bystander")]
    pipeline.produce(first)
    assert pipeline.start_consumer("--exit-when-idle", "2").wait(timeout=120) == 0
    _corrupt(redis_client, pipeline.prefix, kind)
    second = [_event(c, n) for n in range(6, 10) for c in ("victim", "bystander")]
    pipeline.produce(second)
    consumer = pipeline.start_consumer("--exit-when-idle", "2")
    assert consumer.wait(timeout=120) == 0  # the stream went on
    stderr = consumer.stderr.read().decode() if consumer.stderr else ""
    assert "'victim' quarantined" in stderr
    letters = pipeline.dead_letters(4, timeout=30)
    assert sorted(m.value() for m in letters) == sorted(line for line in second if b'"victim"' in line)
    assert {dict(m.headers())["error.reason"] for m in letters} == {b"state_unreadable"}
    engine, _ = memory_engine(first + second, time.time())
    reader = pipeline.reader()
    at = time.time()
    assert reader.get_summary("bystander", as_of=at) == engine.get_feature_summary("bystander", as_of=at)
    if kind in ("tile", "attribute", "format_version"):
        with pytest.raises(StateUnreadable):
            reader.get_features("victim")
        assert "victim" not in reader.get_cohort_features(["victim", "bystander"])  # left out, not failed
    connection = ["--bootstrap-servers", pipeline.bootstrap, "--topic", pipeline.topic]
    connection += ["--redis-url", pipeline.redis_url, "--key-prefix", pipeline.prefix]
    repair = subprocess.run(
        [sys.executable, "-m", "stream_features", "repair", "victim", "--no-progress", *connection],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert repair.returncode == 0, repair.stderr
    assert json.loads(repair.stdout)["records_of_customer"] >= 10
    assert reader.get_summary("victim", as_of=at) == engine.get_feature_summary("victim", as_of=at)
    # Repaired, the customer flows again.
    third = [_event("victim", 20)]
    pipeline.produce(third)
    assert pipeline.start_consumer("--exit-when-idle", "2").wait(timeout=120) == 0
    engine, _ = memory_engine(first + second + third, time.time())
    assert reader.get_summary("victim", as_of=at) == engine.get_feature_summary("victim", as_of=at)
