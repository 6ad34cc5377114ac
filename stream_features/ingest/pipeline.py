"""The write pipeline: the one owner of the writer protocol and of the batch in flight.

The writer (``store/writer.py``) works in steps so that CPU work overlaps Redis I/O: ``prepare``
applies a batch to the cached customer states and builds its compare-and-set calls (main thread,
assuming the batch ahead will be written), ``execute`` sends them (writer thread, I/O only),
``settle`` records who was written. Keeping the cached states equal to Redis is the most
delicate invariant of the system, and every rule for it lives here:

* a batch is prepared while the one ahead is still in flight, and sent only after that one is
  settled (its dead letters and watermarks follow in the consumer before this one is sent);
* customers whose compare-and-set was refused, or whose write failed, are forgotten and written
  again (``apply``) from a fresh load, unless Redis went back in time (then nothing is redone:
  the consumer replays from Redis's watermarks);
* when the batch ahead needed such a redo, the next batch was prepared on states that may be
  stale: it is prepared again before it is sent;
* customers whose stored state cannot be read are quarantined: their records become
  ``state_unreadable`` dead letters and their state is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from confluent_kafka import Message

from .._native import Batch, Prepared
from ..metrics import ConsumerMetrics
from ..store.transient import is_transient
from ..store.writer import StateWriter
from .dead_letters import DeadLetter

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[str, Callable[[], Any]], Any]


@dataclass
class WriteBatch:
    """One batch on its way through the pipeline."""

    records: list[Message]
    events: Batch  # decoded events grouped by customer, offsets to commit, outcomes once written
    letters: list[DeadLetter]
    started: float  # perf_counter at decode, for the batch duration metric
    prepared: Prepared | None = None
    written: Future[list[str | None]] | None = None
    quarantined: set[int] = field(default_factory=set)  # records dead-lettered as state_unreadable
    acked_at: float = 0.0  # wall clock when Redis acknowledged the batch's writes


@dataclass(frozen=True)
class Settled:
    batch: WriteBatch
    rolled_back: bool  # Redis went back in time: nothing was redone, replay before going on


class WritePipeline:
    """``submit`` (prepare the next batch) → ``settle`` (finish the one in flight) → ``send``."""

    def __init__(
        self,
        writer: StateWriter,
        metrics: ConsumerMetrics,
        *,
        retry: Retry,
        rolled_back: Callable[[], bool],
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._retry = retry
        self._redis_rolled_back = rolled_back
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-writer")
        self._in_flight: WriteBatch | None = None
        self._next: WriteBatch | None = None
        self._stale = False  # the batch ahead was redone: the next one must be prepared again

    def submit(self, batch: WriteBatch) -> None:
        """Prepare ``batch`` on the cached states (while the batch ahead is still in flight)."""
        self._prepare(batch)
        self._next = batch

    def settle(self) -> Settled | None:
        """Wait for the batch in flight and make sure every customer of it is written; None if
        nothing was in flight."""
        batch, self._in_flight = self._in_flight, None
        if batch is None or batch.prepared is None or batch.written is None:
            return None
        try:
            conflicted = self._writer.settle(batch.events, batch.prepared, batch.written.result())
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
            self._metrics.retries.labels("redis").inc()
            log.warning("redis write failed, redoing the batch: %s", exc)
            conflicted = batch.events.customers
            self._writer.forget(conflicted)
        if conflicted:
            # A refused compare-and-set is another writer (a rebalance) or Redis gone back in
            # time (a restart from an older file, a failover, a wipe): redoing the write on a
            # rolled-back state would put this batch before events Redis lost. Check first.
            self._stale = True
            if self._redis_rolled_back():
                return Settled(batch, rolled_back=True)
            self._retry("redis", lambda: self._writer.apply(batch.events, conflicted))
            self._quarantine(batch)
            batch.acked_at = time.time()
        return Settled(batch, rolled_back=False)

    def send(self) -> None:
        """Send the submitted batch on the writer thread (prepared again first if needed)."""
        batch, self._next = self._next, None
        if batch is None:
            return
        if self._stale:
            self._writer.forget(batch.events.customers)
            self._prepare(batch)
            self._stale = False
        batch.written = self._sender.submit(self._execute, batch)
        self._in_flight = batch

    def discard(self) -> None:
        """Drop the submitted batch unsent (Redis went back in time: it is read again after the
        replay, which also drops every cached state, see ``resume.py``)."""
        self._next = None
        self._stale = False

    def close(self) -> None:
        self._sender.shutdown(wait=True)
        self._writer.close()

    def _prepare(self, batch: WriteBatch) -> None:
        batch.prepared = self._retry("redis", lambda: self._writer.prepare(batch.events))
        self._quarantine(batch)

    def _execute(self, batch: WriteBatch) -> list[str | None]:
        assert batch.prepared is not None
        started = time.perf_counter()
        written = self._writer.execute(batch.prepared)
        batch.acked_at = time.time()
        self._metrics.redis_write_seconds.observe(time.perf_counter() - started)
        return written

    def _quarantine(self, batch: WriteBatch) -> None:
        """Records of customers whose stored state is unreadable become dead letters
        (``state_unreadable``); their customers stay as they are until repaired (README)."""
        for customer, reason in self._writer.take_unreadable().items():
            indexes = [i for i in batch.events.records_of(customer) if i not in batch.quarantined]
            log.warning(
                "customer %r quarantined: stored state unreadable (%s); %d record(s) dead-lettered until "
                "`stream-features repair` rebuilds it",
                customer,
                reason,
                len(indexes),
            )
            self._metrics.quarantined.inc(len(indexes))
            for index in indexes:
                batch.quarantined.add(index)
                batch.letters.append(DeadLetter(batch.records[index], "state_unreadable", reason))
