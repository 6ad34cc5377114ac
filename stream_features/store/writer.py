"""The writer: applies batches of events to customers' Redis hashes, effectively once.

For each customer of a batch: load its state (from a local cache, else HGETALL of its two hashes),
apply the events in stream order with ``CustomerState`` — the same code the in-memory engine
runs — and write back only the changed fields with a compare-and-set on the customer's version
(``cas.lua``). The customer's last applied Kafka offset per partition is written in the same
atomic call, so a redelivered record is recognised and skipped. A version mismatch (another
writer touched the customer, e.g. after a rebalance) drops the cached state, reloads and redoes
that customer; any Redis error drops the batch's customers from the cache before re-raising.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import redis
from redis.cluster import RedisCluster

from ..customer_state import Changes, Outcome
from ..errors import InvalidEvent
from ..events import Event
from ..settings import EngineSettings
from .keys import DEFAULT_PREFIX, aux_key, tiles_key
from .state_codec import REJECT_MEMORY, StoredCustomer, load_customer, write_arguments

APPLIED, DUPLICATE, TOO_LATE, ALREADY_APPLIED, ALREADY_REJECTED = "a", "d", "l", "s", "L"
TTL_REFRESH_SECONDS = 86400
MAX_CAS_ROUNDS = 20


class PendingEvent(NamedTuple):
    """A valid event with where it came from (a tuple: one is built per record)."""

    event: Event
    topic: str
    partition: int
    offset: int
    source: Any = None  # the Kafka message, kept for the dead-letter topic


class WriteConflict(RuntimeError):
    """A customer kept changing under us for MAX_CAS_ROUNDS rounds."""


def load_script_source() -> str:
    return resources.files("stream_features.store").joinpath("cas.lua").read_text()


@dataclass(slots=True)
class _Prepared:
    arguments: list[bytes | str | int]
    codes: str


@dataclass(slots=True)
class PreparedBatch:
    """A batch computed against the cached states, ready to be written by ``execute``."""

    customers: dict[str, _Prepared]


class StateWriter:
    """Applies batches of events to Redis; returns one outcome code per event (see module doc).

    ``apply`` does it all in one call. The consumer splits it to overlap Python work with
    Redis work: ``prepare`` (CPU, main thread) → ``execute`` (I/O only, any thread) →
    ``settle`` (main thread). ``prepare`` assumes the write will succeed (it bumps the cached
    version), so the next batch can be prepared while this one is in flight; ``settle`` forgets
    customers whose write did not happen, and their next compare-and-set reloads them.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        settings: EngineSettings,
        *,
        prefix: str = DEFAULT_PREFIX,
        key_ttl_seconds: int | None = None,
        customers_per_call: int = 64,
        cache_size: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._settings = settings
        self._prefix = prefix
        # Idle customers expire one day after they would have fallen out of retention anyway.
        self._ttl = (settings.retention_days + 1) * 86400 if key_ttl_seconds is None else key_ttl_seconds
        # Redis Cluster cannot run one script over keys of several slots: one customer per call.
        self._per_call = 1 if isinstance(client, RedisCluster) else max(1, customers_per_call)
        self._source = load_script_source()
        self._script = client.register_script(self._source)
        self._cluster = isinstance(client, RedisCluster)
        self._cache: OrderedDict[str, StoredCustomer] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self.conflicts = 0

    def apply(self, by_customer: dict[str, list[PendingEvent]]) -> dict[str, str]:
        """Apply every customer's events (each list in stream order). Raises on Redis errors.

        Returns, per customer, one outcome code per event: a applied, d duplicate, l too_late,
        s already applied earlier (redelivery), L already applied earlier and was too_late.
        """
        outcomes: dict[str, str] = {}
        todo = dict(by_customer)
        for _ in range(MAX_CAS_ROUNDS):
            if not todo:
                return outcomes
            prepared = self.prepare(todo)
            try:
                written = self.execute(prepared)
            except BaseException:
                self.forget(prepared.customers)
                raise
            done, conflicted = self.settle(prepared, written)
            outcomes.update(done)
            todo = {customer: by_customer[customer] for customer in conflicted}
        raise WriteConflict(f"{len(todo)} customers changed concurrently {MAX_CAS_ROUNDS} times in a row")

    def forget(self, customers: Iterable[str]) -> None:
        """Drop cached states (their next use reloads from Redis)."""
        for customer in customers:
            self._cache.pop(customer, None)

    def prepare(self, by_customer: dict[str, list[PendingEvent]]) -> PreparedBatch:
        """Apply the events to the cached states and build the compare-and-set arguments."""
        try:
            self._load_missing(list(by_customer))
            batch = PreparedBatch({c: self._prepare_customer(c, by_customer[c]) for c in by_customer})
        except BaseException:
            self.forget(by_customer)  # their cached states may be half-updated
            raise
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return batch

    def execute(self, batch: PreparedBatch) -> dict[str, bool]:
        """Send the compare-and-set calls; touches no cached state (safe off the main thread)."""
        customers = list(batch.customers)
        groups = list(_chunks(customers, self._per_call))
        pipe = self._client.pipeline(transaction=False)
        for group in groups:
            keys: list[str] = []
            args: list[Any] = [self._ttl]
            for customer in group:
                keys += [tiles_key(customer, self._prefix), aux_key(customer, self._prefix)]
                args += batch.customers[customer].arguments
            if self._cluster:
                # Cluster pipelines cannot load scripts on each node: send the source (Redis
                # caches it by digest, so this costs bandwidth, not compilation).
                pipe.execute_command("EVAL", self._source, len(keys), *keys, *args)
            else:
                self._script(keys=keys, args=args, client=pipe)
        replies: list[Any] = pipe.execute()
        written: dict[str, bool] = {}
        for group, reply in zip(groups, replies, strict=True):
            flags = reply.decode() if isinstance(reply, bytes) else str(reply)
            for customer, flag in zip(group, flags, strict=True):
                written[customer] = flag == "1"
        return written

    def settle(self, batch: PreparedBatch, written: dict[str, bool]) -> tuple[dict[str, str], list[str]]:
        """Outcome codes of written customers, and the customers whose write was refused."""
        outcomes: dict[str, str] = {}
        conflicted: list[str] = []
        for customer, prepared in batch.customers.items():
            if written.get(customer):
                outcomes[customer] = prepared.codes
            else:
                self.conflicts += 1
                conflicted.append(customer)
                self._cache.pop(customer, None)
        return outcomes, conflicted

    def _load_missing(self, customers: list[str]) -> None:
        missing = [c for c in customers if c not in self._cache]
        for start in range(0, len(missing), 1000):
            chunk = missing[start : start + 1000]
            pipe = self._client.pipeline(transaction=False)
            for customer in chunk:
                pipe.hgetall(tiles_key(customer, self._prefix))
                pipe.hgetall(aux_key(customer, self._prefix))
            replies = pipe.execute()
            for index, customer in enumerate(chunk):
                self._cache[customer] = load_customer(replies[2 * index], replies[2 * index + 1])

    def _prepare_customer(self, customer: str, pending: list[PendingEvent]) -> _Prepared:
        stored = self._cache[customer]
        self._cache.move_to_end(customer)
        state = stored.state
        state.changes = changes = Changes()
        codes = []
        try:
            for item in pending:
                field = f"o:{item.topic}:{item.partition}"
                if item.offset <= stored.offsets.get(field, -1):
                    rejected = item.offset in stored.rejects.get(field, ())
                    codes.append(ALREADY_REJECTED if rejected else ALREADY_APPLIED)
                    continue
                stored.offsets[field] = item.offset
                try:
                    outcome = state.apply(item.event, self._settings)
                except InvalidEvent:  # too_late is the only rule that needs the customer's state
                    memory = stored.rejects.setdefault(field, [])
                    memory.append(item.offset)
                    del memory[:-REJECT_MEMORY]
                    codes.append(TOO_LATE)
                    continue
                codes.append(APPLIED if outcome is Outcome.APPLIED else DUPLICATE)
        finally:
            state.changes = None
        now = self._clock()
        refresh = now - stored.ttl_set_at >= TTL_REFRESH_SECONDS
        if refresh:
            stored.ttl_set_at = int(now)
        arguments = write_arguments(stored, changes, refresh_ttl=refresh)
        stored.version += 1  # optimistic: settle() forgets the customer if the write is refused
        return _Prepared(arguments, "".join(codes))


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
