"""Schemathesis, with all its checks, against the running API on real Redis with data loaded
(config: schemathesis.toml, fixed seed, bounded examples). Zero failures: the OpenAPI document
describes every status and body the service returns, and the service accepts exactly what the
document allows."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from stream_features.generate import GeneratorOptions, generate_events

from .conftest import IN_CI
from .loaders import load
from .private_redis import free_port
from .services import ROOT
from .streaming import wait_until

pytestmark = pytest.mark.integration


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("tokens", [False, True], ids=["open", "bearer-tokens"])
def test_schemathesis_finds_nothing(
    redis_client: redis.Redis, redis_url: str, key_prefix: str, tokens: bool, tmp_path: Path
) -> None:
    """Open, and with serve --token-file (then its ignored_auth check also sends requests
    without the token to every operation that declares the bearer scheme)."""
    tool = shutil.which("schemathesis") or shutil.which("st")
    if tool is None:
        if IN_CI:
            pytest.fail("schemathesis is required in CI (pip install -e '.[dev]')")
        pytest.skip("schemathesis not installed")
    now = time.time()
    options = GeneratorOptions(customers=100, events=3000, start=now - 120 * 86400, end=now - 60, seed=9)
    engine = load(redis_client, key_prefix, generate_events(options), now=now)
    assert "cust-0000042" in engine.customer_ids()  # the document's example id has data
    port = free_port()
    command = [sys.executable, "-m", "stream_features", "serve", "--port", str(port), "--no-status"]
    command += ["--redis-url", redis_url, "--key-prefix", key_prefix, "--log-level", "warning"]
    auth: list[str] = []
    if tokens:
        token = "schemathesis-token-0123456789"
        (tmp_path / "tokens").write_text(token + "\n")
        command += ["--token-file", str(tmp_path / "tokens")]
        auth = ["--header", f"Authorization: Bearer {token}"]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: _up(port), timeout=60, what="API up")
        run = subprocess.run(
            [tool, "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all", "--no-color", *auth],
            cwd=ROOT,  # schemathesis.toml: seed and examples per operation
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "Failures" not in run.stdout and "Fuzzing" in run.stdout
