"""Redis Cluster: a real 3-node cluster on loopback (started here from Debian's redis-server).

The writer and reader must give the in-memory engine's answers when customers are spread over
slots and nodes, and the consumer must run against it end to end.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from stream_features import EngineSettings
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.reader import FeatureReader
from stream_features.store.keys import aux_key, tiles_key

from .conftest import IN_CI
from .loaders import load
from .streaming import Pipeline, assert_same_state, memory_engine, wait_until

pytestmark = pytest.mark.integration
PORTS = (7311, 7312, 7313)


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        if IN_CI:
            pytest.fail("redis-server is required in CI")
        pytest.skip("needs redis-server to build a local cluster")
    base = tmp_path_factory.mktemp("cluster")
    for port in PORTS:
        node = Path(base, str(port))
        node.mkdir()
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--dir",
                str(node),
                "--daemonize",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(node / "redis.log"),
            ],
            check=True,
            timeout=30,
        )
    try:
        wait_until(lambda: all(_ping(p) for p in PORTS), timeout=20, what="cluster nodes up")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in PORTS),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(
            lambda: (
                b"cluster_state:ok"
                in subprocess.run(
                    ["redis-cli", "-p", str(PORTS[0]), "cluster", "info"], capture_output=True, timeout=10
                ).stdout
            ),
            timeout=30,
            what="cluster state ok",
        )
        yield f"redis://127.0.0.1:{PORTS[0]}/0"
    finally:
        for port in PORTS:
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10)


def _ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_writer_and_reader_on_a_cluster(cluster_url: str) -> None:
    client = RedisCluster.from_url(cluster_url)
    now = time.time()
    lines = list(generate_events(GeneratorOptions(customers=200, events=3000, start=now - 90 * 86400, end=now - 60)))
    engine = load(client, "clustertest", lines, now=now)  # type: ignore[arg-type]
    reader = FeatureReader(client, EngineSettings(), prefix="clustertest")
    customers = engine.customer_ids()
    slots = {client.keyslot(tiles_key(c, "clustertest")) for c in customers}
    assert len(slots) > 50  # really spread over the cluster
    for customer in customers[:5]:
        assert client.keyslot(tiles_key(customer, "clustertest")) == client.keyslot(aux_key(customer, "clustertest"))
    assert reader.get_cohort_features(customers, days=60, as_of=now) == engine.get_cohort_features(customers, 60, now)
    for customer in customers[:20]:
        assert reader.get_summary(customer, as_of=now) == engine.get_feature_summary(customer, as_of=now)


def test_consumer_end_to_end_on_a_cluster(
    cluster_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "1")
    pipeline = Pipeline.fresh(kafka_bootstrap, cluster_url, "clusterstream")
    now = time.time()
    lines = list(
        generate_events(GeneratorOptions(customers=300, events=5000, start=now - 90 * 86400, end=now - 60, seed=21))
    )
    pipeline.produce(lines)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    try:
        assert consumer.wait(timeout=180) == 0, consumer.stderr.read().decode() if consumer.stderr else ""
    finally:
        pipeline.cleanup()
    engine, _ = memory_engine(lines, time.time())
    pipeline.cluster = True
    assert assert_same_state(engine, pipeline, as_of=time.time()) > 250
