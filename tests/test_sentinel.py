"""Sentinel failover to a replica that lagged, mid-ingest (SPEC §5: Redis may go back in time,
the features may not). A primary, a replica and three sentinels of the test's own, from the same
redis-server as deploy/; the consumer and the reader reach Redis through the sentinels."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream_features.generate import GeneratorOptions, generate_events

from .private_redis import PrivateRedis, PrivateSentinels
from .services import ROOT
from .streaming import Pipeline, assert_same_state, memory_engine, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[PrivateRedis, PrivateRedis, PrivateSentinels]]:
    primary = PrivateRedis(tmp_path / "primary").start()
    replica = PrivateRedis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port)).start()
    sentinels = PrivateSentinels(tmp_path / "sentinels", primary).start()
    try:
        wait_until(lambda: sentinels.replicas_known() == 1, timeout=60, what="sentinels see the replica")
        yield primary, replica, sentinels
    finally:
        if replica.process is not None and replica.process.poll() is None:
            os.kill(replica.process.pid, signal.SIGCONT)
        sentinels.stop()
        replica.kill()
        primary.kill()


def test_failover_to_a_lagging_replica_mid_ingest_loses_nothing(
    replicated: tuple[PrivateRedis, PrivateRedis, PrivateSentinels], kafka_bootstrap: str
) -> None:
    primary, replica, sentinels = replicated
    shipped = (ROOT / "deploy" / "redis.conf").read_bytes()  # Sentinel rewrites a promoted replica's file
    pipeline = Pipeline.fresh(kafka_bootstrap, sentinels.url, "sf")
    now = time.time()
    options = GeneratorOptions(customers=3000, events=60000, start=now - 90 * 86400, end=now - 60, seed=61)
    lines = list(generate_events(options))
    # In two parts, so the replica stops mid-ingest however fast the consumer is: the first part
    # is applied (and replicated) before it stops, the second arrives while it lags.
    first = 20000
    pipeline.produce(lines[:first])
    consumer = pipeline.start_consumer("--batch-size", "1500", "--exit-when-idle", "10")
    try:
        wait_until(lambda: pipeline.committed() >= first, timeout=120, what="the first part ingested")
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)  # the replica falls behind
        before = pipeline.committed()
        pipeline.produce(lines[first:])
        wait_until(lambda: pipeline.committed() > before + 6000, timeout=60, what="ingest while the replica lags")
        primary.kill()  # what the replica had not received is gone
        os.kill(replica.process.pid, signal.SIGCONT)
        wait_until(lambda: sentinels.primary_port() == replica.port, timeout=60, what="failover to the replica")
        assert consumer.wait(timeout=240) == 0
    except subprocess.TimeoutExpired:
        consumer.kill()
        raise
    finally:
        pipeline.cleanup()
    stderr = consumer.stderr.read().decode() if consumer.stderr else ""
    assert "went back in time" in stderr, stderr[-3000:]
    assert redis.Redis(port=replica.port).role()[0] == b"master"
    assert (ROOT / "deploy" / "redis.conf").read_bytes() == shipped  # servers run from copies
    engine, _ = memory_engine(lines, time.time())
    assert assert_same_state(engine, pipeline, as_of=time.time()) > 2000


def test_the_deploy_script_starts_a_sentinel_managed_redis(tmp_path: Path) -> None:
    from stream_features.store.clients import sync_client

    from .private_redis import free_port

    primary, sentinel = free_port(), free_port()
    env = {
        **os.environ,
        "STREAM_FEATURES_HOME": str(tmp_path),
        "SENTINEL_PRIMARY_PORT": str(primary),
        "SENTINEL_PORT": str(sentinel),
    }
    script = str(ROOT / "deploy" / "redis-sentinel.sh")
    try:
        started = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1].removeprefix("REDIS_URL=")
        client = sync_client(url, socket_timeout=5)
        client.set("sentinel-check", "1")
        assert client.get("sentinel-check") == b"1"
        assert client.info("replication")["connected_slaves"] == 1
        assert subprocess.run(["bash", script, "status"], env=env, timeout=30).returncode == 0
    finally:
        subprocess.run(["bash", script, "stop"], env=env, capture_output=True, timeout=60)
