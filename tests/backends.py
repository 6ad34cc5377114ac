"""Two backends behind one test interface: the in-memory engine and Redis (writer + reader)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import redis

from stream_features import CustomerActivityFeatures, EngineSettings, InvalidEvent, Outcome
from stream_features.core.events import Event
from stream_features.ingest.decode import PendingEvent, apply_events
from stream_features.query.reader import FeatureReader
from stream_features.store.writer import StateWriter


class Backend(Protocol):
    def apply(self, events: Sequence[Event]) -> list[str]: ...
    def features(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]: ...
    def summary(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]: ...


class MemoryBackend:
    def __init__(self, settings: EngineSettings, now: float) -> None:
        self.engine = CustomerActivityFeatures(settings, clock=lambda: now)

    def apply(self, events: Sequence[Event]) -> list[str]:
        codes = []
        for event in events:
            try:
                codes.append(self.engine.apply(event).code)
            except InvalidEvent as exc:
                assert exc.reason == Outcome.TOO_LATE.value
                codes.append(Outcome.TOO_LATE.code)
        return codes

    def features(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]:
        return self.engine.get_all_features(customer_id, days, as_of)

    def summary(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]:
        return self.engine.get_feature_summary(customer_id, days, as_of)


class RedisBackend:
    """Feeds events as if they came from one partition of one topic, in batches of ``batch_size``."""

    def __init__(
        self,
        client: redis.Redis,
        settings: EngineSettings,
        prefix: str,
        now: float,
        batch_size: int = 7,
        *,
        cold_cache: bool = False,
    ) -> None:
        self.cold_cache = cold_cache
        self.writer = StateWriter(client, settings, topic="topic", prefix=prefix, customers_per_call=3)
        self.reader = FeatureReader(client, settings, prefix=prefix, clock=lambda: now)
        self.batch_size = batch_size
        self.next_offset = 0

    def apply(self, events: Sequence[Event]) -> list[str]:
        codes: list[str] = []
        for start in range(0, len(events), self.batch_size):
            by_customer: dict[str, list[PendingEvent]] = {}
            order: list[str] = []
            for event in events[start : start + self.batch_size]:
                by_customer.setdefault(event.customer_id, []).append(PendingEvent(event, 0, self.next_offset))
                order.append(event.customer_id)
                self.next_offset += 1
            outcomes = apply_events(self.writer, by_customer)
            if self.cold_cache:
                self.writer.forget(list(by_customer))
            position = dict.fromkeys(by_customer, 0)
            for customer in order:
                codes.append(outcomes[customer][position[customer]])
                position[customer] += 1
        return codes

    def features(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]:
        return self.reader.get_features(customer_id, days=days, as_of=as_of)

    def summary(self, customer_id: str, days: int, as_of: float) -> dict[str, Any]:
        return self.reader.get_summary(customer_id, days=days, as_of=as_of)
