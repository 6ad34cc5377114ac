"""Secrets never printed (issue #15 item 5): by field in describe(), by value everywhere else."""

from __future__ import annotations

import io
import json
import logging

import pytest

from stream_features import redaction
from stream_features.config import ServiceConfig, config_from_env
from stream_features.errors import ConfigurationError
from stream_features.logs import JsonFormatter

SECRET = "s3cr3t-Canary-Value"


def test_describe_masks_every_secret_setting() -> None:
    config = config_from_env(
        {
            "REDIS_URL": f"redis+sentinel://app:{SECRET}@127.0.0.1:26379/sf?sentinel_password={SECRET}x",
            "STREAM_FEATURES_KAFKA_SASL_PASSWORD": SECRET + "k",
            "STREAM_FEATURES_KAFKA_SSL_KEY_PASSWORD": SECRET + "p",
            "STREAM_FEATURES_KAFKA_SASL_USERNAME": "app-user",
        }
    )
    shown = json.dumps(config.describe())
    assert "s3cr3t" not in shown
    assert config.describe()["kafka_options"]["sasl.username"] == "app-user"  # not a secret: shown
    assert config.describe()["redis_url"] == "redis+sentinel://***@127.0.0.1:26379/sf?***"


def test_a_configured_secret_is_masked_in_log_lines_and_tracebacks() -> None:
    ServiceConfig(redis_url=f"rediss://user:{SECRET}@127.0.0.1:6380/0")  # registers the password
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test-redaction")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"could not connect with password {SECRET}")
        except RuntimeError:
            log.exception("library said: %s", f"auth {SECRET} refused")
    finally:
        log.removeHandler(handler)
    line = stream.getvalue()
    assert SECRET not in line
    assert json.loads(line)["msg"] == "library said: auth *** refused"


def test_short_values_are_not_treated_as_secrets() -> None:
    redaction.register(["ab"])  # would otherwise turn every "ab" in every message into ***
    assert redaction.redact("tab about") == "tab about"


def test_tls_files_with_a_plain_url_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not rediss://"):
        ServiceConfig(redis_url="redis://127.0.0.1:6379/0", redis_tls_ca_file="/ca.pem").redis_options()
    assert ServiceConfig(redis_url="rediss://h:1/0", redis_tls_ca_file="/ca.pem").redis_options() == {
        "ssl_ca_certs": "/ca.pem"
    }
