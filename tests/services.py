"""Where the real Kafka broker and Redis server for integration tests come from.

Order (as SPEC asks): the addresses in KAFKA_BOOTSTRAP_SERVERS / REDIS_URL; else testcontainers
when a Docker engine answers; else the local services started by deploy/ scripts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    run_deploy("redis.sh", "start")
    return f"redis://127.0.0.1:{os.environ.get('REDIS_PORT', '6379')}/0"


def kafka_bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    if docker_engine_answers():
        from . import containers
        from .private_redis import free_port

        port = free_port()
        containers.start(containers.kafka_container(port))
        return f"127.0.0.1:{port}"
    run_deploy("kafka.sh", "start")
    return f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


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
