"""The testcontainers path (for machines with a Docker engine): the same services as deploy/.

Images are pinned to what the deploy scripts run (Apache Kafka 4.1.1 in KRaft mode, Redis 7.0
with deploy/redis.conf); containers start once per test session and are stopped at its end, also
when tests fail (``stop_all`` runs from ``pytest_sessionfinish`` and at interpreter exit).

The fault tests that kill, stop, copy or restore one server process (test_rollback,
test_sentinel, test_cluster_rollback, test_redis_cluster) start their own local redis-server
processes whatever the engine: they need the process and its files in hand.
"""

from __future__ import annotations

import atexit
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

from .services import ROOT

KAFKA_IMAGE = "apache/kafka:4.1.1"
REDIS_IMAGE = "redis:7.0.15"
REDIS_CONF_IN_CONTAINER = "/usr/local/etc/redis/redis.conf"

_started: list[Any] = []


def deploy_kafka_version() -> str:
    """The Kafka version deploy/kafka.sh fetches (KAFKA_VERSION's default in deploy/common.sh)."""
    text = (ROOT / "deploy" / "common.sh").read_text()
    found = re.search(r'KAFKA_VERSION="\$\{KAFKA_VERSION:-([0-9.]+)\}"', text)
    assert found, "deploy/common.sh must set KAFKA_VERSION"
    return found[1]


@dataclass(frozen=True)
class ContainerSpec:
    """What a container is to be: plain data, so it can be checked without an engine."""

    image: str
    ready_log: str
    ports: dict[int, int]
    env: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    volumes: dict[str, str] = field(default_factory=dict)  # host path → container path (read-only)

    def build(self) -> Any:
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(self.image).with_envs(**self.env)
        for inside, outside in self.ports.items():
            container = container.with_bind_ports(inside, outside)
        for host, inside in self.volumes.items():
            container = container.with_volume_mapping(host, inside, "ro")
        return container.with_command(self.command) if self.command else container


def redis_container(host_port: int) -> ContainerSpec:
    """Redis 7.0 with deploy/redis.conf (append-only file, listpack limits), on 127.0.0.1:``host_port``."""
    return ContainerSpec(
        image=REDIS_IMAGE,
        ready_log="Ready to accept connections",
        ports={6379: host_port},
        volumes={str(ROOT / "deploy" / "redis.conf"): REDIS_CONF_IN_CONTAINER},
        # deploy/redis.conf binds loopback; inside the container the port is published instead.
        command=f"redis-server {REDIS_CONF_IN_CONTAINER} --bind 0.0.0.0 --protected-mode no --dir /data",
    )


def kafka_container(host_port: int) -> ContainerSpec:
    """One KRaft broker (broker + controller), advertised on 127.0.0.1:``host_port``."""
    settings = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "4",
        # As deploy/kafka.sh: short session timeouts so tests' consumers join fast.
        "KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_GROUP_CLASSIC_MIN_SESSION_TIMEOUT_MS": "2000",
    }
    return ContainerSpec(image=KAFKA_IMAGE, ready_log="Kafka Server started", ports={9092: host_port}, env=settings)


def start(spec: ContainerSpec, timeout: float = 120) -> Any:
    """Build and start, remember for ``stop_all`` (before starting: a failed start is cleaned
    too), and wait until the log says the service is ready."""
    from testcontainers.core.waiting_utils import wait_for_logs

    container = spec.build()
    _started.append(container)
    container.start()
    wait_for_logs(container, spec.ready_log, timeout=timeout)
    return container


def started() -> list[Any]:
    return list(_started)


def stop_all() -> None:
    """Stop every container this session started (newest first); idempotent."""
    while _started:
        container = _started.pop()
        with contextlib.suppress(Exception):  # already gone: nothing left to clean
            container.stop()


atexit.register(stop_all)
