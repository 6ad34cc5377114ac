"""The atomic writer: one Lua call applies a group of customers' events, in order, exactly once.

Effectively-once rests on two facts: each customer's hash records the last Kafka offset applied
per partition *in the same atomic script* that applies the events, so a redelivered record is
recognised and skipped; and the consumer commits offsets to Kafka only after this call returned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..events import Event
from ..settings import EngineSettings
from .codec import event_args
from .keys import DEFAULT_PREFIX, aux_key, tiles_key

APPLIED, DUPLICATE, TOO_LATE, ALREADY_APPLIED, ALREADY_REJECTED = "a", "d", "l", "s", "L"


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A valid event with where it came from."""

    event: Event
    topic: str
    partition: int
    offset: int
    source: Any = None  # the Kafka message, kept for the dead-letter topic


def load_script_source() -> str:
    return resources.files("stream_features.store").joinpath("apply.lua").read_text()


class StateWriter:
    """Applies batches of events to Redis; returns one outcome code per event."""

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        settings: EngineSettings,
        *,
        prefix: str = DEFAULT_PREFIX,
        key_ttl_seconds: int | None = None,
        customers_per_call: int = 32,
    ) -> None:
        self._client = client
        self._settings = settings
        self._prefix = prefix
        # Idle customers expire one day after they would have fallen out of retention anyway.
        self._ttl = (settings.retention_days + 1) * 86400 if key_ttl_seconds is None else key_ttl_seconds
        # Redis Cluster cannot run one script over keys of several slots: one customer per call.
        self._per_call = 1 if isinstance(client, RedisCluster) else max(1, customers_per_call)
        self._script = client.register_script(load_script_source())

    def apply(self, by_customer: dict[str, list[PendingEvent]]) -> dict[str, str]:
        """Apply every customer's events (each list in stream order). Raises on Redis errors.

        Returns, per customer, a string with one outcome code per event (see apply.lua).
        """
        customers = list(by_customer)
        if not customers:
            return {}
        pipe = self._client.pipeline(transaction=False)
        groups = list(_chunks(customers, self._per_call))
        for group in groups:
            keys, args = self._call_arguments(group, by_customer)
            self._script(keys=keys, args=args, client=pipe)
        replies: list[Any] = pipe.execute()
        outcomes: dict[str, str] = {}
        for group, reply in zip(groups, replies, strict=True):
            codes = reply.decode() if isinstance(reply, bytes) else str(reply)
            position = 0
            for customer in group:
                count = len(by_customer[customer])
                outcomes[customer] = codes[position : position + count]
                position += count
        return outcomes

    def _call_arguments(
        self, group: Sequence[str], by_customer: dict[str, list[PendingEvent]]
    ) -> tuple[list[str], list[str | int | float]]:
        s = self._settings
        keys: list[str] = []
        args: list[str | int | float] = [s.retention_tiles, repr(s.dedup_horizon_seconds), self._ttl]
        for customer in group:
            keys.append(tiles_key(customer, self._prefix))
            keys.append(aux_key(customer, self._prefix))
            pending = by_customer[customer]
            args.append(len(pending))
            for item in pending:
                args.extend(event_args(item.event, f"o:{item.topic}:{item.partition}", item.offset, s.tile_seconds))
        return keys, args


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
