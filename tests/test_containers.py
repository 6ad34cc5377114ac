"""The testcontainers path, as far as it runs without a Docker engine (this machine has none:
see README "Testing with Docker"): pinned images equal to deploy/, the Redis settings passed
in, and cleanup that stops what was started, newest first, also after a failure. And the
image's Dockerfile: the wheel CI tests, installed alone, as the user compose runs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from . import containers
from .services import ROOT


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


def _stages(dockerfile: str) -> dict[str, str]:
    """The Dockerfile's stages by name, each with its lines after FROM."""
    stages: dict[str, str] = {}
    name = ""
    for line in dockerfile.splitlines():
        start = re.match(r"FROM \S+ AS (\S+)$", line)
        if start:
            name = start.group(1)
            stages[name] = ""
        elif name:
            stages[name] += line + "\n"
    return stages


def test_image_installs_the_wheel_ci_tests_and_nothing_else_as_non_root() -> None:
    stages = _stages((ROOT / "Dockerfile").read_text())
    assert list(stages) == ["build", "runtime"]
    build, runtime = stages["build"], stages["runtime"]
    tag = re.search(r"maturin build --release --locked --compatibility (\S+) --out /wheels", build)
    assert tag is not None, "the build stage makes the wheel with maturin"
    assert f"--compatibility {tag.group(1)} " in (ROOT / "deploy" / "wheel-test.sh").read_text()
    # The runtime stage takes only the wheel (mounted from the build stage) and installs no tools.
    assert not re.search(r"^(COPY|ADD)\b", runtime, re.M)
    assert not re.search(r"apt-get|rustup|curl|maturin", runtime)
    assert "--mount=type=bind,from=build,source=/wheels" in runtime
    assert "pip install --no-cache-dir --only-binary=:all: /wheels/*.whl" in runtime
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.M)
    assert user is not None and user.group(1) != "0"
    compose_users = re.findall(r'^\s+user: "(\S+)"$', (ROOT / "docker-compose.yml").read_text(), re.M)
    assert compose_users == [f"{user.group(1)}:{user.group(2)}"] * 2  # the consumer and the API
