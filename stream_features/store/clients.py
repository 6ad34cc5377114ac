"""The one place that builds Redis clients from a URL: one server, Redis Cluster, or a
Sentinel-managed primary (whose client follows a failover).

``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]`` names the
sentinels and the primary's service name; the password (if any) is the data servers'
(the sentinels are asked without one unless ``sentinel_password=`` is given in the query).
``rediss+sentinel://`` uses TLS to the data servers. ``?role=replica`` (read URLs only,
``REDIS_READ_URL``) asks the sentinels for a replica instead of the primary: redis-py picks
one of the replicas they know, round robin per new connection, and falls back to the primary
when none is known.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigurationError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_ROLES = {"primary": False, "master": False, "replica": True, "slave": True}


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    tls: bool
    replica: bool = False  # ?role=replica: read from a replica the sentinels know


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
    role = query.get("role", ["primary"])[0]
    if role not in _ROLES:
        raise ConfigurationError(f"a sentinel URL's role is primary or replica, not {role!r}")
    return SentinelAddress(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sentinel_password=query.get("sentinel_password", [None])[0],
        tls=parts.scheme == "rediss+sentinel",
        replica=_ROLES[role],
    )


def names_a_replica(url: str) -> bool:
    """True for a sentinel URL that asks for a replica (``?role=replica``): read-only."""
    address = parse_sentinel_url(url)
    return address is not None and address.replica


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
        if address.replica:
            return sentinel.slave_for(address.service, **data)  # type: ignore[no-untyped-call]
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
        if address.replica:
            return sentinel.slave_for(address.service, **data)
        return sentinel.master_for(address.service, **data)
    if cluster:
        return aioredis.RedisCluster.from_url(url, **kwargs)
    return aioredis.Redis.from_url(url, **kwargs)


def roundtrip(client: Any, packed: bytes, count: int) -> list[Any]:
    """Send pre-packed commands on one pooled connection of a (non-cluster) client and read
    ``count`` replies: no per-command packing or reply callbacks (HGETALL replies stay flat
    lists). Error replies come back as exception objects, as from a pipeline with
    ``raise_on_error=False``; a connection failure drops the connection and raises."""
    import redis

    pool = client.connection_pool
    connection = pool.get_connection()
    replies: list[Any] = []
    try:
        connection.send_packed_command([packed])
        for _ in range(count):
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as error:
                replies.append(error)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    return replies


async def async_roundtrip(client: Any, packed: bytes, count: int) -> list[Any]:
    """The same for ``redis.asyncio``, under one deadline for the whole exchange (the
    connection's ``socket_timeout``): redis.asyncio would otherwise start a timer per reply and
    a task per write, a fifth of a lookup's CPU in the HTTP server."""
    import redis

    pool = client.connection_pool
    connection = await pool.get_connection()
    deadline, connection.socket_timeout = connection.socket_timeout, None
    replies: list[Any] = []
    try:
        async with asyncio.timeout(deadline):
            await connection.send_packed_command([packed])
            for _ in range(count):
                try:
                    replies.append(await connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
    except BaseException as exc:
        await connection.disconnect()
        if isinstance(exc, TimeoutError):
            raise redis.TimeoutError(f"no reply from Redis within {deadline} s") from None
        raise
    finally:
        connection.socket_timeout = deadline
        await pool.release(connection)
    return replies


def pack_hgetall(keys: list[str]) -> bytes:
    """``HGETALL key`` for each key, as RESP, ready to send."""
    parts = []
    for key in keys:
        name = key.encode("utf-8", "surrogatepass")
        parts.append(b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(name), name))
    return b"".join(parts)
