"""Point-in-time batch lookups: every row's features exactly as of its own time (no later event
leaks in), through the Python reader, POST /v1/features/at and `stream-features features-at`,
equal to the in-memory engine at each row's time. Real Redis."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from stream_features.config import ServiceConfig
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.api import create_app
from stream_features.query.reader import FeatureReader

from .loaders import load

pytestmark = pytest.mark.integration


def test_each_row_is_answered_as_of_its_own_time(
    redis_client: redis.Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    now = time.time()
    options = GeneratorOptions(customers=150, events=6000, start=now - 200 * 86400, end=now - 60, seed=17)
    engine = load(redis_client, key_prefix, generate_events(options), now=now)
    rng = random.Random(5)
    customers = engine.customer_ids()
    rows = [(rng.choice(customers), now - rng.uniform(0, 220 * 86400)) for _ in range(600)]
    rows.append(("nobody", now))
    expected = [engine.get_all_features(c, 30, at) for c, at in rows]
    reader = FeatureReader(redis_client, prefix=key_prefix, clock=lambda: now)
    assert reader.get_features_at(rows, days=30) == expected

    client = TestClient(create_app(ServiceConfig(redis_url=redis_url, key_prefix=key_prefix)))
    body = {"rows": [{"customer_id": c, "as_of": at} for c, at in rows], "days": 30}
    response = client.post("/v1/features/at", json=body)
    assert response.status_code == 200 and response.json()["rows"] == expected

    csv_rows = tmp_path / "rows.csv"
    csv_rows.write_text("customer_id,as_of\n" + "".join(f"{c},{at!r}\n" for c, at in rows))
    jsonl_rows = tmp_path / "rows.jsonl"
    jsonl_rows.write_text("".join(json.dumps({"customer_id": c, "as_of": at}) + "\n" for c, at in rows))
    for source in (csv_rows, jsonl_rows):
        out = tmp_path / f"{source.name}.out"
        command = [sys.executable, "-m", "stream_features", "features-at", str(source), "--days", "30"]
        command += ["-o", str(out), "--redis-url", redis_url, "--key-prefix", key_prefix, "--no-progress"]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        answers = [json.loads(line) for line in out.read_text().splitlines()]
        assert answers == expected, source.name


def test_a_bad_row_answers_that_row_only(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("customer_id,as_of\nc1,2026-11-01T00:00:00Z\nc2,not a time\n")
    command = [sys.executable, "-m", "stream_features", "features-at", str(rows), "--redis-url", redis_url]
    done = subprocess.run(
        [*command, "--key-prefix", key_prefix, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["customer_id"] == "c1" and first["has_history"] is False
    assert second["customer_id"] == "c2" and "as_of" in second["error"]
