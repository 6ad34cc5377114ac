"""Settings for lookups from replicas (issue #23 item 3), without services: the read URL, the
Sentinel role, what is refused, what is masked, and readiness and lag from INFO replication."""

from __future__ import annotations

import json

import pytest

from stream_features.cli import main
from stream_features.config import ServiceConfig, config_from_env
from stream_features.errors import ConfigurationError
from stream_features.store.clients import names_a_replica, parse_sentinel_url
from stream_features.store.replication import readiness_problem, replication_state

SENTINELS = "redis+sentinel://127.0.0.1:26380,127.0.0.1:26381/sf"


def test_the_read_url_defaults_to_the_primary_and_comes_from_the_environment() -> None:
    assert config_from_env({"REDIS_URL": "redis://10.0.0.1:6379/0"}).read_url == "redis://10.0.0.1:6379/0"
    env = {"REDIS_URL": SENTINELS, "REDIS_READ_URL": SENTINELS + "?role=replica"}
    config = config_from_env(env)
    assert (config.redis_url, config.read_url) == (SENTINELS, SENTINELS + "?role=replica")


@pytest.mark.parametrize(
    ("query", "replica"), [("", False), ("?role=primary", False), ("?role=replica", True), ("?role=slave", True)]
)
def test_a_sentinel_url_names_the_primary_unless_it_asks_for_a_replica(query: str, replica: bool) -> None:
    address = parse_sentinel_url(SENTINELS + query)
    assert address is not None and address.replica is replica and address.service == "sf"
    assert names_a_replica(SENTINELS + query) is replica
    assert not names_a_replica("redis://127.0.0.1:6379/0?role=replica")  # only Sentinel has roles


def test_an_unknown_role_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="primary or replica"):
        parse_sentinel_url(SENTINELS + "?role=leader")


def test_the_primary_url_may_not_name_a_replica_and_cluster_has_no_read_url() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_READ_URL"):
        ServiceConfig(redis_url=SENTINELS + "?role=replica")
    with pytest.raises(ConfigurationError, match="REDIS_CLUSTER"):
        ServiceConfig(redis_read_url="redis://127.0.0.1:7001/0", redis_cluster=True)


def test_tls_files_need_a_tls_read_url_too() -> None:
    config = ServiceConfig(
        redis_url="rediss://127.0.0.1:6380/0", redis_read_url="redis://127.0.0.1:6381/0", redis_tls_ca_file="/ca"
    )
    assert config.redis_options() == {"ssl_ca_certs": "/ca"}
    with pytest.raises(ConfigurationError, match="not rediss"):
        config.redis_options(config.read_url)


def test_the_read_urls_password_is_masked() -> None:
    config = ServiceConfig(redis_read_url="redis://reader:read-pass-123456@127.0.0.1:6381/0")
    assert "read-pass-123456" in config.secrets()
    assert config.describe()["redis_read_url"] == "redis://***@127.0.0.1:6381/0"
    assert ServiceConfig().describe()["redis_read_url"] is None


def test_a_replica_url_as_the_primary_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "c1", "--redis-url", SENTINELS + "?role=replica"]) == 2
    err = capsys.readouterr().err
    assert "REDIS_READ_URL" in err and len(err.strip().splitlines()) == 1


def test_readiness_of_the_server_lookups_read_from() -> None:
    assert readiness_problem({"role": "master"}) is None
    up = {"role": "slave", "master_link_status": "up", "master_sync_in_progress": 0}
    assert readiness_problem(up) is None
    assert "lost its link" in str(readiness_problem({**up, "master_link_status": "down"}))
    assert "full copy" in str(readiness_problem({**up, "master_sync_in_progress": 1}))


def test_replication_lag_is_the_primarys_offset_minus_the_replicas() -> None:
    replica = {"role": "slave", "master_link_status": "up", "master_last_io_seconds_ago": 0, "slave_repl_offset": 900}
    state = replication_state(replica, {"role": "master", "master_repl_offset": 1500})
    assert state == {"role": "replica", "link": "up", "last_io_seconds_ago": 0, "lag_bytes": 600}
    assert "lag_bytes" not in replication_state(replica, None)  # the primary did not answer
    assert replication_state({"role": "master"}, None) == {"role": "primary"}
    json.dumps(state)  # the status page's JSON
