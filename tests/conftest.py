"""Service fixtures for integration tests. In CI (CI=true) an integration test may not skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from . import services

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_report_header() -> str:
    """Which build the tests run against (the work tree's, or an installed wheel's)."""
    try:
        import stream_features
        from stream_features import _native
    except ImportError as exc:
        return f"stream_features: not importable ({exc})"
    return f"stream_features: {Path(stream_features.__file__).parent} ({Path(_native.__file__).name})"


def pytest_configure() -> None:
    """deploy/wheel-test.sh runs the tests against an installed wheel: STREAM_FEATURES_TEST_INSTALLED
    names its site-packages, and the run stops unless the package is imported from there."""
    installed = os.environ.get("STREAM_FEATURES_TEST_INSTALLED")
    if not installed:
        return
    import stream_features
    from stream_features import _native

    for module in (stream_features, _native):
        if not Path(str(module.__file__)).resolve().is_relative_to(Path(installed).resolve()):
            raise pytest.UsageError(f"{module.__name__} is imported from {module.__file__}, not from {installed}")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"integration service unavailable in CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        url = services.redis_url()
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except Exception as exc:
        _unavailable(f"Redis: {exc}")
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    try:
        bootstrap = services.kafka_bootstrap()
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    except Exception as exc:
        _unavailable(f"Kafka: {exc}")
    return bootstrap


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh key namespace per test, deleted afterwards, so tests never share state."""
    prefix = f"sftest-{uuid.uuid4().hex[:12]}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def topic_name() -> str:
    return f"events-{uuid.uuid4().hex[:12]}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Containers and deploy/ services started for the session stop (also after failures; those
    already running are left running); a skipped integration test in CI is a failure, whatever
    skipped it."""
    from . import containers

    containers.stop_all()
    services.stop_started()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not IN_CI or reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if "integration" in getattr(r, "keywords", {})]
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} integration test(s) skipped: failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
