"""A consumer that is up and scraped but applies nothing is visible in its metrics (the
StreamFeaturesConsumerStuck alert, tested with promtool in tests/alerts/): the partition offsets
are read by a thread apart from the poll loop, so they keep moving while the loop is stuck and
librdkafka's lag gauge is frozen."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .private_redis import PrivateRedis, free_port
from .streaming import Pipeline, recent_events, stop, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.kill()


@pytest.fixture
def pipeline(kafka_bootstrap: str, private_redis: PrivateRedis) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, private_redis.url, "sf")
    yield fresh
    fresh.cleanup()


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _per_partition(text: str, name: str) -> dict[str, float]:
    pattern = re.compile(rf"^{name}{{([^}}]*)}} (\S+)$", re.MULTILINE)
    found = {}
    for labels, value in pattern.findall(text):
        partition = re.search(r'partition="(\d+)"', labels)
        assert partition is not None, labels
        found[partition.group(1)] = float(value)
    return found


def _offsets(port: int) -> tuple[dict[str, float], dict[str, float]]:
    text = _scrape(port)
    return (
        _per_partition(text, "stream_features_partition_end_offset"),
        _per_partition(text, "stream_features_partition_committed_offset"),
    )


def _caught_up(port: int, partitions: int) -> bool:
    end, committed = _offsets(port)
    return len(end) == partitions and sum(end.values()) > 0 and end == committed


def test_offsets_keep_moving_while_the_poll_loop_is_stuck(
    pipeline: Pipeline, private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_FEATURES_OFFSETS_WATCH_SECONDS", "0.5")
    port = free_port()
    pipeline.produce(recent_events(600, 50, seed=31))
    consumer = pipeline.start_consumer("--metrics-port", str(port))
    assert private_redis.process is not None
    try:
        wait_until(lambda: _caught_up(port, pipeline.partitions), timeout=90, what="offsets read, all caught up")
        wait_until(lambda: "stream_features_consumer_lag{" in _scrape(port), timeout=30, what="librdkafka's lag")
        # Redis stops answering: every call of the loop now hangs (a stuck consumer that still
        # answers scrapes), and records keep arriving.
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        pipeline.produce(recent_events(400, 50, seed=32))
        wait_until(lambda: sum(_offsets(port)[0].values()) == pipeline.end_offsets(), timeout=30, what="new ends read")
        end, committed = _offsets(port)
        waiting = sum(end.values()) - sum(committed.values())
        assert waiting == 400
        lag_before = _per_partition(_scrape(port), "stream_features_consumer_lag")
        assert len(lag_before) == pipeline.partitions
        read_before = _read_at(port)
        time.sleep(7)  # longer than librdkafka's statistics interval (5 s): what stays still, stays still
        end_later, committed_later = _offsets(port)
        assert committed_later == committed and end_later == end  # nothing settled, still waiting
        assert _read_at(port) > read_before  # ... read afresh all along, apart from the stuck loop
        assert _per_partition(_scrape(port), "stream_features_consumer_lag") == lag_before  # frozen
        os.kill(private_redis.process.pid, signal.SIGCONT)
        wait_until(lambda: _caught_up(port, pipeline.partitions), timeout=90, what="caught up after Redis returned")
        assert sum(_offsets(port)[1].values()) == pipeline.end_offsets()
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
        assert stop(consumer) == 0


def _read_at(port: int) -> float:
    found = re.search(r"^stream_features_partition_offsets_read_timestamp_seconds (\S+)$", _scrape(port), re.M)
    assert found is not None
    return float(found.group(1))
