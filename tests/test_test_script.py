"""``bash deploy/test.sh --quick`` runs against Kafka and Redis of the deploy/ scripts, stops
those it started itself and leaves running those that already were. Checked on a private home
and private ports, so the services other tests use are never touched."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .private_redis import free_port
from .services import ROOT, listening

pytestmark = pytest.mark.integration

QUICK_E2E = "tests/test_streaming.py::test_end_to_end_equals_memory_engine_and_dead_letters"


@pytest.fixture
def private_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "sf-home"
    home.mkdir()
    # The broker's jars are read only: share them instead of fetching them again.
    shared = Path(os.environ.get("STREAM_FEATURES_HOME", str(Path.home() / ".cache" / "stream-features")))
    jars = shared / "kafka-4.1.1"
    if (jars / "libs" / ".complete").exists():
        (home / "kafka-4.1.1").symlink_to(jars)
    ports = {"KAFKA_PORT": free_port(), "KAFKA_CONTROLLER_PORT": free_port(), "REDIS_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update({name: str(port) for name, port in ports.items()}, STREAM_FEATURES_HOME=str(home))
    yield env
    subprocess.run(["bash", "deploy/services.sh", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def _quick(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "deploy/test.sh", "--quick", QUICK_E2E, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )


@pytest.mark.timeout(600)
def test_the_quick_run_stops_what_it_started_and_leaves_what_was_running(private_env: dict[str, str]) -> None:
    kafka, redis = private_env["KAFKA_PORT"], private_env["REDIS_PORT"]
    assert not listening(kafka) and not listening(redis)
    started = _quick(private_env)
    assert started.returncode == 0 and "1 passed" in started.stdout, started.stdout[-3000:] + started.stderr[-3000:]
    assert (Path(private_env["STREAM_FEATURES_HOME"]) / f"kafka-data-{kafka}").is_dir()  # ran on its own broker
    assert not listening(kafka) and not listening(redis)  # started by the run: stopped by it

    up = subprocess.run(
        ["bash", "deploy/services.sh", "start"], cwd=ROOT, env=private_env, capture_output=True, timeout=300
    )
    assert up.returncode == 0 and listening(kafka) and listening(redis), up.stderr.decode()[-2000:]
    again = _quick(private_env)
    assert again.returncode == 0 and "1 passed" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
    assert listening(kafka) and listening(redis)  # running before the run: left running
