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
from typing import Any, NamedTuple, cast

import hiredis
import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

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
    keys: tuple[str, str]
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
        self._keys: dict[str, tuple[str, str]] = {}
        self._script_loaded = False
        self._cache: OrderedDict[str, StoredCustomer] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

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
        calls: list[tuple[list[str], list[Any]]] = []
        for group in groups:
            keys: list[str] = []
            args: list[Any] = [self._ttl]
            for customer in group:
                prepared = batch.customers[customer]
                keys += prepared.keys
                args += prepared.arguments
            calls.append((keys, args))
        replies = self._send_cluster(calls) if self._cluster else self._send(calls)
        written: dict[str, bool] = {}
        for group, reply in zip(groups, replies, strict=True):
            flags = reply.decode() if isinstance(reply, bytes) else "0" * len(group)
            for customer, flag in zip(group, flags, strict=True):
                written[customer] = flag == "1"
        return written

    def _send(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """EVALSHA calls packed by hiredis (C) and pipelined on one connection.

        A call refused with NOSCRIPT (Redis restarted, cache flushed) ran nothing: its customers
        count as not written, the script is loaded again, and settle() makes them redo.
        """
        if not self._script_loaded:
            self._client.script_load(self._source)
            self._script_loaded = True
        sha = self._script.sha
        packed = b"".join(hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args)) for keys, args in calls)
        pool = cast(redis.Redis, self._client).connection_pool
        connection = pool.get_connection()
        replies: list[Any] = []
        missing_script = False
        try:
            connection.send_packed_command([packed])  # type: ignore[no-untyped-call]
            for _ in calls:
                try:
                    replies.append(connection.read_response())
                except NoScriptError:
                    replies.append(None)
                    missing_script = True
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(connection)
        if missing_script:
            self._client.script_load(self._source)
        return replies

    def _send_cluster(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        # Cluster pipelines cannot load scripts on each node: send the source (Redis caches it by
        # digest, so this costs bandwidth, not compilation).
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVAL", self._source, len(keys), *keys, *args)
        return list(pipe.execute())

    def settle(self, batch: PreparedBatch, written: dict[str, bool]) -> tuple[dict[str, str], list[str]]:
        """Outcome codes of written customers, and the customers whose write was refused."""
        outcomes: dict[str, str] = {}
        conflicted: list[str] = []
        for customer, prepared in batch.customers.items():
            if written.get(customer):
                outcomes[customer] = prepared.codes
            else:
                conflicted.append(customer)
                self._cache.pop(customer, None)
        return outcomes, conflicted

    def _load_missing(self, customers: list[str]) -> None:
        missing = [c for c in customers if c not in self._cache]
        for start in range(0, len(missing), 1000):
            chunk = missing[start : start + 1000]
            pipe = self._client.pipeline(transaction=False)
            for customer in chunk:
                tiles, aux = self._keys_of(customer)
                pipe.hgetall(tiles)
                pipe.hgetall(aux)
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
        return _Prepared(self._keys_of(customer), arguments, "".join(codes))

    def _keys_of(self, customer: str) -> tuple[str, str]:
        keys = self._keys.get(customer)
        if keys is None:
            if len(self._keys) > 2 * self._cache_size:
                self._keys.clear()
            keys = self._keys[customer] = (tiles_key(customer, self._prefix), aux_key(customer, self._prefix))
        return keys


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
