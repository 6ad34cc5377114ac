"""The one place that builds Redis clients from a URL: one server, Redis Cluster, or a
Sentinel-managed primary (whose client follows a failover).

``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]`` names the
sentinels and the primary's service name; the password (if any) is the data servers'
(the sentinels are asked without one unless ``sentinel_password=`` is given in the query).
``rediss+sentinel://`` uses TLS to the data servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigurationError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    tls: bool


def parse_sentinel_url(url: str) -> SentinelAddress | None:
    """The parts of a ``redis+sentinel://`` URL; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        return None
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(f"sentinel address {host!r} must be host:port")
        sentinels.append((name.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigurationError("a sentinel URL ends with /<service name>[/<db number>]")
    query = parse_qs(parts.query)
    return SentinelAddress(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sentinel_password=query.get("sentinel_password", [None])[0],
        tls=parts.scheme == "rediss+sentinel",
    )


def _sentinel_kwargs(address: SentinelAddress, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = {**kwargs, "db": address.db, "username": address.username, "password": address.password}
    if address.tls:
        data["ssl"] = True
    probe = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
    if address.sentinel_password:
        probe["password"] = address.sentinel_password
    return data, probe


def sync_client(url: str, *, cluster: bool = False, **kwargs: Any) -> Any:
    """A redis-py client for ``url`` (see the module doc)."""
    import redis
    from redis.cluster import RedisCluster
    from redis.sentinel import Sentinel

    address = parse_sentinel_url(url)
    if address is not None:
        data, probe = _sentinel_kwargs(address, kwargs)
        sentinel = Sentinel(address.sentinels, sentinel_kwargs=probe)  # type: ignore[no-untyped-call]
        return sentinel.master_for(address.service, **data)  # type: ignore[no-untyped-call]
    if cluster:
        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def async_client(url: str, *, cluster: bool = False, **kwargs: Any) -> Any:
    """The same for ``redis.asyncio``."""
    import redis.asyncio as aioredis
    from redis.asyncio.sentinel import Sentinel

    address = parse_sentinel_url(url)
    if address is not None:
        data, probe = _sentinel_kwargs(address, kwargs)
        sentinel = Sentinel(address.sentinels, sentinel_kwargs=probe)  # type: ignore[no-untyped-call]
        return sentinel.master_for(address.service, **data)
    if cluster:
        return aioredis.RedisCluster.from_url(url, **kwargs)
    return aioredis.Redis.from_url(url, **kwargs)
