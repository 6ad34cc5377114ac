"""The writer: applies batches of events to customers' Redis hashes, effectively once.

The per-event work runs in Rust (``stream_features._native``, sources in ``native/``): applying
decoded batches (``ingest/decode.py`` builds them) to cached customer states with the same rules
as ``core/customer_state.py`` (the reference, which the in-memory engine runs; tests hold the
two equal), and building each customer's compare-and-set call of ``cas.lua`` as ready-to-send
RESP. Python keeps the I/O.

For each customer of a batch: load its state (from the cache, else HGETALL of its two hashes),
apply the events in stream order, and write back only the changed fields with a compare-and-set
on the customer's version. The customer's last applied Kafka offset per partition is written in
the same atomic call, so a redelivered record is recognised and skipped. A version mismatch
(another writer touched the customer, e.g. after a rebalance) drops the cached state, reloads
and redoes that customer; any Redis error drops the batch's customers from the cache.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from .._native import Batch, Core, Prepared
from ..core.settings import EngineSettings
from ..errors import WriteConflict
from .clients import roundtrip
from .keys import DEFAULT_PREFIX, DEFAULT_TOPIC
from .transient import is_transient

MAX_CAS_ROUNDS = 20
LOADS_PER_TRIP = 1000


def load_script_source() -> str:
    return resources.files("stream_features.store").joinpath("cas.lua").read_text()


class StateWriter:
    """Applies batches of events to Redis (see module doc).

    The write pipeline (``ingest/pipeline.py``) splits the work to overlap Python/Rust work with
    Redis work: ``prepare`` (main thread) → ``execute`` (I/O only, any thread) → ``settle`` (main thread).
    ``prepare`` assumes the write will succeed (it bumps the cached version), so the next batch
    can be prepared while this one is in flight; ``settle`` forgets customers whose write did not
    happen, and their next compare-and-set reloads them. ``apply`` does it all in one call.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        settings: EngineSettings,
        *,
        topic: str = DEFAULT_TOPIC,
        prefix: str = DEFAULT_PREFIX,
        key_ttl_seconds: int | None = None,
        customers_per_call: int = 64,
        call_budget_us: float = 800.0,
        cache_bytes: int = 1 << 30,
        connections: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        # Idle customers expire one day after they would have fallen out of retention anyway.
        ttl = (settings.retention_days + 1) * 86400 if key_ttl_seconds is None else key_ttl_seconds
        self._core = Core(
            topic=topic,
            prefix=prefix,
            tile_seconds=settings.tile_seconds,
            retention_tiles=settings.retention_tiles,
            tiles_per_day=settings.tiles_per_day,
            dedup_horizon_seconds=settings.dedup_horizon_seconds,
            max_attributes=settings.max_attributes,
            max_devices_per_tile=settings.max_devices_per_tile,
            max_event_ids=settings.max_event_ids,
            key_ttl_seconds=ttl,
            # Redis Cluster cannot run one script over keys of several slots: one customer per call.
            customers_per_call=1 if self._cluster else max(1, customers_per_call),
            # Each script call holds Redis for about this long at most (README, "Write calls and
            # their budget"): a customer whose events would take longer is written in parts.
            call_budget_us=call_budget_us,
            cache_limit_bytes=cache_bytes,
        )
        self._source = load_script_source()
        self._sha = client.register_script(self._source).sha
        self._script_loaded = False
        self._clock = clock
        # A batch's calls go out on several connections at once: Redis reads all of them in one
        # event-loop pass and, with appendfsync always, fsyncs once per pass, not per connection.
        self._connections = max(1, connections)
        self._senders = ThreadPoolExecutor(self._connections, thread_name_prefix="redis-send")
        self._unreadable: dict[str, str] = {}

    # ----- writing ---------------------------------------------------------------------------

    def apply(self, batch: Batch, customers: list[str] | None = None) -> None:
        """Write the batch (or some of its customers) until every customer is written.

        Outcomes land in the batch (``batch.codes()``, ``batch.outcomes()``). Raises on Redis errors.
        """
        todo = customers
        for _ in range(MAX_CAS_ROUNDS):
            if todo == []:
                return
            prepared = self.prepare(batch, todo)
            try:
                replies = self.execute(prepared)
            except BaseException:
                self.forget(prepared.customers)
                raise
            todo = self.settle(batch, prepared, replies)
        raise WriteConflict(f"{len(todo or [])} customers changed concurrently {MAX_CAS_ROUNDS} times in a row")

    def close(self) -> None:
        """Stop the sender threads (the Redis client is the caller's)."""
        self._senders.shutdown(wait=True)

    def take_cap_hits(self) -> dict[str, int]:
        """Events that ran into each bounded-state cap since the last call (by cap name)."""
        return self._core.take_cap_hits()

    def forget(self, customers: list[str]) -> None:
        """Drop cached states (their next use reloads from Redis)."""
        self._core.forget(customers)

    def forget_all(self) -> None:
        """Drop every cached state (after Redis went back in time, the cache may be ahead of it)."""
        self._core.forget_all()

    def rename_log(self, name: str) -> None:
        """Keep per-customer offsets under ``name`` from now on (a re-created topic is a new log)."""
        self._core.rename_log(name)

    def prepare(self, batch: Batch, customers: list[str] | None = None) -> Prepared:
        """Load what is not cached, apply the events and build the compare-and-set calls.

        Customers whose stored state cannot be read are left out (quarantined): their events are
        not applied, and ``take_unreadable`` names them with the reason.
        """
        try:
            self._load(self._core.missing(batch, customers))
            chosen = batch.customers if customers is None else customers
            if self._unreadable:
                chosen = [c for c in chosen if c not in self._unreadable]
            return self._core.prepare(batch, chosen, self._clock())
        except BaseException:
            self.forget(batch.customers if customers is None else customers)
            raise

    def take_unreadable(self) -> dict[str, str]:
        """Customers found unreadable since the last call, with the reason (then forgotten: a
        repaired customer is read again next time)."""
        found, self._unreadable = self._unreadable, {}
        return found

    def execute(self, prepared: Prepared) -> list[str | None]:
        """Send the compare-and-set calls; touches no cached state (safe off the main thread).

        Returns each call's reply: one "1"/"0" per customer of the call, None if it did not run.
        """
        replies = self._send_cluster(prepared) if self._cluster else self._send(prepared)
        return [reply.decode() if isinstance(reply, bytes) else None for reply in replies]

    def settle(self, batch: Batch, prepared: Prepared, replies: list[str | None]) -> list[str]:
        """Record written customers' outcomes in the batch; return (and forget) the others."""
        return self._core.settle(batch, prepared, replies)

    # ----- Redis I/O -------------------------------------------------------------------------

    def _send(self, prepared: Prepared) -> list[Any]:
        """Pipelined EVALSHA calls on one connection (packed in Rust).

        A call refused with NOSCRIPT (Redis restarted, cache flushed) ran nothing: its customers
        count as not written, the script is loaded again, and settle() makes them redo.
        """
        if not self._script_loaded:
            self._client.script_load(self._source)
            self._script_loaded = True
        count = len(prepared)
        parts = min(self._connections, max(1, count // 4))
        bounds = prepared.bounds(parts)  # a customer's parts stay on one connection, in order
        sends = [
            self._senders.submit(roundtrip, self._client, prepared.packed(self._sha, start, stop), stop - start)
            for start, stop in itertools.pairwise(bounds)
        ]
        concurrent.futures.wait(sends)  # every part ends (written or failed) before any is judged
        replies = [reply for send in sends for reply in send.result()]
        for reply in replies:
            if isinstance(reply, redis.ResponseError) and not isinstance(reply, NoScriptError):
                raise reply  # e.g. OOM: not something a retry of the same write fixes
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self._client.script_load(self._source)
        return [None if isinstance(reply, NoScriptError) else reply for reply in replies]

    def _send_cluster(self, prepared: Prepared) -> list[Any]:
        # Cluster pipelines cannot load scripts on each node: send the source (Redis caches it by
        # digest, so this costs bandwidth, not compilation).
        pipe = self._client.pipeline(transaction=False)
        for index in range(len(prepared)):
            keys, args = prepared.call(index)
            pipe.execute_command("EVAL", self._source, len(keys), *keys, *args)
        return list(pipe.execute())

    def _load(self, customers: list[str]) -> None:
        """Cache customers from HGETALL of both hashes, ``LOADS_PER_TRIP`` customers per trip."""
        for start in range(0, len(customers), LOADS_PER_TRIP):
            chunk = customers[start : start + LOADS_PER_TRIP]
            if self._cluster:
                pipe = self._client.pipeline(transaction=False)
                for customer in chunk:
                    for key in self._core.keys_of(customer):
                        pipe.hgetall(key)
                replies = pipe.execute(raise_on_error=False)
            else:
                replies = roundtrip(self._client, self._core.load_commands(chunk), 2 * len(chunk))
            for index, customer in enumerate(chunk):
                main, aux = replies[2 * index], replies[2 * index + 1]
                try:
                    for reply in (main, aux):
                        if isinstance(reply, BaseException):
                            raise reply
                    self._core.load(customer, main, aux)
                except redis.ResponseError as exc:  # e.g. WRONGTYPE: another tool wrote our key
                    if is_transient(exc):
                        raise
                    self._unreadable[customer] = f"Redis answered {exc}"
                except ValueError as exc:  # the Rust core's "corrupt stored state"
                    self._unreadable[customer] = str(exc)
