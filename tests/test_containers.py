"""The testcontainers path, as far as it runs without a Docker engine (this machine has none:
see README "Testing with Docker"): pinned images equal to deploy/, the Redis settings passed
in, and cleanup that stops what was started, newest first, also after a failure."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from . import containers


def test_images_are_the_versions_deploy_runs() -> None:
    expected = f"apache/kafka:{containers.deploy_kafka_version()}"
    assert expected == containers.KAFKA_IMAGE
    if shutil.which("redis-server"):
        version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        assert f"v={containers.REDIS_IMAGE.split(':')[1]}" in version
    compose = (containers.ROOT / "docker-compose.yml").read_text()
    assert f"image: {containers.KAFKA_IMAGE}" in compose and f"image: {containers.REDIS_IMAGE}" in compose


def test_redis_gets_deploy_settings_and_kafka_its_advertised_port() -> None:
    redis = containers.redis_container(16379)
    assert redis.volumes == {str(containers.ROOT / "deploy" / "redis.conf"): containers.REDIS_CONF_IN_CONTAINER}
    assert redis.command is not None and redis.command.startswith(f"redis-server {containers.REDIS_CONF_IN_CONTAINER}")
    assert redis.ports == {6379: 16379}
    kafka = containers.kafka_container(19092)
    assert kafka.env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:19092"
    assert kafka.env["KAFKA_PROCESS_ROLES"] == "broker,controller" and kafka.ports == {9092: 19092}


class Stoppable:
    """Stands in for a container object (no engine here): records stop() calls."""

    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail

    def start(self) -> None:
        if self.fail:
            raise RuntimeError("engine refused")

    def stop(self) -> None:
        self.log.append(self.name)


class Spec:
    def __init__(self, container: Stoppable) -> None:
        self.container, self.ready_log = container, "ready"

    def build(self) -> Stoppable:
        return self.container


def test_cleanup_stops_everything_started_even_after_a_failed_start(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[str] = []
    monkeypatch.setattr(containers, "_started", [])
    monkeypatch.setattr("testcontainers.core.waiting_utils.wait_for_logs", lambda *a, **k: None)
    containers.start(Spec(Stoppable(stopped, "redis")))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        containers.start(Spec(Stoppable(stopped, "kafka", fail=True)))  # type: ignore[arg-type]
    containers.stop_all()
    assert stopped == ["kafka", "redis"] and containers.started() == []
    containers.stop_all()  # idempotent
    assert stopped == ["kafka", "redis"]
