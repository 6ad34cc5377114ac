"""The consumer's liveness and readiness (health.py): the rules, and the endpoints of a real
consumer process against real Kafka and Redis."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from stream_features.ingest.health import LIVENESS_SECONDS, Progress, liveness, readiness

from .private_redis import free_port
from .streaming import Pipeline, stop, wait_until


def test_liveness_and_readiness_rules() -> None:
    progress = Progress(heartbeat=100.0, joined=False, settled=0.0, lag=0)
    assert liveness(progress, 100.0 + LIVENESS_SECONDS - 1)[0]
    assert not liveness(progress, 100.0 + LIVENESS_SECONDS + 1)[0]
    assert readiness(progress, 100.0, 60) == (False, "not in the consumer group yet")
    progress.joined, progress.settled = True, 100.0
    assert readiness(progress, 1000.0, 60)[0]  # idle with no lag is fine
    progress.lag = 5000
    assert readiness(progress, 150.0, 60)[0]
    ok, reason = readiness(progress, 170.0, 60)
    assert not ok and "5000 records behind" in reason
    progress.lag, progress.replaying, progress.replaying_since = 0, 1200, 1_796_000_000.0
    assert readiness(progress, 170.0, 60) == (False, "replaying 1200 records since 2026-11-30T00:53:20Z")


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    yield fresh
    fresh.cleanup()


def _get(port: int, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.integration
def test_a_running_consumer_answers_its_probes(pipeline: Pipeline) -> None:
    port = free_port()
    consumer = pipeline.start_consumer("--metrics-port", str(port))
    try:
        wait_until(lambda: _ping(port), timeout=60, what="health endpoint up")
        status, health = _get(port, "/healthz")
        assert status == 200 and health["version"] == version("stream-features") and health["core"]["commit"]
        wait_until(lambda: _get(port, "/readyz")[0] == 200, timeout=60, what="joined the group")
        assert _get(port, "/readyz")[1]["reason"] == "joined and making progress"
        # Prometheus text with the consumer's own metrics (urlopen raises on anything but 2xx).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            status, content_type, body = response.status, response.headers["Content-Type"], response.read()
        assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
        assert b"# TYPE stream_features_events_total counter" in body
    finally:
        stop(consumer)


def _ping(port: int) -> bool:
    try:
        return _get(port, "/healthz")[0] in (200, 503)
    except OSError:
        return False


def test_a_replay_reads_from_the_watermark_hash_as_records_left_and_a_start_time() -> None:
    from stream_features.query.status import replay_of

    status = {"replays": '{"0": [1500, 1796000000.0], "3": [90, 1795999000.5]}', "p:0": "1000", "p:3": "90"}
    assert replay_of(status) == {"records": 500, "since": "2026-11-30T00:53:20Z"}  # partition 3 is done
    assert replay_of({**status, "p:0": "1500"}) is None  # both partitions caught up
    assert replay_of({"replays": "{}"}) is None and replay_of({}) is None
