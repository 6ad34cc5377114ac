"""Least privilege and encryption against real servers configured that way (issue #15):
Redis with the shipped ACL users and TLS only, Kafka with SASL SCRAM-SHA-512 over TLS
(deploy/kafka.sh), and secrets that never show in anything the service prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer
from fastapi.testclient import TestClient

from stream_features.config import ServiceConfig
from stream_features.query.api import create_app
from stream_features.query.status import StatusSampler

from .conftest import _unavailable
from .private_redis import PrivateRedis, free_port
from .services import ROOT, run_deploy
from .streaming import Pipeline, assert_same_state, memory_engine, recent_events
from .tls import TlsFiles, make_tls_files

pytestmark = pytest.mark.integration

# Recognisable secrets: none of them may appear in any output.
CONSUMER_PASSWORD = "canary-consumer-7Hq2Zr"
API_PASSWORD = "canary-api-9Wx4Pk"
ADMIN_PASSWORD = "canary-admin-3Nv8Ls"
KAFKA_PASSWORD = "canary-kafka-5Tb1Qm"
BROKER_PASSWORD = "canary-broker-2Yd6Hc"
CANARIES = ("canary-", CONSUMER_PASSWORD, API_PASSWORD, ADMIN_PASSWORD, KAFKA_PASSWORD, BROKER_PASSWORD)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if not shutil.which("openssl"):
        _unavailable("openssl is not installed")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    ca: Path

    def options(self, password: str = KAFKA_PASSWORD) -> dict[str, str]:
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "stream-features",
            "sasl.password": password,
            "ssl.ca.location": str(self.ca),
        }

    def env(self, password: str = KAFKA_PASSWORD) -> dict[str, str]:
        """The same settings the way an operator passes them: STREAM_FEATURES_KAFKA_* variables."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            **{"STREAM_FEATURES_KAFKA_" + k.upper().replace(".", "_"): v for k, v in self.options(password).items()},
        }


@pytest.fixture(scope="module")
def secure_kafka(tls: TlsFiles) -> Iterator[SecureKafka]:
    """A KRaft broker of this module's own whose only client listener is SASL_SSL."""
    port, controller = free_port(), free_port()
    env = {
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_SCRAM_USERS": f"broker:{BROKER_PASSWORD},stream-features:{KAFKA_PASSWORD}",
        "KAFKA_TLS_DIR": str(tls.directory),
    }
    try:
        run_deploy("kafka.sh", "start", env)
    except Exception as exc:
        _unavailable(f"secured Kafka: {exc}")
    kafka = SecureKafka(f"127.0.0.1:{port}", tls.ca)
    try:
        yield kafka
    finally:
        run_deploy("kafka.sh", "wipe", env)


def _acl_file(directory: Path) -> Path:
    """The ACL file as deploy/redis-acl.sh writes it for the default prefix."""
    path = directory / "users.acl"
    env = {
        **os.environ,
        "SF_REDIS_CONSUMER_PASSWORD": CONSUMER_PASSWORD,
        "SF_REDIS_API_PASSWORD": API_PASSWORD,
        "SF_REDIS_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "STREAM_FEATURES_KEY_PREFIX": "sf",
    }
    subprocess.run(["bash", str(ROOT / "deploy" / "redis-acl.sh"), str(path)], env=env, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def secure_redis(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """Redis that speaks TLS only (no plain port) and knows only the shipped ACL users."""
    directory = tmp_path_factory.mktemp("secure-redis")
    server = PrivateRedis(
        directory,
        probe=lambda port: redis.Redis(
            port=port, ssl=True, ssl_ca_certs=str(tls.ca), username="sf-admin", password=ADMIN_PASSWORD
        ),
    )
    server.extra = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key),
        "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no",
        "--aclfile", str(_acl_file(directory)),
    )  # fmt: skip
    server.start()
    yield server
    server.kill()


def _url(server: PrivateRedis, user: str, password: str) -> str:
    return f"rediss://{user}:{password}@127.0.0.1:{server.port}/0"


def _admin(server: PrivateRedis, tls: TlsFiles) -> redis.Redis:
    return redis.Redis(
        port=server.port, ssl=True, ssl_ca_certs=str(tls.ca), username="sf-admin", password=ADMIN_PASSWORD
    )


def _run(command: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_features", *command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for canary in CANARIES:
            assert canary not in output, f"a secret was printed: ...{output[max(0, output.find(canary) - 200) :][:400]}"


def _dead_letters(kafka: SecureKafka, topic: str, expected: int) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            **kafka.options(),
            "group.id": f"dlq-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic + ".dlq"])
    found = 0
    deadline = time.monotonic() + 60
    try:
        while found < expected and time.monotonic() < deadline:
            found += sum(1 for m in consumer.consume(1000, 1.0) if m.error() is None)
        found += sum(1 for m in consumer.consume(1000, 2.0) if m.error() is None)
    finally:
        consumer.close()
    return found


def test_consumer_and_api_run_as_least_privilege_users_over_tls_and_sasl(
    secure_kafka: SecureKafka, secure_redis: PrivateRedis, tls: TlsFiles, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"secure-{suffix}", f"secure-group-{suffix}"
    lines = recent_events(3000, 150, seed=15)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    tls_env = {"REDIS_TLS_CA_FILE": str(tls.ca)}
    kafka_env = secure_kafka.env()
    common = ["--topic", topic, "--log-level", "info"]

    produced = _run(["produce", str(events), "--no-progress", *common], kafka_env)
    assert produced.returncode == 0, produced.stderr

    consumer_env = {**kafka_env, **tls_env, "REDIS_URL": _url(secure_redis, "sf-consumer", CONSUMER_PASSWORD)}
    consumed = _run(
        ["consume", "--group", group, "--metrics-port", "0", "--exit-when-idle", "3", *common], consumer_env
    )
    assert consumed.returncode == 0, consumed.stderr[-3000:]
    started = next(line for line in consumed.stderr.splitlines() if "consumer started" in line)
    assert "rediss://***@127.0.0.1" in started and "'sasl.password': '***'" in started

    # The API's user reads everything the consumer wrote, over TLS, equal to the in-memory engine.
    now = time.time()
    engine, reasons = memory_engine(lines, now)
    api_url = _url(secure_redis, "sf-api", API_PASSWORD)
    pipeline = Pipeline(
        secure_kafka.bootstrap,
        api_url,
        topic,
        group,
        "sf",
        redis_options={"ssl_ca_certs": str(tls.ca)},
        state_url=_url(secure_redis, "sf-admin", ADMIN_PASSWORD),  # sf-api may not SCAN (the stored-state check)
    )
    assert assert_same_state(engine, pipeline, as_of=now) == 150
    assert _dead_letters(secure_kafka, topic, sum(reasons.values())) == sum(reasons.values()) > 0

    api_config = ServiceConfig(
        kafka_bootstrap_servers=secure_kafka.bootstrap,
        kafka_options=secure_kafka.options(),
        topic=topic,
        group_id=group,
        redis_url=api_url,
        redis_tls_ca_file=str(tls.ca),
    )
    customer = engine.customer_ids()[0]
    with TestClient(create_app(api_config, status=StatusSampler(api_config, interval_seconds=0.2))) as client:
        answer = client.get(f"/v1/customers/{customer}/features", params={"as_of": now})
        assert answer.status_code == 200 and answer.json() == engine.get_all_features(customer, 30, now)
        assert client.get("/readyz").status_code == 200
        deadline = time.monotonic() + 30
        # Sampled in the background: wait for a sample with both Kafka's and Redis's parts.
        while time.monotonic() < deadline:
            page = client.get("/v1/status").json()
            if page["committed"] == len(lines) and page["redis"]:
                break
            time.sleep(0.3)
        assert page["committed"] == len(lines) and page["lag"] == 0, page
        assert page["redis"] and page["redis"]["keys"] >= 300  # INFO, DBSIZE, RANDOMKEY, MEMORY USAGE allowed

    status = _run(
        ["status", "--json", "--group", group, "--interval", "0.5", *common],
        {**kafka_env, **tls_env, "REDIS_URL": api_url},
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["lag"] == 0

    _assert_no_secret(
        produced.stdout, produced.stderr, consumed.stdout, consumed.stderr, status.stdout, status.stderr,
        json.dumps(api_config.describe()), json.dumps(page),
    )  # fmt: skip


def test_each_redis_user_has_only_its_rights(secure_redis: PrivateRedis, tls: TlsFiles) -> None:
    def client(user: str, password: str) -> redis.Redis:
        return redis.Redis(port=secure_redis.port, ssl=True, ssl_ca_certs=str(tls.ca), username=user, password=password)

    _admin(secure_redis, tls).hset("sf:{someone}", "t:1", b"x")
    api = client("sf-api", API_PASSWORD)
    assert api.hgetall("sf:{someone}") == {b"t:1": b"x"}
    for write in (
        lambda: api.hset("sf:{someone}", "t:1", b"y"),
        lambda: api.delete("sf:{someone}"),
        lambda: api.eval("return 1", 0),
        lambda: api.flushall(),
        lambda: api.hgetall("other:{someone}"),  # outside the prefix
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    consumer = client("sf-consumer", CONSUMER_PASSWORD)
    consumer.hset("sf:{someone}", "t:2", b"z")
    # Refused by the ACL (NOPERM), not by any other error a command might meet.
    for forbidden in (
        lambda: consumer.flushall(),
        lambda: consumer.config_get("dir"),
        lambda: consumer.set("sf:plain", "1"),
        lambda: consumer.hset("other:{someone}", "t:1", b"y"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    # Inside a script the ACL refusal is a script error naming it.
    with pytest.raises(redis.ResponseError, match="can't run this command"):
        consumer.eval("return redis.call('SET', KEYS[1], '1')", 1, "sf:plain")
    assert _admin(secure_redis, tls).exists("sf:plain", "other:{someone}") == 0
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=secure_redis.port, ssl=True, ssl_ca_certs=str(tls.ca)).ping()  # default user is off
    with pytest.raises(redis.ConnectionError):  # plain text to the TLS port: refused
        redis.Redis(port=secure_redis.port, socket_timeout=3).ping()


@pytest.mark.parametrize("broken", ["kafka password", "redis password", "redis plain text"])
def test_wrong_credentials_are_one_line_and_exit_2(
    broken: str, secure_kafka: SecureKafka, secure_redis: PrivateRedis, tls: TlsFiles
) -> None:
    wrong = "canary-wrong-0Zx9Aa"
    env = {
        **secure_kafka.env(wrong if broken == "kafka password" else KAFKA_PASSWORD),
        "REDIS_URL": _url(secure_redis, "sf-consumer", wrong if broken == "redis password" else CONSUMER_PASSWORD),
        "REDIS_TLS_CA_FILE": str(tls.ca),
    }
    if broken == "redis plain text":  # a client that does not speak TLS to a server that only does
        env["REDIS_URL"] = env["REDIS_URL"].replace("rediss://", "redis://")
        del env["REDIS_TLS_CA_FILE"]
    started = time.monotonic()
    result = _run(["consume", "--topic", "t", "--metrics-port", "0", "--log-level", "error"], env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-features: error: "), result.stderr
    if broken != "redis plain text":
        assert "credentials" in lines[0]
        assert time.monotonic() - started < 30
    _assert_no_secret(result.stdout, result.stderr)
    if broken == "kafka password":
        produce = _run(["produce", "-", "--topic", "t", "--log-level", "error"], env)
        assert produce.returncode == 2 and len(produce.stderr.strip().splitlines()) == 1, produce.stderr
        _assert_no_secret(produce.stderr)
