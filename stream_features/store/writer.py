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
from collections.abc import Callable, Iterable, Mapping
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
    source: str  # "<topic>:<partition>" (see ``source_name``)
    offset: int
    message: Any = None  # the Kafka message, kept for the dead-letter topic


def source_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class WriteConflict(RuntimeError):
    """A customer kept changing under us for MAX_CAS_ROUNDS rounds."""


def load_script_source() -> str:
    return resources.files("stream_features.store").joinpath("cas.lua").read_text()


@dataclass(slots=True)
class PreparedBatch:
    """A batch computed against the cached states, ready to be written by ``execute``.

    ``calls[i]`` is one script call (keys, arguments) covering the customers ``groups[i]``;
    ``codes`` holds each customer's outcome codes, valid once its write is confirmed.
    """

    codes: dict[str, str]
    groups: list[list[str]]
    calls: list[tuple[list[str], list[Any]]]


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
        self._changes = Changes()  # reused for every customer: cleared before each

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
                replies = self.execute(prepared)
            except BaseException:
                self.forget(prepared.codes)
                raise
            done, conflicted = self.settle(prepared, replies)
            outcomes.update(done)
            todo = {customer: by_customer[customer] for customer in conflicted}
        raise WriteConflict(f"{len(todo)} customers changed concurrently {MAX_CAS_ROUNDS} times in a row")

    def forget(self, customers: Iterable[str]) -> None:
        """Drop cached states (their next use reloads from Redis)."""
        for customer in customers:
            self._cache.pop(customer, None)

    def prepare(self, by_customer: dict[str, list[PendingEvent]]) -> PreparedBatch:
        """Apply the events to the cached states and build the compare-and-set calls."""
        codes: dict[str, str] = {}
        groups: list[list[str]] = []
        calls: list[tuple[list[str], list[Any]]] = []
        try:
            self._load_missing(list(by_customer))
            group: list[str] = []
            keys: list[str] = []
            arguments: list[Any] = []
            for customer, pending in by_customer.items():
                if len(group) == self._per_call:
                    groups.append(group)
                    calls.append((keys, arguments))
                    group, keys, arguments = [], [], []
                if not group:
                    arguments.append(self._ttl)
                group.append(customer)
                keys += self._keys_of(customer)
                codes[customer] = self._prepare_customer(customer, pending, arguments)
            if group:
                groups.append(group)
                calls.append((keys, arguments))
        except BaseException:
            self.forget(by_customer)  # their cached states may be half-updated
            raise
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return PreparedBatch(codes, groups, calls)

    def execute(self, batch: PreparedBatch) -> list[str | None]:
        """Send the compare-and-set calls; touches no cached state (safe off the main thread).

        Returns each call's reply: one "1"/"0" per customer of its group, None if it did not run.
        """
        replies = self._send_cluster(batch.calls) if self._cluster else self._send(batch.calls)
        return [reply.decode() if isinstance(reply, bytes) else None for reply in replies]

    def _send(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """EVALSHA calls packed by hiredis (C) and pipelined on one connection.

        A call refused with NOSCRIPT (Redis restarted, cache flushed) ran nothing: its customers
        count as not written, the script is loaded again, and settle() makes them redo.
        """
        if not self._script_loaded:
            self._client.script_load(self._source)
            self._script_loaded = True
        sha = self._script.sha
        packed = b"".join(_pack("EVALSHA", sha, len(keys), *keys, *args) for keys, args in calls)
        replies = self._roundtrip(packed, len(calls))
        for reply in replies:
            if isinstance(reply, redis.ResponseError) and not isinstance(reply, NoScriptError):
                raise reply  # e.g. OOM: not something a retry of the same write fixes
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self._client.script_load(self._source)
        return [None if isinstance(reply, NoScriptError) else reply for reply in replies]

    def _roundtrip(self, packed: bytes, count: int) -> list[Any]:
        """Send pre-packed commands on one pooled connection and read ``count`` replies.

        Error replies come back as exception objects (like a pipeline with raise_on_error off);
        a connection failure drops the connection and raises.
        """
        pool = cast(redis.Redis, self._client).connection_pool
        connection = pool.get_connection()
        replies: list[Any] = []
        try:
            connection.send_packed_command([packed])  # type: ignore[no-untyped-call]
            for _ in range(count):
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(connection)
        return replies

    def _send_cluster(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        # Cluster pipelines cannot load scripts on each node: send the source (Redis caches it by
        # digest, so this costs bandwidth, not compilation).
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVAL", self._source, len(keys), *keys, *args)
        return list(pipe.execute())

    def settle(self, batch: PreparedBatch, replies: list[str | None]) -> tuple[dict[str, str], list[str]]:
        """Outcome codes of written customers, and the customers whose write was refused."""
        outcomes: dict[str, str] = {}
        conflicted: list[str] = []
        codes = batch.codes
        for group, flags in zip(batch.groups, replies, strict=True):
            if flags == "1" * len(group):
                for customer in group:
                    outcomes[customer] = codes[customer]
                continue
            for index, customer in enumerate(group):
                if flags is not None and flags[index] == "1":
                    outcomes[customer] = codes[customer]
                else:
                    conflicted.append(customer)
                    self._cache.pop(customer, None)
        return outcomes, conflicted

    def _load_missing(self, customers: list[str]) -> None:
        """Load customers that are not cached: HGETALL of both hashes, 1,000 customers per trip."""
        missing = [c for c in customers if c not in self._cache]
        for start in range(0, len(missing), 1000):
            chunk = missing[start : start + 1000]
            if self._cluster:
                pipe = self._client.pipeline(transaction=False)
                for customer in chunk:
                    for key in self._keys_of(customer):
                        pipe.hgetall(key)
                replies = pipe.execute()
            else:
                packed = b"".join(_pack("HGETALL", key) for customer in chunk for key in self._keys_of(customer))
                replies = self._roundtrip(packed, 2 * len(chunk))
            for index, customer in enumerate(chunk):
                self._cache[customer] = load_customer(_mapping(replies[2 * index]), _mapping(replies[2 * index + 1]))

    def _prepare_customer(self, customer: str, pending: list[PendingEvent], arguments: list[Any]) -> str:
        """Apply one customer's events to its cached state, append its compare-and-set
        arguments to ``arguments``, and return its outcome codes (one per event)."""
        stored = self._cache[customer]
        self._cache.move_to_end(customer)
        state = stored.state
        changes = self._changes
        changes.clear()
        state.changes = changes
        offsets = stored.offsets
        apply = state.apply
        settings = self._settings
        codes = []
        try:
            for event, source, offset, _ in pending:
                if offset <= offsets.get(source, -1):
                    rejected = offset in stored.rejects.get(source, ())
                    codes.append(ALREADY_REJECTED if rejected else ALREADY_APPLIED)
                    continue
                offsets[source] = offset
                try:
                    outcome = apply(event, settings)
                except InvalidEvent:  # too_late is the only rule that needs the customer's state
                    memory = stored.rejects.setdefault(source, [])
                    memory.append(offset)
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
        write_arguments(stored, changes, refresh_ttl=refresh, out=arguments)
        stored.version += 1  # optimistic: settle() forgets the customer if the write is refused
        return "".join(codes)

    def _keys_of(self, customer: str) -> tuple[str, str]:
        keys = self._keys.get(customer)
        if keys is None:
            if len(self._keys) > 2 * self._cache_size:
                self._keys.clear()
            keys = self._keys[customer] = (tiles_key(customer, self._prefix), aux_key(customer, self._prefix))
        return keys


def _pack(*parts: Any) -> bytes:
    """One command in RESP, encoded by hiredis (C)."""
    return cast(bytes, hiredis.pack_command(parts))


def _mapping(reply: Any) -> Mapping[bytes, bytes]:
    """An HGETALL reply as a mapping (RESP3 gives one; RESP2 gives a flat field/value list)."""
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, BaseException):
        raise reply
    pairs = iter(reply)
    return dict(zip(pairs, pairs, strict=True))
