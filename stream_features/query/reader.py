"""``FeatureReader``: the query side over Redis, answering exactly what the in-memory engine answers.

One HGETALL per customer, sent pre-packed and pipelined on one connection (a cohort of 1,000 is
one round trip); the flat features come from the Rust twin of the maths
(``_native.FeatureMaths``, bit for bit the same as ``core/features.py``, tested), with Python
for summaries, charts and anything the twin is not sure it reads exactly as Python would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .._native import FeatureMaths
from ..core.features import cohort_summary, daily_activity, flat_features, summarize
from ..core.query import distinct, resolve, resolve_rows, rows_from_tiles, tradeoff_of
from ..core.settings import EngineSettings
from ..core.timeparse import unix_to_iso
from ..errors import StateUnreadable
from ..store.clients import async_roundtrip, pack_hgetall, roundtrip
from ..store.keys import DEFAULT_PREFIX, tiles_key
from ..store.replication import readiness_problem
from ..store.tile_hash import decode_customer_hash

log = logging.getLogger(__name__)
_COHORT_CHUNK = 1000  # HGETALLs sent before their replies are read


class _ReaderBase:
    """Settings, key prefix and clock shared by the sync and async readers."""

    def __init__(
        self,
        client: Any,
        settings: EngineSettings | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.settings = settings or EngineSettings()
        self._prefix = prefix
        self._clock = clock
        self._maths = feature_maths(self.settings)
        # Redis Cluster spreads customers over nodes: its pipeline routes each command.
        self._cluster = isinstance(client, (RedisCluster, AsyncRedisCluster))

    def _resolve(self, days: object, as_of: object) -> tuple[int, float]:
        return resolve(days, as_of, self.settings, now=self._clock())

    def _decoded(
        self, customer_ids: list[str], raws: list[dict[bytes, bytes]], days: int, as_of: float, *, cohort: bool
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(flat features, metadata) per customer. An unreadable customer raises
        ``StateUnreadable`` for a single lookup and is left out of a cohort (logged)."""
        out = []
        for customer_id, raw in zip(customer_ids, raws, strict=True):
            if (decoded := _decoded_or_skipped(raw, customer_id, skip=cohort, left_out_of="a cohort")) is None:
                continue
            tiles, metadata = decoded
            features = flat_features(customer_id, tiles, days=days, as_of=as_of, settings=self.settings)
            out.append((features, metadata))
        return out

    def _flat(
        self, customer_ids: list[str], raws: list[Any], days: int, as_of: float, *, cohort: bool
    ) -> list[dict[str, Any]]:
        """Flat features per customer: the Rust twin of the maths where it reads the hash
        exactly as Python would, Python for the rest (which raises ``StateUnreadable`` for a
        single lookup and leaves an unreadable customer out of a cohort, logged)."""
        fast = self._maths.flat(customer_ids, raws, days, as_of, unix_to_iso(as_of))
        if all(features is not None for features in fast):
            return fast  # type: ignore[return-value]
        out = []
        for customer_id, raw, features in zip(customer_ids, raws, fast, strict=True):
            if features is None:
                if (decoded := _decoded_or_skipped(raw, customer_id, skip=cohort, left_out_of="a cohort")) is None:
                    continue
                features = flat_features(customer_id, decoded[0], days=days, as_of=as_of, settings=self.settings)
            out.append(features)
        return out


def feature_maths(settings: EngineSettings) -> FeatureMaths:
    """The Rust twin of ``flat_features`` for these settings."""
    t = settings.thresholds
    return FeatureMaths(
        tile_seconds=settings.tile_seconds,
        tiles_per_day=settings.tiles_per_day,
        retention_days=settings.retention_days,
        retention_tiles=settings.retention_tiles,
        short_days=t.short_window_days,
        long_days=t.long_window_days,
        high_activity_ratio=t.high_activity_ratio,
        declining_ratio=t.declining_ratio,
        support_short_tickets=t.support_short_tickets,
        support_long_tickets=t.support_long_tickets,
        support_long_escalation_ratio=t.support_long_escalation_ratio,
        cart_min_count=t.cart_min_count,
        cart_low_conversion_ratio=t.cart_low_conversion_ratio,
        recency_concern_days=t.recency_concern_days,
    )


class FeatureReader(_ReaderBase):
    """Features, summaries and cohorts for customers whose state the consumer keeps in Redis.

    ``client`` is a ``redis.Redis`` or ``RedisCluster``.
    """

    def _fetch(self, customer_ids: list[str]) -> list[Any]:
        """Each customer's HGETALL reply (a flat list of field, value; a dict on Redis Cluster),
        pipelined ``_COHORT_CHUNK`` at a time on one connection."""
        keys = [tiles_key(customer_id, self._prefix) for customer_id in customer_ids]
        results: list[Any] = []
        for start in range(0, len(keys), _COHORT_CHUNK):
            chunk = keys[start : start + _COHORT_CHUNK]
            if self._cluster:
                pipe = self._client.pipeline(transaction=False)
                for key in chunk:
                    pipe.hgetall(key)
                results.extend(pipe.execute())
            else:
                results.extend(_raised(roundtrip(self._client, pack_hgetall(chunk), len(chunk))))
        return results

    def records(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None, cohort: bool = True
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(flat features, metadata) per distinct readable id, in first-seen order."""
        resolved_days, moment = self._resolve(days, as_of)
        unique = distinct(customer_ids)
        return self._decoded(unique, self._fetch(unique), resolved_days, moment, cohort=cohort)

    def get_features(self, customer_id: str, *, days: object = None, as_of: object = None) -> dict[str, Any]:
        """Flat features of one customer (one round trip)."""
        resolved_days, moment = self._resolve(days, as_of)
        return self._flat([customer_id], self._fetch([customer_id]), resolved_days, moment, cohort=False)[0]

    def get_summary(self, customer_id: str, *, days: object = None, as_of: object = None) -> dict[str, Any]:
        ((features, metadata),) = self.records([customer_id], days=days, as_of=as_of, cohort=False)
        return summarize(features, metadata)

    def get_features_at(
        self, rows: Iterable[tuple[str, object]], *, days: object = None
    ) -> list[dict[str, Any] | None]:
        """Flat features of each (customer, as_of) row at its own time, in row order: one
        HGETALL per distinct customer (pipelined), then the maths per row. Exact within
        retention: a window sees only tiles up to the tile of its ``as_of``, so nothing later
        leaks in. A row whose customer is unreadable gives None."""
        resolved = resolve_rows(rows, days, self.settings, now=self._clock())
        customers = list(dict.fromkeys(customer for customer, _ in resolved))
        return _rows_at(customers, self._fetch(customers), resolved, self.settings)

    def get_daily_activity(self, customer_id: str, *, days: object = 90, as_of: object = None) -> dict[str, Any]:
        """Events per day over the last ``days`` days (for charts)."""
        resolved_days, moment = self._resolve(days, as_of)
        tiles, _ = decode_customer_hash(self._client.hgetall(tiles_key(customer_id, self._prefix)), customer_id)
        return daily_activity(customer_id, tiles, days=resolved_days, as_of=moment, settings=self.settings)

    def get_tradeoff(self, customer_id: str, *, as_of: object = None) -> dict[str, Any]:
        """Short- vs long-window flags (the trade-off indicators) as of ``as_of``."""
        return tradeoff_of(self.get_features(customer_id, as_of=as_of))

    def get_cohort_features(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, dict[str, Any]]:
        """Flat features for many customers, pipelined (at most ``MAX_COHORT_SIZE`` distinct ids)."""
        resolved_days, moment = self._resolve(days, as_of)
        unique = distinct(customer_ids)
        found = self._flat(unique, self._fetch(unique), resolved_days, moment, cohort=True)
        return {features["customer_id"]: features for features in found}

    def get_cohort_summary(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, Any]:
        return cohort_summary(self.get_cohort_features(customer_ids, days=days, as_of=as_of).values())

    def ping(self) -> bool:
        return bool(self._client.ping())

    def readiness_problem(self) -> str | None:
        """Why lookups should not be sent here now (a replica that lost its primary), or None.
        Raises when Redis does not answer."""
        if self._cluster:
            self._client.ping()
            return None
        return readiness_problem(self._client.info("replication"))


class AsyncFeatureReader(_ReaderBase):
    """The same answers as ``FeatureReader`` over ``redis.asyncio`` (used by the HTTP API)."""

    async def _fetch(self, customer_ids: list[str]) -> list[Any]:
        keys = [tiles_key(customer_id, self._prefix) for customer_id in customer_ids]
        results: list[Any] = []
        for start in range(0, len(keys), _COHORT_CHUNK):
            chunk = keys[start : start + _COHORT_CHUNK]
            if self._cluster:
                pipe = self._client.pipeline(transaction=False)
                for key in chunk:
                    pipe.hgetall(key)
                results.extend(await pipe.execute())
            else:
                results.extend(_raised(await async_roundtrip(self._client, pack_hgetall(chunk), len(chunk))))
        return results

    async def records(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None, cohort: bool = True
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(flat features, metadata) per distinct readable id, in first-seen order."""
        resolved_days, moment = self._resolve(days, as_of)
        unique = distinct(customer_ids)
        return self._decoded(unique, await self._fetch(unique), resolved_days, moment, cohort=cohort)

    async def get_features(self, customer_id: str, *, days: object = None, as_of: object = None) -> dict[str, Any]:
        resolved_days, moment = self._resolve(days, as_of)
        raws = await self._fetch([customer_id])
        return self._flat([customer_id], raws, resolved_days, moment, cohort=False)[0]

    async def get_summary(self, customer_id: str, *, days: object = None, as_of: object = None) -> dict[str, Any]:
        ((features, metadata),) = await self.records([customer_id], days=days, as_of=as_of, cohort=False)
        return summarize(features, metadata)

    async def get_features_at(
        self, rows: Iterable[tuple[str, object]], *, days: object = None
    ) -> list[dict[str, Any] | None]:
        resolved = resolve_rows(rows, days, self.settings, now=self._clock())
        customers = list(dict.fromkeys(customer for customer, _ in resolved))
        return _rows_at(customers, await self._fetch(customers), resolved, self.settings)

    async def get_daily_activity(self, customer_id: str, *, days: object = 90, as_of: object = None) -> dict[str, Any]:
        resolved_days, moment = self._resolve(days, as_of)
        raw = await self._client.hgetall(tiles_key(customer_id, self._prefix))
        tiles, _ = decode_customer_hash(_mapping(raw), customer_id)
        return daily_activity(customer_id, tiles, days=resolved_days, as_of=moment, settings=self.settings)

    async def get_tradeoff(self, customer_id: str, *, as_of: object = None) -> dict[str, Any]:
        """Short- vs long-window flags (the trade-off indicators) as of ``as_of``."""
        return tradeoff_of(await self.get_features(customer_id, as_of=as_of))

    async def get_cohort_features(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, dict[str, Any]]:
        resolved_days, moment = self._resolve(days, as_of)
        unique = distinct(customer_ids)
        found = self._flat(unique, await self._fetch(unique), resolved_days, moment, cohort=True)
        return {features["customer_id"]: features for features in found}

    async def get_cohort_summary(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, Any]:
        return cohort_summary((await self.get_cohort_features(customer_ids, days=days, as_of=as_of)).values())

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def readiness_problem(self) -> str | None:
        """Why lookups should not be sent here now (a replica that lost its primary), or None.
        Raises when Redis does not answer."""
        if self._cluster:
            await self._client.ping()
            return None
        return readiness_problem(await self._client.info("replication"))


def _rows_at(
    customers: list[str],
    raws: list[dict[bytes, bytes]],
    rows: list[tuple[str, tuple[int, float]]],
    settings: EngineSettings,
) -> list[dict[str, Any] | None]:
    tiles_of: dict[str, Any] = {}
    for customer, raw in zip(customers, raws, strict=True):
        if (decoded := _decoded_or_skipped(raw, customer, skip=True, left_out_of="a point-in-time lookup")) is not None:
            tiles_of[customer] = decoded[0]
    return rows_from_tiles(rows, tiles_of, settings)


def _decoded_or_skipped(
    raw: Any, customer_id: str, *, skip: bool, left_out_of: str
) -> tuple[dict[int, Any], dict[str, Any]] | None:
    """A customer's tiles and metadata. Unreadable: ``StateUnreadable`` for a single lookup, or
    None (logged) where a many-customer answer leaves it out."""
    try:
        return decode_customer_hash(_mapping(raw), customer_id)
    except StateUnreadable as exc:
        if not skip:
            raise
        log.warning("left out of %s: %s", left_out_of, exc)
        return None


def _mapping(raw: Any) -> Mapping[bytes, bytes]:
    """An HGETALL reply as a mapping (raw replies are flat lists of field, value)."""
    if isinstance(raw, list):
        return dict(zip(raw[::2], raw[1::2], strict=True))
    return cast(Mapping[bytes, bytes], raw)


def _raised(replies: list[Any]) -> list[Any]:
    """The replies, or the first error reply raised (as a pipeline does)."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies
