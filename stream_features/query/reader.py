"""``FeatureReader``: the query side over Redis, answering exactly what the in-memory engine answers.

One HGETALL per customer (pipelined for cohorts); the feature maths is the shared pure core.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..core.features import cohort_summary, daily_activity, flat_features, summarize
from ..core.query import distinct, resolve, resolve_rows, rows_from_tiles, tradeoff_of
from ..core.settings import EngineSettings
from ..errors import StateUnreadable
from ..store.keys import DEFAULT_PREFIX, tiles_key
from ..store.tile_hash import decode_customer_hash

log = logging.getLogger(__name__)
_COHORT_CHUNK = 500


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

    def _resolve(self, days: object, as_of: object) -> tuple[int, float]:
        return resolve(days, as_of, self.settings, now=self._clock())

    def _decoded(
        self, customer_ids: list[str], raws: list[dict[bytes, bytes]], days: int, as_of: float, *, cohort: bool
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(flat features, metadata) per customer. An unreadable customer raises
        ``StateUnreadable`` for a single lookup and is left out of a cohort (logged)."""
        out = []
        for customer_id, raw in zip(customer_ids, raws, strict=True):
            try:
                tiles, metadata = decode_customer_hash(raw, customer_id)
            except StateUnreadable as exc:
                if not cohort:
                    raise
                log.warning("left out of a cohort: %s", exc)
                continue
            features = flat_features(customer_id, tiles, days=days, as_of=as_of, settings=self.settings)
            out.append((features, metadata))
        return out


class FeatureReader(_ReaderBase):
    """Features, summaries and cohorts for customers whose state the consumer keeps in Redis.

    ``client`` is a ``redis.Redis`` or ``RedisCluster``.
    """

    def _fetch(self, customer_ids: list[str]) -> list[dict[bytes, bytes]]:
        results: list[dict[bytes, bytes]] = []
        for start in range(0, len(customer_ids), _COHORT_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for customer_id in customer_ids[start : start + _COHORT_CHUNK]:
                pipe.hgetall(tiles_key(customer_id, self._prefix))
            results.extend(pipe.execute())
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
        raw = self._client.hgetall(tiles_key(customer_id, self._prefix))
        tiles, _ = decode_customer_hash(raw, customer_id)
        return flat_features(customer_id, tiles, days=resolved_days, as_of=moment, settings=self.settings)

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
        records = self.records(customer_ids, days=days, as_of=as_of)
        return {features["customer_id"]: features for features, _ in records}

    def get_cohort_summary(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, Any]:
        return cohort_summary(self.get_cohort_features(customer_ids, days=days, as_of=as_of).values())

    def ping(self) -> bool:
        return bool(self._client.ping())


class AsyncFeatureReader(_ReaderBase):
    """The same answers as ``FeatureReader`` over ``redis.asyncio`` (used by the HTTP API)."""

    async def _fetch(self, customer_ids: list[str]) -> list[dict[bytes, bytes]]:
        if len(customer_ids) == 1:
            return [await self._client.hgetall(tiles_key(customer_ids[0], self._prefix))]
        results: list[dict[bytes, bytes]] = []
        for start in range(0, len(customer_ids), _COHORT_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for customer_id in customer_ids[start : start + _COHORT_CHUNK]:
                pipe.hgetall(tiles_key(customer_id, self._prefix))
            results.extend(await pipe.execute())
        return results

    async def records(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None, cohort: bool = True
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(flat features, metadata) per distinct readable id, in first-seen order."""
        resolved_days, moment = self._resolve(days, as_of)
        unique = distinct(customer_ids)
        return self._decoded(unique, await self._fetch(unique), resolved_days, moment, cohort=cohort)

    async def get_features(self, customer_id: str, *, days: object = None, as_of: object = None) -> dict[str, Any]:
        ((features, _),) = await self.records([customer_id], days=days, as_of=as_of, cohort=False)
        return features

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
        tiles, _ = decode_customer_hash(raw, customer_id)
        return daily_activity(customer_id, tiles, days=resolved_days, as_of=moment, settings=self.settings)

    async def get_tradeoff(self, customer_id: str, *, as_of: object = None) -> dict[str, Any]:
        """Short- vs long-window flags (the trade-off indicators) as of ``as_of``."""
        return tradeoff_of(await self.get_features(customer_id, as_of=as_of))

    async def get_cohort_features(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, dict[str, Any]]:
        records = await self.records(customer_ids, days=days, as_of=as_of)
        return {features["customer_id"]: features for features, _ in records}

    async def get_cohort_summary(
        self, customer_ids: Iterable[str], *, days: object = None, as_of: object = None
    ) -> dict[str, Any]:
        records = await self.records(customer_ids, days=days, as_of=as_of)
        return cohort_summary(features for features, _ in records)

    async def ping(self) -> bool:
        return bool(await self._client.ping())


def _rows_at(
    customers: list[str],
    raws: list[dict[bytes, bytes]],
    rows: list[tuple[str, tuple[int, float]]],
    settings: EngineSettings,
) -> list[dict[str, Any] | None]:
    tiles_of: dict[str, Any] = {}
    for customer, raw in zip(customers, raws, strict=True):
        try:
            tiles_of[customer] = decode_customer_hash(raw, customer)[0]
        except StateUnreadable as exc:
            log.warning("left out of a point-in-time lookup: %s", exc)
    return rows_from_tiles(rows, tiles_of, settings)
