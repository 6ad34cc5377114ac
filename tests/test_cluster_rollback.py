"""One Redis Cluster shard goes back in time on its own, under two consumers of one group: the
shard's own watermark key sends both back to what it holds (SPEC §5), and every customer ends
equal to the in-memory engine."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_features.generate import GeneratorOptions, generate_events

from .private_redis import PrivateRedis
from .streaming import Pipeline, assert_same_state, memory_engine, wait_until

pytestmark = pytest.mark.integration
CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[PrivateRedis]]:
    nodes = [PrivateRedis(tmp_path / f"node{i}", *CLUSTER_ARGS) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(lambda: _cluster_ok(nodes[0]), timeout=30, what="cluster state ok")
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def _cluster_ok(node: PrivateRedis) -> bool:
    info = subprocess.run(["redis-cli", "-p", str(node.port), "cluster", "info"], capture_output=True, timeout=10)
    return b"cluster_state:ok" in info.stdout


def test_one_shard_restored_from_an_older_copy_under_two_consumers(
    cluster: list[PrivateRedis], kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "1")
    url = cluster[0].url
    pipeline = Pipeline.fresh(kafka_bootstrap, url, "shardtest")
    now = time.time()
    options = GeneratorOptions(customers=1000, events=12000, start=now - 90 * 86400, end=now - 60, seed=51)
    lines = list(generate_events(options))
    # In two parts, so the copy is taken mid-ingest however fast the consumers are.
    pipeline.produce(lines[:4000])
    try:
        first = pipeline.start_consumer("--batch-size", "500", "--exit-when-idle", "10", "--log-level", "info")
        second = pipeline.start_consumer("--batch-size", "500", "--exit-when-idle", "10", "--log-level", "info")
        wait_until(lambda: pipeline.committed() >= 4000, timeout=120, what="some ingested")
        shard = cluster[1]
        shard.snapshot(tmp_path / "older")
        before = pipeline.committed()
        pipeline.produce(lines[4000:])
        wait_until(lambda: pipeline.committed() > before + 3000, timeout=120, what="more ingested after the copy")
        shard.kill()
        shard.restore(tmp_path / "older")
        shard.start()
        wait_until(lambda: _cluster_ok(cluster[0]), timeout=60, what="cluster back")
        for consumer in (first, second):
            try:
                assert consumer.wait(timeout=180) == 0
            except subprocess.TimeoutExpired:
                import signal

                report = pipeline.offsets_report()
                for c in (first, second):
                    c.send_signal(signal.SIGABRT)
                time.sleep(2)
                text = "\n=====\n".join(c.stderr.read().decode()[-8000:] for c in (first, second) if c.stderr)
                raise AssertionError(report + "\n" + text) from None
        pipeline.wait_all_committed(timeout=60)
    finally:
        pipeline.cleanup()
    logs = "".join(c.stderr.read().decode() for c in (first, second) if c.stderr)
    assert "went back in time" in logs
    engine, _ = memory_engine(lines, time.time())
    pipeline.cluster = True
    assert assert_same_state(engine, pipeline, as_of=time.time()) > 800
