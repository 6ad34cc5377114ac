"""The streaming path: Kafka records → validated events → Redis state, effectively once.

Commit order, per batch (the whole guarantee rests on it):

1. decode every record; invalid ones are set aside as dead letters;
2. apply the valid events to Redis (``StateWriter``): per customer one atomic compare-and-set
   that also records the last offset applied per partition, so a redelivered record is
   recognised and skipped (a crash anywhere below repeats the batch harmlessly);
3. deliver the dead letters (including events judged too_late) and wait for the acks;
4. advance the partitions' watermarks in Redis (``resume.py``): where to resume, kept with the
   state, so that Redis going back in time is replayed from Kafka, never lost;
5. commit the batch's offsets to Kafka, without waiting (for lag and tooling only).

The consumer reads as its loop: poll → decode (``decode.py``) → submit to the write pipeline
(``pipeline.py``, which owns the writer protocol and the batch in flight) → settle the batch
ahead → its dead letters → its watermarks → commit → send this one. One batch is in flight at a
time: while Redis applies batch N, batch N+1 is decoded and prepared; N is settled,
dead-lettered and committed before N+1 is sent, and always before partitions are revoked or the
process exits.

Redis or Kafka unavailable: the step is retried with back-off until it succeeds or the process is
asked to stop; nothing is skipped and no offset moves past an effect that is not in Redis.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicCollection, TopicPartition

from ..config import ServiceConfig, redis_client
from ..core.customer_state import TOO_LATE_MESSAGE, Outcome
from ..errors import ConfigurationError, ServiceUnavailable, Stopped
from ..metrics import FRESHNESS_BUCKETS, ConsumerMetrics, observe_many
from ..store.transient import retry_transient
from ..store.watermarks import Watermarks
from ..store.writer import StateWriter
from .dead_letters import DeadLetter, DeadLetterProducer
from .decode import decode_batch
from .health import Progress
from .kafka_io import client_settings, ensure_topics, wait_for_kafka
from .pipeline import WriteBatch, WritePipeline
from .resume import ResumePoints

log = logging.getLogger(__name__)
T = TypeVar("T")
CONSUME_CHUNK = 1000
# Back-off between retries of an unavailable Redis: short, so a Redis that comes back (restored
# from a backup, failed over) is noticed within a second, and a replay shows at once.
MAX_RETRY_DELAY_SECONDS = 1.0
# Held partitions (a history load, resume.py) are checked this often for their hand-over.
HOLD_CHECK_SECONDS = 1.0
# Redis states that end by themselves (store/transient.py) are waited out and retried. A script
# that fails part-way (e.g. out of memory) keeps the customers it already wrote, with their
# offsets, so the retry skips those and writes the rest.
# Cyclic GC: a batch allocates ~10 objects per event, none in cycles, while the cached customer
# states make the heap large; at the default threshold (700) collections cost ~30% of the main
# thread. A high young-generation threshold keeps cycle collection but makes it rare.
THROUGHPUT_GC_THRESHOLDS = (50_000, 50, 1000)


@dataclass
class RunStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    skipped_redeliveries: int = 0
    batches: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class FeatureConsumer:
    def __init__(
        self,
        config: ServiceConfig,
        *,
        metrics: ConsumerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or ConsumerMetrics.create()
        self._clock = clock
        self.stop_event = stop or threading.Event()
        self.stats = RunStats()
        self._redis = redis_client(config, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        self._writer = StateWriter(
            self._redis,
            config.engine,
            topic=config.topic,
            prefix=config.key_prefix,
            call_budget_us=config.write_call_budget_us,
            cache_bytes=config.writer_cache_bytes(),
        )
        self._consumer: Consumer | None = None
        self._dlq: DeadLetterProducer | None = None
        self._assigned: set[int] = set()  # partitions this member owns now
        self._revocations = 0  # partitions revoked or lost so far (a change means: filter)
        self._resume = ResumePoints(
            Watermarks(self._redis, prefix=config.key_prefix, topic=config.topic),
            self._writer,
            self.metrics,
            topic=config.topic,
            retry=self._retry,
        )
        self._pipeline = WritePipeline(
            self._writer, self.metrics, retry=self._retry, rolled_back=self._resume.rolled_back
        )
        self._admin: Any = None
        self._rolled_back = False  # Redis went back in time: replay before the next batch
        self._committed: dict[int, int] = {}  # partition → next offset to commit (latest settled)
        self._settled_to: dict[int, int] = {}  # owned partition → next offset after what is settled
        self._last_commit = float("-inf")
        self._commit_due = False  # settled offsets not yet committed
        self._idle_checked_at = float("-inf")
        self._holds_checked_at = float("-inf")
        self._memory_sampled_at = float("-inf")
        self.progress = Progress()  # for the health endpoints (health.py)
        self.progress.beat()
        self._lag: dict[tuple[str, str], int] = {}
        self._newest_event_time = float("-inf")
        self._idle_since = time.monotonic()

    # ----- lifecycle ---------------------------------------------------------------------------

    def start(self, *, startup_attempts: int = 5) -> None:
        """Check both services (bounded retries), create topics, subscribe."""
        for attempt in range(1, startup_attempts + 1):
            try:
                self._redis.ping()
                break
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                # Wrong user, password or rights: retrying does not fix it; say so at once.
                raise ConfigurationError(f"Redis refused our credentials: {exc}") from None
            except redis.RedisError as exc:
                log.warning("redis not reachable (attempt %d/%d): %s", attempt, startup_attempts, exc)
                if attempt == startup_attempts:
                    raise ServiceUnavailable(f"Redis did not answer after {startup_attempts} tries") from None
                time.sleep(min(2.0 * attempt, 5.0))
        admin = wait_for_kafka(self.config, attempts=startup_attempts)
        ensure_topics(admin, [self.config.topic, self.config.dlq_topic])
        self._admin = admin
        self._resume.adopt_log(self._topic_id())
        self._consumer = Consumer(
            client_settings(
                self.config,
                **{
                    "group.id": self.config.group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 1500,
                    "queued.min.messages": 200000,
                    "partition.assignment.strategy": "cooperative-sticky",
                    "statistics.interval.ms": 5000,
                    "stats_cb": self._on_stats,
                    "on_commit": self._on_commit,
                },
            )
        )
        self._consumer.subscribe(
            [self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        producer = Producer(client_settings(self.config, **{"enable.idempotence": True, "linger.ms": 5}))
        self._dlq = DeadLetterProducer(producer, self.config.dlq_topic)
        log.info("consumer started %s", self.config.describe())

    def close(self) -> None:
        self._pipeline.close()
        if self._consumer is not None:
            owned = {p: o for p, o in self._committed.items() if p in self._assigned}
            if owned:  # the last commit waits: tools reading the group see where it stopped
                try:
                    offsets = [TopicPartition(self.config.topic, p, o) for p, o in owned.items()]
                    self._consumer.commit(offsets=offsets, asynchronous=False)
                except KafkaException as exc:
                    log.info("final offset commit skipped: %s", exc)
            self._consumer.close()  # leaves the group so partitions move at once
            self._consumer = None
        self._redis.close()

    def _topic_id(self) -> str:
        futures = self._admin.describe_topics(TopicCollection([self.config.topic]))
        return str(futures[self.config.topic].result(timeout=30).topic_id)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Each partition starts where Redis's state ends, whatever Kafka's commit says.
        behind = self._resume.starting_points(consumer, partitions)
        try:
            consumer.incremental_assign(partitions)
        except KafkaException:  # an eager assignment strategy set through --kafka-option
            consumer.assign(partitions)
        self._assigned.update(p.partition for p in partitions)
        self._resume.pause_held(consumer)
        self._settled_to.update((p.partition, p.offset) for p in partitions if p.offset >= 0)
        if behind:  # Kafka's commit catches up with what Redis holds (lag stays right)
            self._committed.update(behind)
            self._commit_due = True
        self.progress.joined = True
        self.progress.settled = time.monotonic()  # a fresh owner gets the stall period to start
        self.metrics.rebalances.labels("assign").inc()
        self._idle_since = time.monotonic()  # idleness counts from holding partitions
        log.info("assigned %s", [p.partition for p in partitions])

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Settle and commit the batch in flight while we still own its partitions; records of
        # these partitions fetched but not yet processed are dropped (the new owner reads them).
        self._settle_in_flight()
        self._commit({}, now=True)  # while still the owner: the group sees where we stopped
        self._assigned.difference_update(p.partition for p in partitions)
        self._resume.release([p.partition for p in partitions])
        self._forget_settled(partitions)
        self._revocations += 1
        self.metrics.rebalances.labels("revoke").inc()
        log.info("revoked %s", [p.partition for p in partitions])

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.difference_update(p.partition for p in partitions)
        self._resume.release([p.partition for p in partitions])
        self._forget_settled(partitions)
        self._revocations += 1
        self.progress.joined = bool(self._assigned)
        self.metrics.rebalances.labels("lost").inc()
        log.warning("lost %s", [p.partition for p in partitions])

    # ----- main loop ---------------------------------------------------------------------------

    def run(self, *, exit_when_idle_seconds: float | None = None, max_batches: int | None = None) -> RunStats:
        """Consume until stopped (or idle for ``exit_when_idle_seconds``, or ``max_batches`` batches)."""
        if self._consumer is None:
            self.start()
        assert self._consumer is not None  # for the type checker; start() sets it
        self._idle_since = time.monotonic()
        previous_gc = gc.get_threshold()
        gc.set_threshold(*THROUGHPUT_GC_THRESHOLDS)
        try:
            while not self.stop_event.is_set():
                self.progress.beat()
                if self._rolled_back:
                    self._rewind()
                self._resume_handed_over()
                self._sample_redis_memory()
                records = self._next_batch(self._consumer)
                if not records:
                    self._settle_in_flight()
                    self._pass_transaction_markers()
                    self._commit({}, now=True)  # idle: what was settled is committed at once
                    self._check_idle_rollback()
                    idle = time.monotonic() - self._idle_since
                    if exit_when_idle_seconds is not None and idle > exit_when_idle_seconds and self._group_caught_up():
                        break
                    continue
                self._idle_since = time.monotonic()
                self.process(records)
                if max_batches is not None and self.stats.batches >= max_batches:
                    break
            self._settle_in_flight()
        except Stopped:
            log.info("stopped during a batch; its offsets stay uncommitted and will be redelivered")
        finally:
            gc.set_threshold(*previous_gc)
            self.close()
        return self.stats

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Up to ``batch_size`` records or ``batch_max_bytes`` of values: what arrives within the
        batch timeout, never waiting once the local queue is drained. A backlog fills big batches
        (fewer writes per customer, since a customer's events in one batch cost one write); a live
        stream gets small, prompt ones.
        """
        deadline = time.monotonic() + self.config.batch_timeout_seconds
        revocations = self._revocations
        records: list[Message] = []
        size = 0
        while len(records) < self.config.batch_size and size < self.config.batch_max_bytes:
            # consume(n, timeout) waits for n records or the timeout, not for "some": wait for the
            # first record alone, then take what is already fetched without waiting. Small
            # consume() calls are faster in librdkafka than one big one (PERF-NOTES).
            wanted = min(CONSUME_CHUNK, self.config.batch_size - len(records)) if records else 1
            remaining = deadline - time.monotonic()
            messages = consumer.consume(wanted, max(remaining, 0.0) if not records else 0.0)
            records += [m for m in messages if m.error() is None or self._usable(m)]
            size += sum(map(len, messages))  # len(message) is its value's length
            if not messages or remaining <= 0:
                break
        # A rebalance callback (served inside consume()) may have revoked partitions whose
        # records are already in hand: processing them would commit behind the new owner. A
        # partition a history load holds is read again from its hand-over.
        held = self._resume.held
        if revocations == self._revocations and not held:
            return records
        return [m for m in records if m.partition() in self._assigned and m.partition() not in held]

    def _group_caught_up(self) -> bool:
        """Every partition of the topic has its offset committed up to the end (by any member).

        Used to drain and exit: partitions still owned by a member that died are not caught up
        until they are reassigned and consumed, so a restarted drain does not leave early.
        """
        if self._consumer is None:
            return False
        try:
            topic = self._consumer.list_topics(self.config.topic, timeout=5).topics[self.config.topic]
            partitions = [TopicPartition(self.config.topic, p) for p in topic.partitions]
            committed = self._consumer.committed(partitions, timeout=5)
            for tp in committed:
                _, high = self._consumer.get_watermark_offsets(tp, timeout=5)
                if tp.offset < high and high > 0:
                    return False
        except (KafkaException, KeyError):
            return False
        return True

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error: %s", error)
        return False

    def process(self, records: list[Message]) -> None:
        """poll → decode → submit → settle the batch ahead → its dead letters → commit → send."""
        batch = self._decode(records)
        if self._resume.went_backwards(batch.events.first_offsets):
            self._settle_in_flight()
            self._resume.adopt_log(self._topic_id())  # a re-created topic starts a new epoch
        self._pipeline.submit(batch)  # prepared while the batch ahead is still being written
        self._settle_in_flight()
        if self._rolled_back:
            self._pipeline.discard()  # read past what Redis holds now: read again after the replay
            return
        self._resume.note_starts(batch.events.first_offsets)
        self._pipeline.send()

    def _decode(self, records: list[Message]) -> WriteBatch:
        """Decode a batch (Rust fast path, Python for the rest); invalid records become letters."""
        events, invalid = decode_batch(
            records, now=self._clock(), max_future_skew_seconds=self.config.engine.max_future_skew_seconds
        )
        letters = [DeadLetter(records[index], exc.reason, exc.message) for index, exc in invalid]
        return WriteBatch(records, events, letters, time.perf_counter())

    def _settle_in_flight(self) -> None:
        """Finish the batch in flight: its writes (pipeline), dead letters, watermarks, commit."""
        settled = self._pipeline.settle()
        if settled is None:
            return
        if settled.rolled_back:
            self._rolled_back = True
            return
        batch = settled.batch
        counts, total = batch.events.delays(int(batch.acked_at * 1000), list(FRESHNESS_BUCKETS))
        observe_many(self.metrics.end_to_end_delay, counts, total)
        letters = batch.letters
        self._count(batch)
        if letters:
            assert self._dlq is not None
            self._dlq.send_all(letters, should_stop=self.stop_event.is_set)
            for letter in letters:
                self.metrics.dead_letters.labels(letter.reason).inc()
                self.stats.by_reason[letter.reason] = self.stats.by_reason.get(letter.reason, 0) + 1
            self.stats.dead_letters += len(letters)
        if not self._resume.advance(batch.events.next_offsets, newest_event_time=self._newest_event_time):
            self._rolled_back = True  # Redis lost writes it had acknowledged: replay, commit nothing
            return
        self._commit(batch.events.next_offsets)
        if self.progress.replaying or self._resume.replays:
            self._report_replay()
        self._settled_to.update(batch.events.next_offsets)
        self.progress.settled = time.monotonic()
        self.stats.records += batch.events.records
        self.stats.batches += 1
        self.metrics.batch_size.observe(batch.events.records)
        self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        self.metrics.last_batch_time.set(time.time())

    def _pass_transaction_markers(self) -> None:
        """Idle with nothing in flight: a partition read past its last settled record has only
        records the application never sees in between: transaction markers and aborted records
        (read_committed), e.g. after a ``redrive``. Move its watermark and commit there too, or
        it would show lag forever (and never count as caught up)."""
        if self._rolled_back or not self._assigned or self._consumer is None:
            return
        # A partition a history load holds is not read meanwhile (its watermark cannot move).
        owned = [TopicPartition(self.config.topic, p) for p in self._assigned if p not in self._resume.held]
        if not owned:
            return
        ahead = {
            tp.partition: tp.offset
            for tp in self._consumer.position(owned)
            if tp.partition in self._settled_to and tp.offset > self._settled_to[tp.partition]
        }
        if not ahead:
            return
        if not self._resume.advance(ahead, newest_event_time=self._newest_event_time):
            self._rolled_back = True  # Redis went back in time meanwhile: replay first
            return
        self._settled_to.update(ahead)
        self._commit(ahead, now=True)

    def _forget_settled(self, partitions: list[TopicPartition]) -> None:
        # What we last committed for a partition we no longer own goes stale as its next owner
        # moves on; kept, it would be committed again (behind the owner) if the partition came
        # back to us, and the group would show lag that never drains.
        for tp in partitions:
            self._settled_to.pop(tp.partition, None)
            self._committed.pop(tp.partition, None)

    def _check_idle_rollback(self) -> None:
        """With no traffic nothing is written, so nothing would notice Redis going back in time
        or a history load holding a partition: compare its watermarks with ours every
        ``idle_check_seconds`` (one HMGET and one TIME)."""
        now = time.monotonic()
        if now < self._idle_checked_at + self.config.idle_check_seconds:
            return
        self._idle_checked_at = now
        if self._resume.rolled_back():
            self._rolled_back = True

    def _sample_redis_memory(self) -> None:
        """Redis's memory and limit every 15 s, for the memory alert (one INFO call)."""
        now = time.monotonic()
        if now < self._memory_sampled_at + 15:
            return
        self._memory_sampled_at = now
        try:
            info = self._redis.info("memory")
        except redis.RedisError:
            return  # the write path notices and retries; this is only a gauge
        nodes = info.values() if info and all(isinstance(v, dict) for v in info.values()) else [info]
        self.metrics.redis_used_memory.set(sum(float(n.get("used_memory", 0)) for n in nodes))
        self.metrics.redis_maxmemory.set(sum(float(n.get("maxmemory", 0)) for n in nodes))

    def _rewind(self) -> None:
        """Replay every owned partition from what Redis holds now (see resume.py)."""
        assert self._consumer is not None
        self._rolled_back = False
        resumes = self._resume.rewind(self._consumer)
        self._resume.pause_held(self._consumer)
        log.info("read again from %s", resumes)
        if resumes:
            # Committed at once and waited for: Kafka's group lag (what dashboards, Burrow and
            # kafka-consumer-groups show) counts the records to replay from now, not from the
            # first replayed batch.
            self._committed.update(resumes)
            self._commit_due = False
            self._last_commit = time.monotonic()
            offsets = [TopicPartition(self.config.topic, p, o) for p, o in resumes.items() if p in self._assigned]
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                self._note_commit_failure(exc.args[0])
        self._report_replay()

    def _report_replay(self) -> None:
        remaining, since = self._resume.replay_remaining()
        self.progress.replaying, self.progress.replaying_since = remaining, since
        self.metrics.replay_remaining.set(remaining)

    def _resume_handed_over(self) -> None:
        """Held partitions that a history load has handed over are read again from there."""
        now = time.monotonic()
        if not self._resume.held or now < self._holds_checked_at + HOLD_CHECK_SECONDS:
            return
        self._holds_checked_at = now
        assert self._consumer is not None
        self._settle_in_flight()
        resumed = self._resume.resume_released(self._consumer)
        if resumed:
            self._writer.forget_all()  # the load wrote these partitions' customers
            self._committed.update(resumed)
            self._commit_due = True

    def _count(self, batch: WriteBatch) -> None:
        """Metrics and stats of a settled batch; too_late events join its dead letters."""
        counts, too_late = batch.events.outcomes()
        for index in too_late:
            batch.letters.append(DeadLetter(batch.records[index], Outcome.TOO_LATE.value, TOO_LATE_MESSAGE))
        for (kind, outcome), count in counts.items():  # one metric update per label, not per event
            self.metrics.events.labels(kind, outcome).inc(count)
            if outcome == "applied":
                self.stats.applied += count
            elif outcome == "duplicate":
                self.stats.duplicates += count
                self.metrics.duplicates.inc(count)
            elif outcome == "redelivered":
                self.stats.skipped_redeliveries += count
        for cap, hits in self._writer.take_cap_hits().items():
            self.metrics.caps_reached.labels(cap).inc(hits)
        newest = batch.events.newest_event_time
        if newest > self._newest_event_time:
            self._newest_event_time = newest
            self.metrics.newest_event_time.set(newest)

    def _commit(self, next_offsets: dict[int, int], *, now: bool = False) -> None:
        """Commit to Kafka without waiting, at most once a second: where to resume is Redis's
        watermark (resume.py), so the commit is for lag and tooling, and a broker round trip per
        batch would only delay the next batch (freshness). Failures are logged by
        ``_on_commit``; the next commit covers them; the last one at shutdown waits."""
        assert self._consumer is not None
        self._committed.update(next_offsets)
        self._commit_due = self._commit_due or bool(next_offsets)
        clock = time.monotonic()
        if not self._commit_due or (not now and clock - self._last_commit < self.config.commit_interval_seconds):
            return  # live traffic settles hundreds of small batches a second: one commit a second
        self._last_commit, self._commit_due = clock, False
        owned = [TopicPartition(self.config.topic, p, o) for p, o in self._committed.items() if p in self._assigned]
        if not owned:
            return
        try:
            self._consumer.commit(offsets=owned, asynchronous=True)
        except KafkaException as exc:  # e.g. no longer a member after a rebalance
            self._note_commit_failure(exc.args[0])

    def _on_commit(self, error: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        if error is not None:
            self._note_commit_failure(error)

    def _note_commit_failure(self, error: KafkaError) -> None:
        self.metrics.retries.labels("kafka_commit").inc()
        if error.code() not in (KafkaError._NO_OFFSET, KafkaError.REBALANCE_IN_PROGRESS):
            log.warning("offset commit failed (the next one covers it): %s", error)

    def _retry(self, target: str, call: Callable[[], T]) -> T:
        def waiting(exc: redis.RedisError, delay: float) -> None:
            if self.stop_event.is_set():
                raise Stopped() from exc
            self.progress.beat()  # waiting out an outage is not being stuck
            self.metrics.retries.labels(target).inc()
            log.warning("%s unavailable, retrying in %.1fs: %s", target, delay, exc)

        return retry_transient(call, on_wait=waiting, max_delay=MAX_RETRY_DELAY_SECONDS, sleep=self.stop_event.wait)

    def _on_stats(self, raw: str) -> None:
        """librdkafka statistics (every few seconds, from the poll loop): per-partition lag."""
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        for topic, info in stats.get("topics", {}).items():
            for partition, details in info.get("partitions", {}).items():
                lag = details.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    self.metrics.lag.labels(topic, partition).set(lag)
                    self._lag[(topic, partition)] = lag
        self.progress.lag = sum(self._lag.values())


def describe_state(stats: RunStats) -> dict[str, Any]:
    return {
        "records": stats.records,
        "applied": stats.applied,
        "duplicates": stats.duplicates,
        "dead_letters": stats.dead_letters,
        "skipped_redeliveries": stats.skipped_redeliveries,
        "batches": stats.batches,
        "dead_letters_by_reason": stats.by_reason,
    }
