"""The command line: generate, features (table and JSON), and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import msgspec
import pytest
import redis

from stream_features import validate_event

from .loaders import load


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_features", *args], capture_output=True, text=True, timeout=timeout
    )


def test_generate_is_deterministic_and_realistic(tmp_path: object) -> None:
    first = run("generate", "--customers", "50", "--events", "2000", "--seed", "3", "--end", "1790000000")
    second = run("generate", "--customers", "50", "--events", "2000", "--seed", "3", "--end", "1790000000")
    assert first.returncode == 0 and first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert len(lines) == 2000
    valid, invalid, ids = 0, 0, []
    for line in lines:
        try:
            event = validate_event(msgspec.json.decode(line), now=1790000000)
            valid += 1
            ids.append(event.event_id)
        except Exception:
            invalid += 1
    assert 0 < invalid < 100  # about 1 %
    assert len(ids) - len(set(ids)) > 0  # re-sent duplicates
    types = set()
    for line in lines:
        try:
            types.add(msgspec.json.decode(line).get("type"))
        except (msgspec.DecodeError, AttributeError):
            continue
    assert {"purchase", "session", "cart", "support", "profile"} <= types


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "--events", "many"),
        ("generate", "--invalid-rate", "2"),
        ("generate", "--end", "someday"),
        ("features",),
        ("features", "c", "--days", "0"),
        ("consume", "--batch-size", "-5"),
        ("bogus-command",),
        ("produce", "/no/such/file.jsonl", "--bootstrap-servers", "127.0.0.1:1"),
    ],
)
def test_bad_flags_give_one_line_errors(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], result.stderr


@pytest.mark.integration
def test_features_json_and_table(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    now = time.time()
    lines = [
        json.dumps(
            {"type": "purchase", "customer_id": "cli:1", "timestamp": now - 86400 * d, "amount": 10.0 * d}
        ).encode()
        for d in (1, 2, 3)
    ]
    engine = load(redis_client, key_prefix, lines, now=now)
    as_of = str(now)
    common = ("--redis-url", redis_url, "--key-prefix", key_prefix, "--as-of", as_of)
    result = run("features", "cli:1", "--days", "7", "--json", *common)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == engine.get_all_features("cli:1", 7, float(as_of))
    table = run("features", "cli:1", *common)
    assert "purchase_count" in table.stdout and "activity_trend" in table.stdout
    summary = run("features", "cli:1", "--summary", "--json", *common)
    assert json.loads(summary.stdout)["purchase_metrics"]["purchase_count"] == 3


def test_features_with_redis_down_is_a_one_line_error() -> None:
    result = run("features", "c", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "not reachable" in result.stderr
