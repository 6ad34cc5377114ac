"""Lookups from a replica (issue #23 item 3): the API, the status page and the CLI read from the
read URL, not the primary; readiness follows the replica. A primary and a replica of the test's
own (and three sentinels for ``?role=replica``), from the same redis-server as deploy/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from stream_features.config import ServiceConfig
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.kafka_io import ensure_topics, wait_for_kafka
from stream_features.query.api import create_app
from stream_features.query.status import StatusSampler
from stream_features.store.clients import sync_client

from .loaders import load
from .private_redis import PrivateRedis, PrivateSentinels
from .streaming import wait_until

pytestmark = pytest.mark.integration
NOW = time.time()
AS_OF = NOW - 600


def _resume(server: PrivateRedis) -> None:
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[PrivateRedis, PrivateRedis]]:
    primary = PrivateRedis(tmp_path / "primary").start()
    replica = PrivateRedis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port)).start()
    try:
        link = lambda: redis.Redis(port=replica.port).info("replication").get("master_link_status")  # noqa: E731
        wait_until(lambda: link() == "up", timeout=60, what="the replica's first sync")
        yield primary, replica
    finally:
        for server in (replica, primary):
            _resume(server)
            server.kill()


def _caught_up(primary: PrivateRedis, replica: PrivateRedis) -> bool:
    offset = redis.Redis(port=primary.port).info("replication")["master_repl_offset"]
    return bool(redis.Redis(port=replica.port).info("replication")["slave_repl_offset"] >= offset)


def _only_on_the_replica(replica: PrivateRedis, prefix: str) -> str:
    """A customer written to the replica alone (made writable for a moment): whoever answers
    with its history read the replica."""
    client = redis.Redis(port=replica.port)
    client.config_set("replica-read-only", "no")
    try:
        line = b'{"type":"purchase","customer_id":"replica-only","amount":5,"timestamp":%d}' % int(NOW - 3600)
        load(client, prefix, [line], now=NOW)
    finally:
        client.config_set("replica-read-only", "yes")
    return "replica-only"


def test_the_api_reads_from_the_replica_and_is_ready_while_the_primary_is_paused(
    replicated: tuple[PrivateRedis, PrivateRedis], kafka_bootstrap: str
) -> None:
    primary, replica = replicated
    prefix = f"sftest-{uuid.uuid4().hex[:8]}"
    options = GeneratorOptions(customers=40, events=800, start=NOW - 60 * 86400, end=NOW - 3600, seed=23)
    engine = load(redis.Redis(port=primary.port), prefix, generate_events(options), now=NOW)
    wait_until(lambda: _caught_up(primary, replica), timeout=30, what="the replica caught up")
    only = _only_on_the_replica(replica, prefix)
    assert not redis.Redis(port=primary.port).exists(f"{prefix}:{{{only}}}")
    topic = f"events-{uuid.uuid4().hex[:12]}"
    config = ServiceConfig(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic=topic,
        group_id=f"g-{topic}",
        redis_url=primary.url,
        redis_read_url=replica.url,
        key_prefix=prefix,
    )
    ensure_topics(wait_for_kafka(config), [topic], partitions=1)
    # One sample, taken as the app starts (the next in an hour): the page with the primary up.
    with TestClient(create_app(config, status=StatusSampler(config, interval_seconds=3600))) as client:
        assert client.get(f"/v1/customers/{only}/features", params={"as_of": AS_OF}).json()["has_history"]
        wait_until(lambda: bool(client.get("/v1/status").json()["redis"]), timeout=30, what="the status sample")
        replication = client.get("/v1/status").json()["redis"]["replication"]
        assert (replication["role"], replication["link"]) == ("replica", "up")
        assert 0 <= replication["lag_bytes"] < 1024  # caught up, give or take the primary's pings

        assert primary.process is not None
        os.kill(primary.process.pid, signal.SIGSTOP)  # the primary answers nothing now
        try:
            assert client.get("/readyz").status_code == 200
            for customer in engine.customer_ids():
                answer = client.get(f"/v1/customers/{customer}/features", params={"as_of": AS_OF})
                assert answer.status_code == 200 and answer.json() == engine.get_all_features(customer, 30, AS_OF)
            paused = StatusSampler(config)  # the primary's lag figure is left out, the rest stays
            try:
                paused.collect()
                page = paused.snapshot()
            finally:
                paused.close()
            assert page["redis"]["keys"] >= 2 * 40 and page["redis"]["replication"]["role"] == "replica"
            assert "lag_bytes" not in page["redis"]["replication"]
        finally:
            os.kill(primary.process.pid, signal.SIGCONT)

        primary.kill()  # the replica loses its link: stale data, so not ready, though it answers
        wait_until(lambda: client.get("/readyz").status_code == 503, timeout=30, what="not ready")
        assert "lost its link" in client.get("/readyz").json()["message"]
        customer = engine.customer_ids()[0]
        answer = client.get(f"/v1/customers/{customer}/features", params={"as_of": AS_OF})
        assert answer.status_code == 200 and answer.json() == engine.get_all_features(customer, 30, AS_OF)


def test_readiness_follows_the_replica_not_the_primary(replicated: tuple[PrivateRedis, PrivateRedis]) -> None:
    primary, replica = replicated
    config = ServiceConfig(redis_url=primary.url, redis_read_url=replica.url)
    with TestClient(create_app(config)) as client:
        assert client.get("/readyz").status_code == 200
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            ready = client.get("/readyz")  # the primary is fine; lookups would go to the replica
            assert ready.status_code == 503 and ready.json()["message"] == "Redis is not reachable"
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="ready again")


def test_sentinel_role_replica_reads_from_a_replica_through_the_cli(
    replicated: tuple[PrivateRedis, PrivateRedis], tmp_path: Path
) -> None:
    primary, replica = replicated
    sentinels = PrivateSentinels(tmp_path / "sentinels", primary).start()
    try:
        wait_until(lambda: sentinels.replicas_known() == 1, timeout=60, what="sentinels see the replica")
        read_url = sentinels.url + "?role=replica"
        client = sync_client(read_url, socket_timeout=5)
        assert client.info("replication")["role"] == "slave"
        assert client.info("server")["tcp_port"] == replica.port
        prefix = f"sftest-{uuid.uuid4().hex[:8]}"
        only = _only_on_the_replica(replica, prefix)
        command = [sys.executable, "-m", "stream_features", "features", only, "--json", "--key-prefix", prefix]
        command += ["--as-of", str(AS_OF), "--redis-url", sentinels.url, "--redis-read-url", read_url]
        shown = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["purchase_count"] == 1
        # The primary's URL must name the primary: a replica there is a one-line error.
        refused = subprocess.run(
            [sys.executable, "-m", "stream_features", "features", only, "--redis-url", read_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and "REDIS_READ_URL" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        sentinels.stop()
