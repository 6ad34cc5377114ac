"""Configuration from one source: defaults come from the settings classes, every field is
described, and the environment written for worker processes reads back to the same settings."""

from __future__ import annotations

from dataclasses import fields

from stream_features.config import ServiceConfig, config_from_env
from stream_features.core.settings import EngineSettings
from stream_features.store.keys import DEFAULT_PREFIX, DEFAULT_TOPIC
from stream_features.store.writer import StateWriter


def test_an_empty_environment_gives_the_classes_defaults() -> None:
    assert config_from_env({}) == ServiceConfig()
    assert config_from_env({}).engine == EngineSettings()


def test_describe_shows_every_setting() -> None:
    described = ServiceConfig().describe()
    assert set(described) == {item.name for item in fields(ServiceConfig)}
    assert set(described["engine"]) == {item.name for item in fields(EngineSettings) if item.init}


def test_the_environment_for_workers_reads_back_to_the_same_settings() -> None:
    config = ServiceConfig(
        kafka_bootstrap_servers="127.0.0.1:19092",
        topic="orders",
        group_id="g",
        kafka_options={"security.protocol": "SASL_SSL"},
        redis_url="rediss://user:secret-pass@127.0.0.1:6380/1",
        redis_read_url="rediss+sentinel://user:secret-pass@127.0.0.1:26380/sf?role=replica",
        redis_tls_ca_file="/ca.pem",
        key_prefix="p",
        api_tokens_file="/tokens",
        protect_metrics=True,
    )
    assert config_from_env(config.to_env()) == config


def test_one_default_topic_and_prefix_for_the_service_and_the_writer() -> None:
    import inspect

    writer_defaults = inspect.signature(StateWriter.__init__).parameters
    assert writer_defaults["topic"].default == ServiceConfig().topic == DEFAULT_TOPIC
    assert writer_defaults["prefix"].default == ServiceConfig().key_prefix == DEFAULT_PREFIX


def test_layers_import_in_one_direction() -> None:
    """core imports no other layer; store imports neither ingest nor query; ingest and query do not
    import history, which builds on core, store and ingest (README, Development)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "stream_features"
    forbidden = {
        "core": ("ingest", "query", "store", "history"),
        "store": ("ingest", "query", "history"),
        "ingest": ("query", "history"),
        "query": ("history",),
        "history": ("query",),
    }
    for layer, others in forbidden.items():
        for path in (package / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level >= 2:
                    assert node.module.split(".")[0] not in others, f"{path.name} imports {node.module}"
