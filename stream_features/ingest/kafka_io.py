"""Small confluent-kafka helpers: client settings, topic creation, start-up reachability."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ..config import ServiceConfig
from ..errors import ConfigurationError, ServiceUnavailable

log = logging.getLogger(__name__)
_librdkafka_log = logging.getLogger("librdkafka")


def client_settings(config: ServiceConfig, **overrides: Any) -> dict[str, Any]:
    # librdkafka's own log lines go through Python logging: JSON like ours, secrets masked.
    settings: dict[str, Any] = {
        "bootstrap.servers": config.kafka_bootstrap_servers,
        "client.id": config.client_id,  # names the group's members (status page, broker logs)
        "logger": _librdkafka_log,
    }
    settings.update(overrides)
    settings.update(config.kafka_options)  # operator settings (SASL/SSL, timeouts) win
    return settings


# Errors no retry can fix: wrong credentials, a TLS handshake the broker refuses, bad settings.
_REFUSALS = {
    KafkaError._AUTHENTICATION: "refused our credentials",
    KafkaError._SSL: "failed the TLS handshake",
    KafkaError.SASL_AUTHENTICATION_FAILED: "refused our credentials",
    KafkaError._INVALID_ARG: "rejected a setting",
}


def wait_for_kafka(config: ServiceConfig, *, attempts: int = 5, timeout_seconds: float = 5.0) -> AdminClient:
    """An admin client once the cluster answers; ServiceUnavailable after bounded retries, and
    ConfigurationError at once when the broker refuses the credentials or the TLS handshake
    (librdkafka would otherwise retry them forever)."""
    refusals: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in _REFUSALS:
            refusals.append(error)

    try:
        # The probe reports what it finds itself: its client's retry-by-retry lines stay quiet.
        admin = AdminClient(client_settings(config, error_cb=on_error, log_level=0))
    except KafkaException as exc:
        raise ConfigurationError(f"Kafka settings rejected: {exc.args[0].str()}") from None
    for attempt in range(1, attempts + 1):
        try:
            admin.list_topics(timeout=timeout_seconds)
            return admin
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            if refusals:
                first = refusals[0]
                raise ConfigurationError(
                    f"Kafka at {config.kafka_bootstrap_servers} {_REFUSALS[first.code()]}: {first.str()}"
                ) from None
            log.warning("kafka not reachable (attempt %d/%d): %s", attempt, attempts, exc)
            time.sleep(min(2.0 * attempt, 5.0))
    raise ServiceUnavailable(f"Kafka at {config.kafka_bootstrap_servers} did not answer after {attempts} tries")


def ensure_topics(
    admin: AdminClient, topics: Iterable[str], *, partitions: int = 4, topic_config: dict[str, str] | None = None
) -> None:
    """Create missing topics (replication 1 locally; brokers with more nodes keep their default)."""
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, config=topic_config or {}) for t in missing])
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic %s", topic)
