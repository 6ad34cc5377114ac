"""Redis may go back in time; the features may not (SPEC §5). Real Kafka, real Redis servers of
the tests' own: restored from an older copy of their files after kill -9, wiped, and a topic
re-created under the same name. Afterwards every customer equals the in-memory engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_features.store.watermarks import Watermarks

from .private_redis import PrivateRedis
from .streaming import Pipeline, assert_same_state, memory_engine, recent_events, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def pipeline(kafka_bootstrap: str, private_redis: PrivateRedis) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, private_redis.url, "sf")
    yield fresh
    fresh.cleanup()


def _finish_and_compare(pipeline: Pipeline, consumer: object, lines: list[bytes]) -> str:
    assert consumer.wait(timeout=240) == 0  # type: ignore[attr-defined]
    pipeline.wait_all_committed(timeout=60)
    stderr: str = consumer.stderr.read().decode()  # type: ignore[attr-defined]
    now = time.time()
    engine, _ = memory_engine(lines, now)
    assert assert_same_state(engine, pipeline, as_of=now) > 1000
    return stderr


def test_redis_restored_from_an_older_copy_mid_ingest_loses_nothing(
    pipeline: Pipeline, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """A copy of Redis's append-only files taken mid-ingest, Redis killed a few batches later
    and started from the copy: a failover to a replica that lagged, or a restore from backup."""
    lines = recent_events(60000, 3000, seed=41)
    # In two parts, so the copy is taken mid-ingest however fast the consumer is.
    pipeline.produce(lines[:20000])
    consumer = pipeline.start_consumer("--batch-size", "1500", "--exit-when-idle", "10")
    wait_until(lambda: pipeline.committed() >= 20000, timeout=120, what="a third ingested")
    private_redis.snapshot(tmp_path / "older")
    before = pipeline.committed()
    pipeline.produce(lines[20000:])
    wait_until(lambda: pipeline.committed() > before + 15000, timeout=120, what="more ingested after the copy")
    private_redis.kill()
    private_redis.restore(tmp_path / "older")
    private_redis.start()
    stderr = _finish_and_compare(pipeline, consumer, lines)
    assert "went back in time" in stderr


def test_redis_wiped_mid_ingest_is_rebuilt_from_kafka(pipeline: Pipeline, private_redis: PrivateRedis) -> None:
    lines = recent_events(40000, 2000, seed=42)
    # In two parts, so the wipe comes mid-ingest however fast the consumer is.
    pipeline.produce(lines[:15000])
    consumer = pipeline.start_consumer("--batch-size", "1500", "--exit-when-idle", "10")
    wait_until(lambda: pipeline.committed() >= 15000, timeout=120, what="some ingested")
    redis.Redis.from_url(private_redis.url).flushall()
    pipeline.produce(lines[15000:])
    stderr = _finish_and_compare(pipeline, consumer, lines)
    assert "went back in time" in stderr


def test_redis_restarted_from_an_older_copy_while_the_consumer_is_down(
    pipeline: Pipeline, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """The consumer starts after the rollback: Kafka's commit is ahead of Redis, Redis wins."""
    first, second = recent_events(20000, 1500, seed=43), recent_events(10000, 1500, seed=44)
    pipeline.produce(first)
    consumer = pipeline.start_consumer("--batch-size", "2000", "--exit-when-idle", "3")
    assert consumer.wait(timeout=120) == 0
    private_redis.kill()
    private_redis.snapshot(tmp_path / "older")
    private_redis.start()
    pipeline.produce(second)
    consumer = pipeline.start_consumer("--batch-size", "2000", "--exit-when-idle", "3")
    assert consumer.wait(timeout=120) == 0
    private_redis.kill()
    private_redis.restore(tmp_path / "older")  # back to before the second half
    private_redis.start()
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    stderr = _finish_and_compare(pipeline, consumer, first + second)
    assert "went back in time" in stderr


def test_a_re_created_topic_is_a_new_log(pipeline: Pipeline, kafka_bootstrap: str) -> None:
    """Deleted and re-created under the same name, the topic's offsets start at 0 again, below
    every stored per-customer offset: its records must be applied, not skipped as replays."""
    first, second = recent_events(8000, 1200, seed=45), recent_events(8000, 1200, seed=46)
    pipeline.produce(first)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=120) == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([pipeline.topic])[pipeline.topic].result(timeout=30)
    wait_until(lambda: pipeline.topic not in admin.list_topics(timeout=10).topics, timeout=60, what="deletion")
    deadline = time.monotonic() + 60
    while True:  # the broker may still be finishing the deletion
        try:
            admin.create_topics([NewTopic(pipeline.topic, num_partitions=4)])[pipeline.topic].result(timeout=30)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    pipeline.produce(second)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    stderr = _finish_and_compare(pipeline, consumer, first + second)
    assert "re-created" in stderr


def test_a_restore_while_idle_shows_as_lag_at_once_and_readiness_waits_for_the_replay(
    pipeline: Pipeline, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Redis restored from an older copy while the consumer is idle and caught up: Kafka's group
    lag (what every dashboard shows) counts the records to replay within 2 s of Redis answering
    again, the consumer's /readyz says it is replaying until it is done, and once lag is back to
    0 every customer is right."""
    import json
    import urllib.error
    import urllib.request

    from .private_redis import free_port

    lines = recent_events(40000, 2000, seed=47)
    pipeline.produce(lines[:5000])
    port = free_port()
    consumer = pipeline.start_consumer("--batch-size", "100", "--metrics-port", str(port))
    pipeline.wait_all_committed(timeout=120)
    private_redis.snapshot(tmp_path / "older")
    pipeline.produce(lines[5000:])
    pipeline.wait_all_committed(timeout=240)  # idle and caught up: lag 0
    assert pipeline.end_offsets() - pipeline.committed() == 0

    def readiness() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status, json.loads(response.read())["reason"]
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())["reason"]

    lag = pipeline.lag_probe()
    private_redis.kill()
    private_redis.restore(tmp_path / "older")
    private_redis.start()
    back = time.monotonic()
    wait_until(lambda: lag() > 30000, timeout=2, interval=0.05, what="lag")
    assert time.monotonic() - back < 2
    from stream_features.query.status import replay_of

    watermarks = Watermarks(redis.Redis.from_url(private_redis.url), prefix=pipeline.prefix, topic=pipeline.topic)
    seen: set[str] = set()
    shown: list[dict[str, object]] = []  # what the status page and `status` show meanwhile
    deadline = time.monotonic() + 240
    while pipeline.end_offsets() - pipeline.committed() > 0 and time.monotonic() < deadline:
        status, reason = readiness()
        if status == 503:
            seen.add(reason.split(" since ")[0].split(" ")[0])
        replay = replay_of(watermarks.status())
        if replay:
            shown.append(replay)
        time.sleep(0.05)
    assert "replaying" in seen
    assert shown and 0 < int(shown[0]["records"]) <= 35000  # type: ignore[call-overload]
    wait_until(lambda: readiness()[0] == 200, timeout=30, what="ready after the replay")
    assert replay_of(watermarks.status()) is None
    assert consumer.poll() is None
    consumer.terminate()
    assert consumer.wait(timeout=60) == 0
    now = time.time()
    engine, _ = memory_engine(lines, now)
    assert assert_same_state(engine, pipeline, as_of=now) > 1000
    assert "went back in time" in consumer.stderr.read().decode()  # type: ignore[union-attr]
