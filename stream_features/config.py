"""Service configuration: one frozen object built from flags and environment. Secrets never printed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from . import redaction
from .core.settings import EngineSettings, Thresholds
from .errors import ConfigurationError
from .store.clients import names_a_replica
from .store.keys import DEFAULT_PREFIX, DEFAULT_TOPIC

KAFKA_OPTION_ENV_PREFIX = "STREAM_FEATURES_KAFKA_"
# Kafka client.id: names each consumer in the group (status page, broker logs, quotas).
DEFAULT_CLIENT_ID = "stream-features@{host}/{pid}"
_SECRET_WORDS = ("password", "secret", "key", "token")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = DEFAULT_TOPIC
    group_id: str = "stream-features"
    # Kafka client.id of this process's clients; {host} and {pid} are filled in.
    client_id: str = field(default_factory=lambda: client_id_from(DEFAULT_CLIENT_ID))
    # Extra librdkafka settings (SASL/SSL, timeouts...), passed through as given.
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Where lookups read (the API, the status page, the CLI's reads): a replica, or replicas
    # through Sentinel (``redis+sentinel://…/<service>?role=replica``); None = redis_url.
    # Replicas lag the primary (README "Reading from replicas"); the consumer never uses it.
    redis_read_url: str | None = None
    redis_cluster: bool = False
    # TLS to Redis (a rediss:// URL): the CA that signed the server's certificate, and the
    # client's own certificate and key when the server asks for one (tls-auth-clients yes).
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    key_prefix: str = DEFAULT_PREFIX
    batch_size: int = 150_000
    batch_max_bytes: int = 64 * 1024 * 1024  # of message values: big messages close a batch sooner
    batch_timeout_seconds: float = 0.25
    # Kafka commits are for lag and tooling (resume points are Redis's watermarks): at most one
    # per this many seconds, so hundreds of small live batches do not flood the group coordinator.
    commit_interval_seconds: float = 1.0
    # Longest a single write call should hold Redis (µs, by the writer's cost model): a customer
    # whose events would take longer is written in several calls, each atomic with its offsets.
    write_call_budget_us: float = 800.0
    # Memory for the consumer's cached customer states (a reload from Redis costs two HGETALLs);
    # 0: an eighth of the machine's memory, at least 256 MB (``writer_cache_bytes``).
    writer_cache_mb: int = 0
    # With no traffic, how often the consumer compares Redis's watermarks with its own (a wipe or
    # restore is replayed, a history load's hold is honoured, within about this long).
    idle_check_seconds: float = 1.0
    metrics_port: int = 9464
    # A thread of the consumer reads each partition's end and committed offset from the broker
    # this often, for the stuck-consumer alert (ingest/offsets_watch.py); 0 = off.
    offsets_watch_seconds: float = 15.0
    # HTTP API access control (serve): a file of bearer tokens, one per line; none = open API.
    api_tokens_file: str | None = None
    protect_metrics: bool = False  # with tokens: /metrics asks for one too
    engine: EngineSettings = field(default_factory=EngineSettings)

    def __post_init__(self) -> None:
        # Whatever builds a config, its secrets are masked in everything this process prints.
        redaction.register(self.secrets())
        if names_a_replica(self.redis_url):
            raise ConfigurationError(
                "REDIS_URL must name the primary (the consumer writes through it); "
                "put a ?role=replica URL in REDIS_READ_URL"
            )
        if self.redis_read_url and self.redis_cluster:
            raise ConfigurationError("REDIS_READ_URL is not supported with REDIS_CLUSTER")

    @property
    def read_url(self) -> str:
        """The URL lookups read from: ``redis_read_url``, else the primary's."""
        return self.redis_read_url or self.redis_url

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    def describe(self) -> dict[str, Any]:
        """Every setting, for logs and the start-up line, with secrets masked: generated from
        the fields, so a new setting is never left out."""
        shown: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "kafka_options":
                value = {k: ("***" if _is_secret(k) else v) for k, v in value.items()}
            elif item.name in ("redis_url", "redis_read_url") and value:
                value = _mask_url(value)
            elif item.name == "engine":
                value = {f.name: getattr(value, f.name) for f in fields(value) if f.init and f.name != "thresholds"}
                value["thresholds"] = asdict(self.engine.thresholds)
            shown[item.name] = value
        return shown

    def to_env(self) -> dict[str, str]:
        """The environment that ``config_from_env`` reads back into these settings (for worker
        processes). Engine settings and Kafka options come from the environment already."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "STREAM_FEATURES_TOPIC": self.topic,
            "STREAM_FEATURES_GROUP": self.group_id,
            "REDIS_URL": self.redis_url,
            "REDIS_READ_URL": self.redis_read_url or "",
            "REDIS_CLUSTER": "1" if self.redis_cluster else "",
            "STREAM_FEATURES_KEY_PREFIX": self.key_prefix,
            "REDIS_TLS_CA_FILE": self.redis_tls_ca_file or "",
            "REDIS_TLS_CERT_FILE": self.redis_tls_cert_file or "",
            "REDIS_TLS_KEY_FILE": self.redis_tls_key_file or "",
            "STREAM_FEATURES_API_TOKENS_FILE": self.api_tokens_file or "",
            "STREAM_FEATURES_PROTECT_METRICS": "1" if self.protect_metrics else "",
        }
        for name, value in self.kafka_options.items():
            env[KAFKA_OPTION_ENV_PREFIX + name.upper().replace(".", "_")] = value
        return env

    def redis_options(self, url: str | None = None) -> dict[str, Any]:
        """redis-py keyword arguments for TLS to ``url`` (default the primary's; empty for a
        plain connection). The read URL shares the TLS files, so it must be TLS too."""
        url = self.redis_url if url is None else url
        files = {
            "ssl_ca_certs": self.redis_tls_ca_file,
            "ssl_certfile": self.redis_tls_cert_file,
            "ssl_keyfile": self.redis_tls_key_file,
        }
        options = {name: path for name, path in files.items() if path}
        if options and not url.startswith(("rediss://", "rediss+sentinel://")):
            raise ConfigurationError("Redis TLS files are set but the Redis URL is not rediss://")
        return options

    def secrets(self) -> list[str]:
        """The values that must never be printed: passwords in the Redis URL, secret Kafka options."""
        found = [value for key, value in self.kafka_options.items() if _is_secret(key)]
        found += _url_secrets(self.redis_url) + _url_secrets(self.redis_read_url or "")
        return [value for value in found if value]

    def writer_cache_bytes(self) -> int:
        """The writer's cache size: the setting, or an eighth of the machine's memory."""
        if self.writer_cache_mb > 0:
            return self.writer_cache_mb << 20
        try:
            physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            physical = 8 << 30
        return max(256 << 20, physical // 8)

    def with_overrides(self, **changes: Any) -> ServiceConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def client_id_from(template: str) -> str:
    """``{host}`` → this machine's host name (a pod's name in Kubernetes), ``{pid}`` → the process id."""
    import socket

    client_id = template.replace("{host}", socket.gethostname()).replace("{pid}", str(os.getpid()))
    if not client_id.strip():
        raise ConfigurationError("the Kafka client id must not be empty")
    return client_id


def _is_secret(option: str) -> bool:
    return any(word in option.lower() for word in _SECRET_WORDS)


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password, unquote(password)] if password else []
    return found + [value for key, value in parse_qsl(parts.query) if _is_secret(key)]


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    if "@" in rest:
        rest = f"***@{rest.rpartition('@')[2]}"
    return f"{scheme}{sep}{rest}" + ("?***" if query else "")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def engine_settings_from_env(env: Mapping[str, str]) -> EngineSettings:
    defaults = EngineSettings()
    thresholds = Thresholds()
    raw_thresholds = env.get("STREAM_FEATURES_THRESHOLDS")
    if raw_thresholds:
        import json

        try:
            values = json.loads(raw_thresholds)
        except json.JSONDecodeError:
            raise ConfigurationError("STREAM_FEATURES_THRESHOLDS must be a JSON object") from None
        if not isinstance(values, dict):
            raise ConfigurationError("STREAM_FEATURES_THRESHOLDS must be a JSON object")
        thresholds = Thresholds.from_mapping(values)
    return EngineSettings(
        tile_seconds=_int(env, "STREAM_FEATURES_TILE_SECONDS", defaults.tile_seconds),
        retention_days=_int(env, "STREAM_FEATURES_RETENTION_DAYS", defaults.retention_days),
        max_future_skew_seconds=_float(
            env, "STREAM_FEATURES_MAX_FUTURE_SKEW_SECONDS", defaults.max_future_skew_seconds
        ),
        dedup_horizon_seconds=_float(env, "STREAM_FEATURES_DEDUP_HORIZON_SECONDS", defaults.dedup_horizon_seconds),
        max_attributes=_int(env, "STREAM_FEATURES_MAX_ATTRIBUTES", defaults.max_attributes),
        max_devices_per_tile=_int(env, "STREAM_FEATURES_MAX_DEVICES_PER_TILE", defaults.max_devices_per_tile),
        max_event_ids=_int(env, "STREAM_FEATURES_MAX_EVENT_IDS", defaults.max_event_ids),
        thresholds=thresholds,
    )


def config_from_env(env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read every setting from the environment (flags override later, see the CLI)."""
    env = os.environ if env is None else env
    kafka_options = {
        name[len(KAFKA_OPTION_ENV_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(KAFKA_OPTION_ENV_PREFIX)
    }
    defaults = ServiceConfig()
    return ServiceConfig(
        kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers),
        topic=env.get("STREAM_FEATURES_TOPIC", defaults.topic),
        group_id=env.get("STREAM_FEATURES_GROUP", defaults.group_id),
        client_id=client_id_from(env.get("STREAM_FEATURES_CLIENT_ID") or DEFAULT_CLIENT_ID),
        kafka_options=kafka_options,
        redis_url=env.get("REDIS_URL", defaults.redis_url),
        redis_read_url=env.get("REDIS_READ_URL") or None,
        redis_cluster=env.get("REDIS_CLUSTER", "").lower() in ("1", "true", "yes"),
        redis_tls_ca_file=env.get("REDIS_TLS_CA_FILE") or None,
        redis_tls_cert_file=env.get("REDIS_TLS_CERT_FILE") or None,
        redis_tls_key_file=env.get("REDIS_TLS_KEY_FILE") or None,
        api_tokens_file=env.get("STREAM_FEATURES_API_TOKENS_FILE") or None,
        protect_metrics=env.get("STREAM_FEATURES_PROTECT_METRICS", "").lower() in ("1", "true", "yes"),
        key_prefix=env.get("STREAM_FEATURES_KEY_PREFIX", defaults.key_prefix),
        batch_size=_int(env, "STREAM_FEATURES_BATCH_SIZE", defaults.batch_size),
        batch_max_bytes=_int(env, "STREAM_FEATURES_BATCH_MAX_BYTES", defaults.batch_max_bytes),
        batch_timeout_seconds=_float(env, "STREAM_FEATURES_BATCH_TIMEOUT_SECONDS", defaults.batch_timeout_seconds),
        commit_interval_seconds=_float(
            env, "STREAM_FEATURES_COMMIT_INTERVAL_SECONDS", defaults.commit_interval_seconds
        ),
        write_call_budget_us=_float(env, "STREAM_FEATURES_WRITE_CALL_BUDGET_US", defaults.write_call_budget_us),
        writer_cache_mb=_int(env, "STREAM_FEATURES_WRITER_CACHE_MB", defaults.writer_cache_mb),
        idle_check_seconds=_float(env, "STREAM_FEATURES_IDLE_CHECK_SECONDS", defaults.idle_check_seconds),
        metrics_port=_int(env, "STREAM_FEATURES_METRICS_PORT", defaults.metrics_port),
        offsets_watch_seconds=_float(env, "STREAM_FEATURES_OFFSETS_WATCH_SECONDS", defaults.offsets_watch_seconds),
        engine=engine_settings_from_env(env),
    )


def redis_client(config: ServiceConfig, **kwargs: Any) -> Any:
    """A redis-py client for the configured URL: one server, a Cluster or a Sentinel-managed
    primary (``store/clients.py``); auth and TLS come from the URL."""
    from .store.clients import sync_client

    return sync_client(config.redis_url, cluster=config.redis_cluster, **config.redis_options(), **kwargs)


def async_redis_client(config: ServiceConfig, **kwargs: Any) -> Any:
    """The same for ``redis.asyncio`` (the HTTP API)."""
    from .store.clients import async_client

    return async_client(config.redis_url, cluster=config.redis_cluster, **config.redis_options(), **kwargs)


def read_redis_client(config: ServiceConfig, **kwargs: Any) -> Any:
    """A client for lookups: the read URL (a replica) when one is set, else the primary."""
    from .store.clients import sync_client

    url = config.read_url
    return sync_client(url, cluster=config.redis_cluster, **config.redis_options(url), **kwargs)


def async_read_redis_client(config: ServiceConfig, **kwargs: Any) -> Any:
    """The same for ``redis.asyncio`` (the HTTP API's reader)."""
    from .store.clients import async_client

    url = config.read_url
    return async_client(url, cluster=config.redis_cluster, **config.redis_options(url), **kwargs)
