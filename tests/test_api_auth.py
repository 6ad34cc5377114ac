"""Optional bearer-token access control of the HTTP API (issue #15 item 4), against the real
server process and Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from stream_features.config import ServiceConfig
from stream_features.errors import ConfigurationError
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.api import create_app
from stream_features.query.api_auth import BearerAuth, read_tokens

from .loaders import load
from .private_redis import free_port
from .streaming import wait_until

TOKENS = ["first-token-0123456789abcdef", "second-token-fedcba9876543210"]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# API clients\n{TOKENS[0]}\n\n  {TOKENS[1]}  \n")
    return path


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.integration
def test_serve_with_a_token_file_guards_every_data_route(
    redis_client: redis.Redis, redis_url: str, key_prefix: str, token_file: Path
) -> None:
    now = time.time()
    options = GeneratorOptions(customers=20, events=400, start=now - 30 * 86400, end=now - 60, seed=3)
    engine = load(redis_client, key_prefix, generate_events(options), now=now)
    customer = engine.customer_ids()[0]
    port = free_port()
    command = [sys.executable, "-m", "stream_features", "serve", "--port", str(port), "--no-status", "--workers", "2"]
    command += ["--redis-url", redis_url, "--key-prefix", key_prefix, "--token-file", str(token_file)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/healthz"), timeout=60, what="API up")
        with httpx.Client(base_url=base, timeout=10) as http:
            features = f"/v1/customers/{customer}/features"
            for headers, why in (
                ({}, "a bearer token is required"),
                (_bearer("not-a-token-of-ours-at-all"), "the bearer token is not valid"),
                ({"Authorization": f"Basic {TOKENS[0]}"}, "the bearer token is not valid"),
                (_bearer(TOKENS[0][:-1]), "the bearer token is not valid"),
            ):
                refused = http.get(features, params={"as_of": now}, headers=headers)
                assert refused.status_code == 401
                assert refused.json() == {"error": "unauthorized", "message": why}
                assert refused.headers["www-authenticate"].startswith("Bearer")
            for token in TOKENS:  # every worker knows every token
                for _ in range(4):
                    answer = http.get(features, params={"as_of": now}, headers=_bearer(token))
                    assert answer.status_code == 200
                    assert answer.json() == engine.get_all_features(customer, 30, now)
            cohort = http.post("/v1/cohorts/features", json={"customer_ids": [customer]})
            assert cohort.status_code == 401
            assert http.get("/readyz").status_code == 401
            assert http.get("/healthz").status_code == 200
            assert http.get("/metrics").status_code == 200  # open unless --protect-metrics
            document = http.get("/openapi.json").json()
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    guarded = document["paths"]["/v1/customers/{customer_id}/features"]["get"]
    assert guarded["security"] == [{"bearerAuth": []}] and "401" in guarded["responses"]
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert "security" not in document["paths"]["/metrics"]["get"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def protected(redis_url: str, key_prefix: str, token_file: Path) -> Iterator[TestClient]:
    config = ServiceConfig(redis_url=redis_url, key_prefix=key_prefix, api_tokens_file=str(token_file))
    with TestClient(create_app(config.with_overrides(protect_metrics=True))) as client:
        yield client


@pytest.mark.integration
def test_protect_metrics_puts_metrics_behind_a_token_too(protected: TestClient) -> None:
    assert protected.get("/metrics").status_code == 401
    assert protected.get("/metrics", headers=_bearer(TOKENS[1])).status_code == 200
    assert protected.get("/healthz").status_code == 200
    # Pages without data stay open: the status page shell and the contract.
    assert protected.get("/openapi.json").status_code == 200
    assert "security" in protected.get("/openapi.json").json()["paths"]["/metrics"]["get"]


def test_bad_token_files_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    short = tmp_path / "short"
    short.write_text("a-long-enough-token-123\nshort\n")
    for path, message in (
        (tmp_path / "missing", "cannot read the API token file"),
        (empty, "has no tokens"),
        (short, "API token 2 in"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            read_tokens(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "stream_features", "serve", "--token-file", str(short), "--no-status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"stream-features: error: API token 2 in {short} is shorter than 16 characters or has a space"
    ]


def test_only_an_exact_known_bearer_token_passes() -> None:
    auth = BearerAuth(app=None, tokens=TOKENS, open_paths=frozenset())
    assert auth.allows(f"Bearer {TOKENS[0]}".encode())
    assert auth.allows(f"bearer {TOKENS[1]}".encode())  # the scheme is case-insensitive (RFC 7235)
    for header in (
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        TOKENS[0].encode(),
        f"Basic {TOKENS[0]}".encode(),
        f"Bearer {TOKENS[0]}x".encode(),
        f"Bearer {TOKENS[0][1:]}".encode(),
        f"Bearer {TOKENS[0]},{TOKENS[1]}".encode(),
    ):
        assert not auth.allows(header), header
