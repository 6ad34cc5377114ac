"""Where each partition resumes: from what Redis holds, not from Kafka's commit (SPEC §5).

The consumer asks this object where to start a partition it is assigned, tells it each settled
batch, and asks it whether Redis went back in time; the offsets themselves live in Redis next to
the state (``store/watermarks.py`` explains why that order is safe). Kafka commits stay, for lag
and tooling, and are compared with Redis's watermark to say when a rollback is replayed.

A history load (``stream-features backfill`` with Kafka coordinates) may hold partitions while
it writes records that belong before the stream's (``store/watermarks.py``, holds): a held
partition is paused and acknowledged, and resumed from the watermark the load hands over.

A topic deleted and re-created under the same name is a new log: its offsets start at 0 again,
below every per-customer offset of the old one. The topic id (KIP-516) tells them apart; a new
id starts a new epoch, and per-customer offsets are kept under ``<topic>~<epoch>`` from then on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ..metrics import ConsumerMetrics
from ..store.watermarks import Watermarks
from ..store.writer import StateWriter

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[str, Callable[[], T]], T]


def log_name(topic: str, epoch: int) -> str:
    """The name per-customer offsets are kept under for a topic's epoch (0: the topic itself)."""
    return topic if epoch == 0 else f"{topic}~{epoch}"


class ResumePoints:
    """Resume offsets of the partitions this consumer owns, checked against Redis."""

    def __init__(
        self,
        watermarks: Watermarks,
        writer: StateWriter,
        metrics: ConsumerMetrics,
        *,
        topic: str,
        retry: Callable[[str, Callable[[], object]], object],
    ) -> None:
        self._watermarks = watermarks
        self._writer = writer
        self._metrics = metrics
        self._topic = topic
        self._retry = retry
        self.topic_id: str | None = None
        self._epoch = 0
        self._expected: dict[int, int | None] = {}  # what Redis holds for each owned partition
        self._position: dict[int, int] = {}  # next offset after the last settled batch
        self.held: dict[int, str] = {}  # owned partitions paused for a history load, by holder
        self._started: dict[int, int] = {}  # partitions whose state start this consumer recorded
        # Replays under way after Redis went back in time: partition → (offset the replay reaches
        # at its end, wall clock when it began). Kept with the watermarks for status pages.
        self.replays: dict[int, tuple[int, float]] = {}

    # ----- the log ---------------------------------------------------------------------------

    def adopt_log(self, topic_id: str) -> None:
        """Match the stored offsets to the topic: a new topic id starts a new epoch."""
        stored_id, epoch = self._call(self._watermarks.log_identity)
        if stored_id is None:  # first run, or Redis was wiped: a fresh log at this epoch
            self._call(lambda: self._watermarks.start_log(topic_id, epoch))
        elif stored_id != topic_id:
            epoch += 1
            log.warning(
                "topic %s was re-created (id %s, was %s): a new log, epoch %d; its records are applied from "
                "its first offset",
                self._topic,
                topic_id,
                stored_id,
                epoch,
            )
            self._metrics.topic_resets.inc()
            self._call(lambda: self._watermarks.start_log(topic_id, epoch))
            self._expected = dict.fromkeys(self._expected)
            self._position.clear()
        self.topic_id, self._epoch = topic_id, epoch
        self._writer.rename_log(log_name(self._topic, epoch))

    def went_backwards(self, first_offsets: dict[int, int]) -> bool:
        """A batch starts below where its partition was: only a new log (or a seek) does that."""
        return any(first < self._position.get(p, first) for p, first in first_offsets.items())

    # ----- assignment ------------------------------------------------------------------------

    def starting_points(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[int, int]:
        """Set each newly owned partition's offset to Redis's watermark (none: the earliest).

        Returns the offsets to commit at once: Redis's watermark where Kafka's commit is behind it
        (a consumer stopped before its commit), and where a replay starts where Kafka's commit is
        ahead of Redis (it went back in time while no consumer ran): lag stays right either way.
        """
        behind: dict[int, int] = {}
        owned = [tp.partition for tp in partitions]
        stored = self._call(lambda: self._watermarks.read(owned))
        self.held.update(self._call(lambda: self._watermarks.holds(owned)))
        try:
            committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        except KafkaException as exc:
            log.warning("committed offsets unavailable (%s): rollbacks are still replayed, only not counted", exc)
            committed = {}
        for tp in partitions:
            mark = stored.get(tp.partition)
            tp.offset = OFFSET_BEGINNING if mark is None else mark
            self._expected[tp.partition] = mark
            if mark is not None:
                self._position[tp.partition] = mark
            kafka = committed.get(tp.partition, -1)
            if kafka >= 0 and (mark is None or mark < kafka):
                start = self._report_rollback(tp.partition, mark, kafka, consumer)
                if start < kafka:  # the replay shows as lag at once
                    self._replay(tp.partition, start, kafka)
                    behind[tp.partition] = start
            elif mark is not None and mark > kafka:
                behind[tp.partition] = mark
        if self.replays:
            self._publish_replays()
        return behind

    def release(self, partitions: list[int]) -> None:
        for partition in partitions:
            self._expected.pop(partition, None)
            self._position.pop(partition, None)
            self.held.pop(partition, None)
            self._started.pop(partition, None)
            self.replays.pop(partition, None)

    # ----- history loads ---------------------------------------------------------------------

    def pause_held(self, consumer: Consumer) -> None:
        """Stop reading the partitions a history load holds, and tell it so."""
        if not self.held:
            return
        consumer.pause([TopicPartition(self._topic, p) for p in self.held])
        self._call(lambda: self._watermarks.acknowledge(dict(self.held)))
        log.info(
            "partitions %s paused: a history load holds them (%s)", sorted(self.held), sorted(set(self.held.values()))
        )

    def resume_released(self, consumer: Consumer) -> dict[int, int]:
        """Resume the held partitions a history load has handed over, from the watermark it left;
        returns them with that offset."""
        if not self.held:
            return {}
        owned = list(self.held)
        still = self._call(lambda: self._watermarks.holds(owned))
        done = [p for p in owned if p not in still]
        if not done:
            return {}
        stored = self._call(lambda: self._watermarks.read(done))
        resumed: dict[int, int] = {}
        for partition in done:
            mark = stored.get(partition)
            consumer.seek(TopicPartition(self._topic, partition, OFFSET_BEGINNING if mark is None else mark))
            self._expected[partition] = mark
            if mark is None:
                self._position.pop(partition, None)
            else:
                self._position[partition] = resumed[partition] = mark
            del self.held[partition]
        consumer.resume([TopicPartition(self._topic, p) for p in done])
        log.info("history load handed over partitions %s: resuming at %s", done, {p: stored.get(p) for p in done})
        return resumed

    # ----- batches ---------------------------------------------------------------------------

    def note_starts(self, first_offsets: dict[int, int]) -> None:
        """Before a partition with no state gets its first writes: record where its state starts
        (a history load must know whether its records come before the stream's)."""
        fresh = {p: o for p, o in first_offsets.items() if self._expected.get(p) is None and p not in self._started}
        if fresh:
            self._call(lambda: self._watermarks.note_starts(fresh))
            self._started.update(fresh)

    def advance(self, next_offsets: dict[int, int], *, newest_event_time: float) -> bool:
        """Record a settled batch in Redis; False when Redis no longer holds what we last saw
        (or a history load holds one of its partitions)."""
        expected = {p: self._expected.get(p) for p in next_offsets}
        status = {"applied_at": repr(time.time())}
        if self.replays:
            for partition, offset in next_offsets.items():
                if partition in self.replays and offset >= self.replays[partition][0]:
                    del self.replays[partition]
            status["replays"] = self._replays_text()
        if newest_event_time > float("-inf"):
            status["newest_event_time"] = repr(newest_event_time)
        if not self._call(lambda: self._watermarks.advance(expected, next_offsets, status=status)):
            return False
        self._expected.update(next_offsets)
        self._position.update(next_offsets)
        return True

    def rolled_back(self) -> bool:
        """Whether Redis holds other watermarks than this consumer last saw, or a history load
        holds an owned partition (checked after a failed or refused write, before redoing it on
        a state that may have gone back, and while idle)."""
        owned = [p for p in self._expected if p not in self.held]
        stored = self._call(lambda: self._watermarks.read(owned))
        if any(stored.get(p) != self._expected[p] for p in owned):
            return True
        return bool(self._call(lambda: self._watermarks.holds(owned)))

    def rewind(self, consumer: Consumer) -> dict[int, int]:
        """Redis went back in time: forget every cached state and replay each owned partition
        from the watermark Redis holds now (none: from the earliest retained offset). Returns
        where each partition resumes (those with a watermark), for the consumer to commit at
        once: the group's lag then shows the records to replay, as every Kafka dashboard reads
        it, and a partition whose last write this consumer saw refused (another Redis Cluster
        shard still ahead) but that Redis holds to its end is committed there too."""
        self._writer.forget_all()
        self._started.clear()
        owned = [p for p in self._expected if p not in self.held]
        stored = self._call(lambda: self._watermarks.read(owned))
        held = self._call(lambda: self._watermarks.holds(owned))
        resumes: dict[int, int] = {}
        for partition in owned:
            if partition in held:  # read after the history load hands it over (resume_released)
                self.held[partition] = held[partition]
                continue
            mark = stored.get(partition)
            was = self._position.get(partition)
            start = mark
            if was is not None:
                start = self._report_rollback(partition, mark, was, consumer)  # no state: the log start
                if start < was:
                    self._replay(partition, start, was)
            if start is not None:
                resumes[partition] = start
            consumer.seek(TopicPartition(self._topic, partition, OFFSET_BEGINNING if mark is None else mark))
            self._expected[partition] = mark
            if mark is None:
                self._position.pop(partition, None)
            else:
                self._position[partition] = mark
        self._publish_replays()
        return resumes

    def _replay(self, partition: int, start: int, until: int) -> None:
        """Note a replay of ``start..until`` (one already under way keeps its start time)."""
        previous_until, since = self.replays.get(partition, (until, time.time()))
        self.replays[partition] = (max(until, previous_until), since)

    def replay_remaining(self) -> tuple[int, float]:
        """Records still to replay over every owned partition, and since when (wall clock)."""
        remaining = 0
        for partition, (until, _) in self.replays.items():
            remaining += max(0, until - self._position.get(partition, 0))
        since = min((since for _, since in self.replays.values()), default=0.0)
        return remaining, since

    def _replays_text(self) -> str:
        return json.dumps({str(p): [until, since] for p, (until, since) in sorted(self.replays.items())})

    def _publish_replays(self) -> None:
        """Replays under way, beside the watermarks (the status page reads them there)."""
        text = self._replays_text()
        self._call(lambda: self._watermarks.set_fields({"replays": text}))

    # ----- helpers ---------------------------------------------------------------------------

    def _report_rollback(self, partition: int, mark: int | None, ahead: int, consumer: Consumer) -> int:
        """Log and count a rollback of ``partition`` to ``mark`` from ``ahead``; returns the
        offset its replay starts from."""
        log_start = self._log_start(consumer, partition)
        start = log_start if mark is None else mark
        replayed = max(ahead - start, 0)
        if replayed == 0:
            return start
        if mark is not None and mark < log_start:
            # Kafka's retention was shorter than the rollback: these events exist nowhere now.
            log.error(
                "partition %d: %d records between Redis's state (offset %d) and the start of Kafka's log (%d) are "
                "no longer retained and cannot be replayed",
                partition,
                log_start - mark,
                mark,
                log_start,
            )
            self._metrics.records_unrecoverable.inc(log_start - mark)
        held = "no state" if mark is None else f"state up to offset {mark}"
        log.warning(
            "Redis went back in time: for partition %d it holds %s, %d records behind offset %d; replaying them "
            "from Kafka",
            partition,
            held,
            replayed,
            ahead,
        )
        self._metrics.rollbacks.inc()
        self._metrics.records_replayed.inc(replayed)
        return start

    def _log_start(self, consumer: Consumer, partition: int) -> int:
        """Kafka's first retained offset of ``partition``. From the last fetch response when it
        has one: a query to an idle consumer's broker waits behind its long-poll fetch (up to
        ``fetch.wait.max.ms``, 500 ms) and a rewind would spend that per partition before the
        replay shows as lag."""
        topic_partition = TopicPartition(self._topic, partition)
        log_start, _ = consumer.get_watermark_offsets(topic_partition, cached=True)
        if log_start >= 0:
            return int(log_start)
        try:
            log_start, _ = consumer.get_watermark_offsets(topic_partition, timeout=5)
        except KafkaException:
            return 0
        return int(log_start)

    def _call(self, call: Callable[[], T]) -> T:
        return self._retry("redis", call)  # type: ignore[return-value]
