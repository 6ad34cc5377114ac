"""The hot route's fast path (query/fast_path.py): byte for byte the FastAPI route's answer for
ordinary requests, and every other request left to the route."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from stream_features.config import ServiceConfig
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.api import create_app
from stream_features.query.fast_path import FeaturesFastPath
from stream_features.query.reader import AsyncFeatureReader

from .loaders import load

pytestmark = pytest.mark.integration
NOW = time.time()


@pytest.fixture
def customers(redis_client: redis.Redis, key_prefix: str) -> list[str]:
    options = GeneratorOptions(customers=40, events=1500, start=NOW - 200 * 86400, end=NOW - 60, seed=11)
    return load(redis_client, key_prefix, generate_events(options), now=NOW).customer_ids()


def test_ordinary_requests_get_the_routes_exact_answer(customers: list[str], redis_url: str, key_prefix: str) -> None:
    """The fast path answers every ordinary request itself (the route behind it never sees one),
    byte for byte as the route answers the same request."""
    app = create_app(ServiceConfig(redis_url=redis_url, key_prefix=key_prefix))
    with TestClient(app) as client:
        passed = _count_passed_to_the_route(app)
        for customer in [*customers[:10], "never-seen", "a/b {c}"]:
            # Always an as_of: without one each request is answered as of its own now.
            for query in (
                f"?as_of={NOW:.6f}",
                f"?days=7&as_of={NOW - 86400:.3f}",
                "?days=400&as_of=2026-01-01T00:00:00Z",
            ):
                url = f"/v1/customers/{quote(customer, safe='')}/features{query}"
                fast = client.get(url)
                assert passed == [], f"the fast path handed {passed} to the route"
                # An unknown parameter is not ordinary: the FastAPI route answers (and ignores it).
                routed = client.get(url + "&unused=1")
                assert len(passed) == 1 and passed.pop().endswith("&unused=1")
                assert fast.status_code == routed.status_code == 200
                assert fast.content == routed.content
                assert fast.headers["content-type"] == routed.headers["content-type"]


def _count_passed_to_the_route(app: Any) -> list[str]:
    """Wrap what the app's fast path hands requests to; returns the list of requests it hands on."""
    layer = app.middleware_stack  # built when the TestClient started the app
    for _ in range(20):
        if isinstance(layer, FeaturesFastPath):
            break
        layer = layer.app
    else:
        raise AssertionError("no FeaturesFastPath in the app's middleware")
    passed: list[str] = []
    inner = layer.app

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            passed.append(scope["path"] + "?" + scope["query_string"].decode())
        await inner(scope, receive, send)

    layer.app = counting
    return passed


def test_only_ordinary_requests_are_answered_here(customers: list[str], redis_url: str, key_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    reader = AsyncFeatureReader(client, prefix=key_prefix)
    passed: list[str] = []

    async def route(scope: dict[str, Any], _receive: Any, send: Any) -> None:
        passed.append(scope["path"] + "?" + scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = FeaturesFastPath(route, reader=reader, routes=None, max_days=400)
    fast.route = object()

    async def status_of(method: str, path: str, query: str = "") -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": []}
        await fast(scope, None, send)
        return int(sent[0]["status"])

    async def run() -> None:
        ok = f"/v1/customers/{customers[0]}/features"
        assert await status_of("GET", ok) == 200
        assert await status_of("GET", ok, "days=30&as_of=1790000000") == 200
        for method, path, query in [
            ("POST", ok, ""),
            ("GET", ok, "days=0"),
            ("GET", ok, "days=401"),
            ("GET", ok, "days=+5"),
            ("GET", ok, "days=7&days=8"),
            ("GET", ok, "as_of=yesterday"),
            ("GET", ok, "as_of="),
            ("GET", ok, "days"),
            ("GET", ok, "other=1"),
            ("GET", "/v1/customers/   /features", ""),
            ("GET", "/v1/customers//features", ""),
            ("GET", "/v1/customers/" + "x" * 257 + "/features", ""),
            ("GET", f"/v1/customers/{customers[0]}/summary", ""),
        ]:
            assert await status_of(method, path, query) == 299, (method, path, query)
        await client.aclose()

    asyncio.run(run())
    assert len(passed) == 13


def test_a_redis_that_stops_answering_is_a_timeout_not_a_hang(tmp_path: Any) -> None:
    """One deadline covers a lookup's whole exchange (store/clients.py async_roundtrip): a Redis
    that stops answering (SIGSTOP) is a redis TimeoutError within it, and the next lookup after it
    resumes is answered on a fresh connection."""
    import signal

    from .private_redis import PrivateRedis

    server = PrivateRedis(tmp_path).start()
    assert server.process is not None
    redis.Redis(port=server.port).hset("sf:{c}", "fv", "1")

    async def run() -> None:
        client = aioredis.Redis(port=server.port, socket_timeout=0.5)
        reader = AsyncFeatureReader(client)
        assert (await reader.get_features("c", as_of=NOW))["has_history"] is False
        server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                await reader.get_features("c", as_of=NOW)
            assert time.monotonic() - started < 2.0
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert (await reader.get_features("c", as_of=NOW))["customer_id"] == "c"
        await client.aclose()

    try:
        asyncio.run(run())
    finally:
        server.kill()
