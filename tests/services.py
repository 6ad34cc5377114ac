"""Where the real Kafka broker and Redis server for integration tests come from.

Order (as SPEC asks): the addresses in KAFKA_BOOTSTRAP_SERVERS / REDIS_URL; else testcontainers
when a Docker engine answers; else the local services started by deploy/ scripts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# deploy/ services this session started (script, port): stopped at its end; those that were
# already running are left running (deploy/test.sh and plain pytest alike).
_started: list[tuple[str, str]] = []


class ServiceUnavailableForTests(RuntimeError):
    pass


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_deploy(script: str, action: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / script), action],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise ServiceUnavailableForTests(f"deploy/{script} {action} failed: {result.stderr[-2000:]}")


def redis_url() -> str:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if docker_engine_answers():
        from . import containers
        from .private_redis import free_port

        port = free_port()
        containers.start(containers.redis_container(port))
        return f"redis://127.0.0.1:{port}/0"
    port = os.environ.get("REDIS_PORT", "6379")
    start_unless_running("redis.sh", port)
    return f"redis://127.0.0.1:{port}/0"


def kafka_bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    if docker_engine_answers():
        from . import containers
        from .private_redis import free_port

        port = free_port()
        containers.start(containers.kafka_container(port))
        return f"127.0.0.1:{port}"
    port = os.environ.get("KAFKA_PORT", "9092")
    start_unless_running("kafka.sh", port)
    return f"127.0.0.1:{port}"


def listening(port: str) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", int(port))) == 0


def start_unless_running(script: str, port: str) -> None:
    """A service already on its port is used and left alone; one started here is stopped by
    ``stop_started`` when the session ends."""
    if listening(port):
        return
    run_deploy(script, "start")
    _started.append((script, port))


def stop_started() -> None:
    """Stop what this session started, newest first (the same ports: the environment is unchanged)."""
    while _started:
        script, _port = _started.pop()
        run_deploy(script, "stop")


def state_file(name: str) -> Path:
    """A file the deploy scripts keep under STREAM_FEATURES_HOME (pid files)."""
    home = os.environ.get("STREAM_FEATURES_HOME", str(Path.home() / ".cache" / "stream-features"))
    return Path(home) / name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
