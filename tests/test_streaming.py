"""The streaming path end to end against a real Kafka broker and a real Redis server."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from .hostile import hostile_records
from .streaming import Pipeline, assert_same_state, memory_engine, recent_events, stop, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    yield fresh
    fresh.cleanup()


@pytest.mark.quick  # the end-to-end test of `deploy/test.sh --quick`
def test_end_to_end_equals_memory_engine_and_dead_letters(pipeline: Pipeline) -> None:
    lines = recent_events(4000, 300, seed=11)
    pipeline.produce(lines)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=120) == 0, consumer.stderr.read().decode() if consumer.stderr else ""
    now = time.time()
    engine, reasons = memory_engine(lines, now)
    assert reasons, "the generator should include invalid events"
    assert assert_same_state(engine, pipeline, as_of=now) > 250
    letters = pipeline.dead_letters(sum(reasons.values()))
    got: dict[str, int] = {}
    for letter in letters:
        headers = dict(letter.headers())
        got[headers["error.reason"].decode()] = got.get(headers["error.reason"].decode(), 0) + 1
        assert headers["source.topic"].decode() == pipeline.topic
        assert int(headers["source.offset"]) >= 0 and headers["error.message"]
        assert letter.value() in lines  # the original bytes, untouched
    assert got == reasons


def test_sigkill_at_random_moments_then_restart_gives_clean_state(pipeline: Pipeline) -> None:
    lines = recent_events(80000, 4000, seed=12)
    pipeline.produce(lines)
    end = pipeline.end_offsets()
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        before = pipeline.committed()
        if before >= end:
            break
        consumer = pipeline.start_consumer("--batch-size", str(rng.choice([100, 200, 400])))  # slow: time to kill
        try:
            # Kill once it has committed something new, after a random extra delay: mid-batch most times.
            wait_until(
                lambda b=before, c=consumer: pipeline.committed() > b or c.poll() is not None,
                timeout=60,
                what="progress before the kill",
            )
            time.sleep(rng.uniform(0.0, 1.0))
        finally:
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGKILL)
                consumer.wait(timeout=10)
                kills += 1
    assert kills >= 3, f"only {kills} kills: the consumer finished too early for this test"
    final = pipeline.start_consumer("--exit-when-idle", "3")
    assert final.wait(timeout=180) == 0
    pipeline.wait_all_committed()
    now = time.time()
    engine, _ = memory_engine(lines, now)
    assert assert_same_state(engine, pipeline, as_of=now) > 3000


def test_two_consumers_with_rebalance_mid_stream(pipeline: Pipeline) -> None:
    """A second consumer joins mid-stream and takes partitions, then the first leaves mid-stream
    and the second takes them all; every event is applied exactly once. Produced in three parts,
    so each group shape has records of its own to read however fast the consumers are; who holds
    what is the broker's view of the group."""
    lines = recent_events(40000, 2000, seed=13)
    parts = lines[:20000], lines[20000:30000], lines[30000:]
    pipeline.produce(parts[0])
    first = pipeline.start_consumer("--batch-size", "1000")
    wait_until(lambda: pipeline.committed() > 2000, timeout=60, what="first consumer progress")
    assert pipeline.members() == [[0, 1, 2, 3]]
    second = pipeline.start_consumer("--batch-size", "1000")  # rebalance: join
    wait_until(lambda: _both_hold_partitions(pipeline), timeout=60, what="the second consumer to get partitions")
    pipeline.produce(parts[1])  # read while both hold partitions
    wait_until(lambda: pipeline.committed() >= 30000, timeout=90, what="the second part with two consumers")
    assert _both_hold_partitions(pipeline), pipeline.members()  # no one left meanwhile
    assert stop(first) == 0  # rebalance: leave, partitions move to the second consumer
    wait_until(lambda: pipeline.members() == [[0, 1, 2, 3]], timeout=60, what="the second consumer to take all")
    pipeline.produce(parts[2])  # read by the second consumer alone
    pipeline.wait_all_committed()
    assert pipeline.members() == [[0, 1, 2, 3]] and second.poll() is None
    assert stop(second) == 0
    now = time.time()
    engine, _ = memory_engine(lines, now)
    assert assert_same_state(engine, pipeline, as_of=now) > 1500


def test_a_partition_that_comes_back_is_never_committed_behind_its_last_owner(pipeline: Pipeline) -> None:
    """Partitions move to a second consumer, which reads on, and come back when it leaves. The
    first consumer must not commit its own older offsets for them again when it next commits:
    the group would show lag that never drains (and a drain with --exit-when-idle never ends)."""
    lines = recent_events(9000, 600, seed=14)
    pipeline.produce(lines[:4000])
    first = pipeline.start_consumer("--batch-size", "500", "--client-id", "first-{pid}")
    pipeline.wait_all_committed()
    second = pipeline.start_consumer("--batch-size", "500", "--client-id", "second-{pid}")
    wait_until(lambda: _both_hold_partitions(pipeline), timeout=60, what="the second consumer to get partitions")
    kept = _partitions_of(pipeline, "first-")
    pipeline.produce(lines[4000:8000])  # the second consumer reads its partitions on
    pipeline.wait_all_committed()
    assert stop(second) == 0
    wait_until(lambda: pipeline.members() == [[0, 1, 2, 3]], timeout=60, what="the first consumer to take all back")
    # Records on a partition the first consumer kept: settling them makes it commit.
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for line in lines[8000:]:
        producer.produce(pipeline.topic, value=line, partition=kept[0])
    assert producer.flush(30) == 0
    pipeline.wait_all_committed(timeout=30)
    assert first.poll() is None and stop(first) == 0


def _partitions_of(pipeline: Pipeline, client_prefix: str) -> list[int]:
    admin = AdminClient({"bootstrap.servers": pipeline.bootstrap})
    group = admin.describe_consumer_groups([pipeline.group])[pipeline.group].result(timeout=10)
    return sorted(
        tp.partition
        for member in group.members
        if member.client_id.startswith(client_prefix)
        for tp in member.assignment.topic_partitions
    )


def _both_hold_partitions(pipeline: Pipeline) -> bool:
    members = pipeline.members()
    return len(members) == 2 and all(members) and sorted(p for held in members for p in held) == [0, 1, 2, 3]


def test_malformed_batch_goes_to_dead_letters_and_valid_events_apply(pipeline: Pipeline) -> None:
    now = time.time()
    good = [
        json.dumps({"type": "purchase", "customer_id": "ok", "timestamp": now - 60, "amount": 5}).encode(),
        json.dumps({"type": "purchase", "customer_id": "late", "timestamp": now - 10, "amount": 1}).encode(),
    ]
    bad = {
        b"\xff\xfe\x00garbage": "malformed_json",
        b"[1,2,3]": "not_an_object",
        b'{"type": "purchase", "customer_id": "x", "timestamp": 0}': "missing_field",
        b'{"type": "purchase", "customer_id": "x", "timestamp": 0, "amount": "1"}': "bad_type",
        b'{"type": "purchase", "customer_id": "x", "timestamp": 0, "amount": -1}': "negative_value",
        b'{"type": "purchase", "customer_id": "x", "timestamp": 0, "amount": 1e999}': "non_finite",
        b'{"type": "gift", "customer_id": "x", "timestamp": 0}': "unknown_type",
        b'{"type": "purchase", "customer_id": "x", "timestamp": "noon", "amount": 1}': "bad_timestamp",
        json.dumps(
            {"type": "purchase", "customer_id": "x", "timestamp": now + 5 * 86400, "amount": 1}
        ).encode(): "future_timestamp",
        b'{"pad": "' + b"x" * 70000 + b'"}': "too_large",
        # older than "late"'s newest tile minus retention (400 days): judged against stored state
        json.dumps(
            {"type": "purchase", "customer_id": "late", "timestamp": now - 500 * 86400, "amount": 1}
        ).encode(): "too_late",
    }
    pipeline.produce([*good, *bad])
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=120) == 0
    letters = pipeline.dead_letters(len(bad))
    assert sorted(dict(m.headers())["error.reason"].decode() for m in letters) == sorted(bad.values())
    for letter in letters:
        assert bad[letter.value()] == dict(letter.headers())["error.reason"].decode()
    reader = pipeline.reader()
    assert reader.get_features("ok")["purchase_count"] == 1
    assert reader.get_features("late")["purchase_count"] == 1
    assert reader.get_features("x")["has_history"] is False


def test_redis_crash_and_restart_mid_stream_loses_nothing(kafka_bootstrap: str, key_prefix: str) -> None:
    """A Redis of our own (deploy/redis.sh on another port) is SIGKILLed mid-ingest and restarted."""
    import shutil

    from . import services

    if not shutil.which("redis-server"):
        pytest.skip("needs a local redis-server to crash and restart")
    port = "6391"
    env = {"REDIS_PORT": port}
    services.run_deploy("redis.sh", "wipe", env)
    services.run_deploy("redis.sh", "start", env)
    url = f"redis://127.0.0.1:{port}/0"
    pipeline = Pipeline.fresh(kafka_bootstrap, url, key_prefix)
    lines = recent_events(40000, 2000, seed=14)
    pipeline.produce(lines)
    consumer = pipeline.start_consumer("--batch-size", "1000", "--exit-when-idle", "5")
    try:
        wait_until(lambda: pipeline.committed() > 5000, timeout=60, what="progress before the crash")
        pid = int(services.state_file(f"redis-{port}.pid").read_text())
        import os

        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not services.pid_alive(pid), timeout=10, what="redis to die")
        committed_while_down = pipeline.committed()
        time.sleep(2)  # the consumer must be retrying now, not moving offsets
        assert pipeline.committed() == committed_while_down
        services.run_deploy("redis.sh", "start", env)
        assert consumer.wait(timeout=180) == 0
        pipeline.wait_all_committed()
        now = time.time()
        engine, _ = memory_engine(lines, now)
        assert assert_same_state(engine, pipeline, as_of=now) > 1500
    finally:
        stop(consumer)
        services.run_deploy("redis.sh", "stop", env)


def test_one_customers_events_spread_over_partitions_with_two_consumers(pipeline: Pipeline) -> None:
    """Unkeyed records: a customer's events land on every partition, two consumers write the
    same customers concurrently; compare-and-set keeps every event applied exactly once."""
    from confluent_kafka import Producer

    now = time.time()
    lines = [
        json.dumps(
            {
                "type": "purchase",
                "customer_id": f"spread-{i % 40}",
                "timestamp": now - 86400 - i * 7,
                "amount": float(i % 13),
                "event_id": f"e{i}",
            }
        ).encode()
        for i in range(12000)
    ]
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for index, line in enumerate(lines):
        producer.produce(pipeline.topic, value=line, partition=index % pipeline.partitions)
        if index % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    first = pipeline.start_consumer("--batch-size", "200", "--exit-when-idle", "4")
    second = pipeline.start_consumer("--batch-size", "200", "--exit-when-idle", "4")
    assert first.wait(timeout=180) == 0 and second.wait(timeout=180) == 0
    pipeline.wait_all_committed()
    engine, _ = memory_engine(lines, now)
    reader = pipeline.reader()
    for customer in engine.customer_ids():
        got = reader.get_features(customer, days=30, as_of=now)
        expected = engine.get_all_features(customer, 30, now)
        assert got["purchase_count"] == expected["purchase_count"] == 300
        # Arrival order across partitions differs from the file's: sums agree up to float rounding.
        assert got["total_purchase_value"] == pytest.approx(expected["total_purchase_value"], rel=1e-12)


def test_consumer_metrics_endpoint(pipeline: Pipeline) -> None:
    from http.client import HTTPConnection

    lines = recent_events(3000, 200, seed=15)
    pipeline.produce(lines)
    consumer = pipeline.start_consumer("--metrics-port", "19464")
    try:
        pipeline.wait_all_committed(timeout=90)

        def scrape() -> str:
            try:
                connection = HTTPConnection("127.0.0.1", 19464, timeout=5)
                connection.request("GET", "/metrics")
                return connection.getresponse().read().decode()
            except OSError:
                return ""

        wait_until(lambda: "stream_features_consumer_lag{" in scrape(), timeout=30, what="lag from librdkafka stats")
        text = scrape()
        applied = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("stream_features_events_total{") and 'outcome="applied"' in line
        )
        _, reasons = memory_engine(lines, time.time())
        assert applied > 2500
        assert (
            f'stream_features_dead_letters_total{{reason="malformed_json"}} {float(reasons["malformed_json"])}' in text
        )
        assert "stream_features_newest_event_timestamp_seconds 1." in text
        assert "stream_features_batch_seconds_count" in text
    finally:
        stop(consumer)


def test_ten_thousand_hostile_records_never_stop_the_stream(pipeline: Pipeline) -> None:
    """Poison pills mixed into live traffic (SPEC §5): the consumer keeps running, consumes to the
    end, dead-letters every hostile record with its reason, and applies the valid ones exactly."""
    hostile = hostile_records(10_000, seed=21)
    valid = recent_events(6000, 400, seed=22)
    rng = random.Random(23)
    lines = [data for _, data in hostile] + valid
    rng.shuffle(lines)
    pipeline.produce_raw(lines)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=240) == 0, consumer.stderr.read().decode()[-3000:] if consumer.stderr else ""
    pipeline.wait_all_committed(timeout=60)
    now = time.time()
    engine, reasons = memory_engine(lines, now)
    assert sum(reasons.values()) >= len(hostile) and "internal_error" not in reasons
    assert assert_same_state(engine, pipeline, as_of=now) > 350
    letters = pipeline.dead_letters(sum(reasons.values()), timeout=120)
    got: dict[str, int] = {}
    for letter in letters:
        reason = dict(letter.headers())["error.reason"].decode()
        got[reason] = got.get(reason, 0) + 1
    assert got == reasons
    dead = {letter.value() for letter in letters}
    assert all(data in dead for _, data in hostile)


SPIN = """
local started = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - started[1]) * 1000000 + (now[2] - started[2]) > tonumber(ARGV[1])
return 1
"""


def test_redis_busy_with_a_long_script_is_waited_out(pipeline: Pipeline, redis_client: redis.Redis) -> None:
    """BUSY replies (another client's long script) end by themselves: the consumer waits them
    out and redoes the write, it neither dies nor skips."""
    lines = recent_events(30000, 2000, seed=31)
    pipeline.produce(lines)
    previous = redis_client.config_get("busy-reply-threshold")["busy-reply-threshold"]
    redis_client.config_set("busy-reply-threshold", 50)
    spinner = redis.Redis.from_url(pipeline.redis_url)
    consumer = pipeline.start_consumer("--batch-size", "300", "--exit-when-idle", "3")
    try:
        wait_until(lambda: pipeline.committed() > 0, timeout=60, what="first commit")
        for _ in range(6):  # about 6 s of Redis answering BUSY to everyone else, in bursts
            spinner.eval(SPIN, 0, 1_000_000)
            time.sleep(0.2)
        assert consumer.wait(timeout=180) == 0
    finally:
        redis_client.config_set("busy-reply-threshold", previous)
        spinner.close()
    stderr = consumer.stderr.read().decode() if consumer.stderr else ""
    assert "BUSY" in stderr  # the bursts did hit the consumer's writes
    now = time.time()
    engine, _ = memory_engine(lines, now)
    assert_same_state(engine, pipeline, as_of=now)


def test_end_to_end_delay_is_measured_per_applied_record(pipeline: Pipeline) -> None:
    """stream_features_end_to_end_delay_seconds: one observation per applied record, Redis's
    acknowledgement minus the record's Kafka timestamp (plausible: produced seconds ago)."""
    from stream_features.ingest.consumer import FeatureConsumer

    lines = recent_events(3000, 200, seed=71)
    produced_at = time.time()
    pipeline.produce(lines)
    consumer = FeatureConsumer(pipeline.config)
    consumer.start()
    stats = consumer.run(exit_when_idle_seconds=2)
    finished = time.time()
    samples = {
        s.name: s.value for m in consumer.metrics.end_to_end_delay.collect() for s in m.samples if "le" not in s.labels
    }
    count, total = (
        samples["stream_features_end_to_end_delay_seconds_count"],
        samples["stream_features_end_to_end_delay_seconds_sum"],
    )
    assert count == stats.applied > 2500
    assert 0 < total / count < finished - produced_at + 1
    assert consumer.metrics.redis_used_memory._value.get() > 0  # sampled for the memory alert
