"""Partition owners by name (the status page and ``stream-features status``): each consumer's
Kafka client id is ``stream-features@<host>/<pid>`` unless set, so with several consumers an
operator can tell which one owns a stuck partition."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from stream_features.config import DEFAULT_CLIENT_ID, client_id_from, config_from_env
from stream_features.query.status import StatusSampler

from .streaming import Pipeline, recent_events, stop, wait_until

HOST = socket.gethostname()


def test_the_client_id_names_host_and_process() -> None:
    assert client_id_from(DEFAULT_CLIENT_ID) == f"stream-features@{HOST}/{os.getpid()}"
    assert config_from_env({}).client_id == client_id_from(DEFAULT_CLIENT_ID)
    assert config_from_env({"STREAM_FEATURES_CLIENT_ID": "billing-{pid}"}).client_id.startswith("billing-")
    assert config_from_env({"STREAM_FEATURES_CLIENT_ID": "fixed"}).client_id == "fixed"


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    yield fresh
    fresh.cleanup()


@pytest.mark.integration
def test_two_consumers_are_told_apart_per_partition(pipeline: Pipeline) -> None:
    pipeline.produce(recent_events(2000, 100, seed=21))
    first = pipeline.start_consumer()  # the default id
    second = pipeline.start_consumer("--client-id", "billing@{host}/{pid}")
    expected = {f"stream-features@{HOST}/{first.pid} (127.0.0.1)", f"billing@{HOST}/{second.pid} (127.0.0.1)"}
    sampler = StatusSampler(pipeline.config)
    try:

        def owners() -> list[str | None]:
            sampler.collect()
            return [row["owner"] for row in sampler.snapshot()["partitions"]]

        # Both joined and the four partitions are shared (cooperative-sticky: two each).
        wait_until(lambda: set(owners()) == expected, timeout=90, interval=1.0, what="both consumers own partitions")
        assert len(owners()) == 4
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream_features",
                "status",
                "--json",
                "--interval",
                "0.5",
                "--bootstrap-servers",
                pipeline.bootstrap,
                "--topic",
                pipeline.topic,
                "--group",
                pipeline.group,
                "--redis-url",
                pipeline.redis_url,
                "--key-prefix",
                pipeline.prefix,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stderr
        assert {row["owner"] for row in json.loads(status.stdout)["partitions"]} == expected
    finally:
        sampler.close()
        assert stop(first) == 0 and stop(second) == 0
