"""Handing a history load over to the live stream (SPEC §5a, README "Starting with history").

With Kafka coordinates the load is a part of the topic's log: it holds the partitions it loads
(``store/watermarks.py``: a consumer pauses a held partition and acknowledges), checks that its
records can go where they belong, and at the end sets each partition's watermark past its last
loaded offset and releases the hold in one call. Per partition p, with the files holding offsets
F..E, Redis's state of p running from S (where its first writer started) to W (its watermark),
and Kafka holding L..H:

* no state yet: the files must reach back to Kafka's log start (F ≤ L); the watermark becomes E+1;
* the files start inside or before the state (F ≤ W) and the state starts at or before the files
  (S ≤ F, or S unknown): the rows already applied are skipped by the per-customer offsets, the
  others applied; the watermark becomes max(W, E+1), so a consumer that had passed E goes on;
* the state starts after the files (S > F: a consumer began at a later offset, e.g. on a topic
  whose retention had dropped the start): the records before S must come first, so the
  customers of the files are rebuilt from them and the watermark goes back to E+1: the consumer
  replays its records after E on top (Kafka must still hold them: L ≤ E+1);
* the files start after the state ends (F > W): refused, the records in between would land after
  the files' (let the consumer catch up first).

Without coordinates, ``--until T`` holds every partition of the topic and hands over at each
partition's first offset with a record timestamp at or after T (Kafka's offsets for times).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import Consumer, KafkaException, TopicCollection, TopicPartition

from ..config import ServiceConfig
from ..errors import ConfigurationError, ServiceUnavailable, StreamFeaturesError
from ..ingest.kafka_io import client_settings, wait_for_kafka
from ..ingest.resume import log_name
from ..store.watermarks import Watermarks

log = logging.getLogger(__name__)
LEASE_SECONDS = 30.0
ACK_TIMEOUT_SECONDS = 60.0


class HandoverRefused(StreamFeaturesError):
    """The load's records cannot be put where they belong in the partition's history."""


@dataclass
class PartitionPlan:
    partition: int
    mode: Literal["merge", "rebuild", "until"]
    first: int | None  # files' lowest offset (F)
    last: int | None  # files' highest offset (E)
    watermark_before: int | None  # W
    handover: int  # the watermark after the load
    start: int | None  # the state's start after the load (s:<partition>)
    notes: list[str] = field(default_factory=list)


class Handover:
    """Holds a topic's partitions for one load, decides each partition's plan, hands over."""

    def __init__(self, config: ServiceConfig, watermarks: Watermarks, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._config = config
        self._watermarks = watermarks
        self._lease = lease_seconds
        self.holder = f"backfill@{socket.gethostname()}/{uuid.uuid4().hex[:8]}"
        self._held: list[int] = []
        self._renewing = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: str | None = None  # why the hold was lost, if it was
        admin = wait_for_kafka(config)
        description = admin.describe_topics(TopicCollection([config.topic]))[config.topic]
        try:
            topic = description.result(timeout=30)
        except KafkaException as exc:
            raise ConfigurationError(f"topic {config.topic}: {exc.args[0].str()}") from None
        self.topic_id = str(topic.topic_id)
        self.partitions = sorted(p.id for p in topic.partitions)
        self._admin = admin
        self.log_name = self._adopt_log()

    def _adopt_log(self) -> str:
        """The name per-customer offsets of this topic are kept under (as the consumer does)."""
        stored_id, epoch = self._watermarks.log_identity()
        if stored_id is None:
            self._watermarks.start_log(self.topic_id, epoch)
        elif stored_id != self.topic_id:
            epoch += 1
            log.warning(
                "topic %s was re-created (id %s): a new log, epoch %d", self._config.topic, self.topic_id, epoch
            )
            self._watermarks.start_log(self.topic_id, epoch)
        return log_name(self._config.topic, epoch)

    # ----- holding -----------------------------------------------------------------------------

    def hold(self, partitions: list[int]) -> None:
        """Hold ``partitions`` (renewed in the background) and wait until every consumer of the
        group that owns one has paused it."""
        unknown = sorted(set(partitions) - set(self.partitions))
        if unknown:
            raise HandoverRefused(
                f"the files hold partitions {unknown} but topic {self._config.topic} has partitions "
                f"0..{len(self.partitions) - 1}"
            )
        self._watermarks.hold(partitions, self.holder, lease_seconds=self._lease)
        self._held = list(partitions)
        self._renewer = threading.Thread(target=self._renew, name="backfill-hold", daemon=True)
        self._renewer.start()
        self._wait_for_owners(partitions)

    def _renew(self) -> None:
        while not self._renewing.wait(self._lease / 3):
            try:
                self._watermarks.hold(self._held, self.holder, lease_seconds=self._lease)
            except Exception as exc:  # a lost hold is reported at hand-over, where it matters
                self.lost = str(exc)
                log.warning("could not renew the hold of partitions %s: %s", self._held, exc)

    def _wait_for_owners(self, partitions: list[int]) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
        while True:
            owners = self._owners(partitions)
            acks = self._watermarks.acknowledgements(list(owners))
            waiting = {p: owner for p, owner in owners.items() if acks.get(p) != self.holder}
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise HandoverRefused(
                    f"consumers of group {self._config.group_id} own partitions {sorted(waiting)} "
                    f"({', '.join(sorted(set(waiting.values())))}) and did not pause them within "
                    f"{ACK_TIMEOUT_SECONDS:.0f} s (a release without history-load support?)"
                )
            time.sleep(0.2)

    def _owners(self, partitions: list[int]) -> dict[int, str]:
        """Which member of the consumer group owns each of ``partitions`` now."""
        future = self._admin.describe_consumer_groups([self._config.group_id])[self._config.group_id]
        try:
            group = future.result(timeout=30)
        except KafkaException as exc:
            raise ServiceUnavailable(f"consumer group {self._config.group_id}: {exc.args[0].str()}") from None
        owners: dict[int, str] = {}
        for member in group.members:
            for tp in member.assignment.topic_partitions if member.assignment else []:
                if tp.topic == self._config.topic and tp.partition in partitions:
                    owners[tp.partition] = f"{member.client_id} ({member.host})"
        return owners

    def release(self, fields: dict[str, str]) -> None:
        """Set the new watermarks (``fields``) and end the holds in one call."""
        self._stop_renewing()
        if not self._held:
            return
        if not self._watermarks.hand_over(self.holder, fields, self._held):
            raise HandoverRefused(
                f"the hold of partitions {self._held} ran out before the hand-over ({self.lost or 'lease expired'}); "
                "a consumer may have gone on meanwhile: run the same load again"
            )
        self._held = []

    def abandon(self) -> None:
        """End the holds without handing over (the load failed; the consumer goes on as before)."""
        self._stop_renewing()
        if self._held:
            try:
                self._watermarks.hand_over(self.holder, {}, self._held)
            except Exception as exc:
                log.warning("could not end the holds (they run out in %.0f s): %s", self._lease, exc)
            self._held = []

    def _stop_renewing(self) -> None:
        self._renewing.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)

    # ----- plans -------------------------------------------------------------------------------

    def log_bounds(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Kafka's first and next offset of each partition."""
        consumer = self._probe()
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self._config.topic, p), timeout=10) for p in partitions
            }
        finally:
            consumer.close()

    def offsets_for_time(self, until: float) -> dict[int, int]:
        """Each partition's first offset whose record timestamp is at or after ``until``."""
        consumer = self._probe()
        try:
            wanted = [TopicPartition(self._config.topic, p, int(until * 1000)) for p in self.partitions]
            found = consumer.offsets_for_times(wanted, timeout=30)
            out: dict[int, int] = {}
            for tp in found:
                if tp.offset < 0:  # no record at or after the time: the partition's end
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(self._config.topic, tp.partition), timeout=10
                    )
                    out[tp.partition] = high
                else:
                    out[tp.partition] = tp.offset
            return out
        finally:
            consumer.close()

    def _probe(self) -> Consumer:
        return Consumer(
            client_settings(self._config, **{"group.id": f"{self.holder}-probe", "enable.auto.commit": False})
        )

    def plan_coordinates(self, ranges: dict[int, tuple[int, int, int]]) -> dict[int, PartitionPlan]:
        """Each loaded partition's plan (module doc); raises ``HandoverRefused`` when a record
        cannot be put where it belongs."""
        partitions = sorted(ranges)
        marks = self._watermarks.read(partitions)
        starts = self._watermarks.starts(partitions)
        bounds = self.log_bounds(partitions)
        plans: dict[int, PartitionPlan] = {}
        for p in partitions:
            first, last, _count = ranges[p]
            low, high = bounds[p]
            mark, start = marks.get(p), starts.get(p)
            if last >= high:
                raise HandoverRefused(
                    f"partition {p}: the files hold offset {last} but the topic's log ends at {high}: "
                    "these files are not from this topic (or it was re-created since)"
                )
            plan = PartitionPlan(p, "merge", first, last, mark, last + 1, first)
            if last + 1 < low:
                plan.notes.append(
                    f"offsets {last + 1}..{low - 1} are in neither the files nor Kafka (retention): "
                    "they cannot be loaded"
                )
            if start is not None and start > first:
                if last + 1 < low:
                    raise HandoverRefused(
                        f"partition {p}: the consumer started at offset {start}, after the files' first offset "
                        f"{first}, and Kafka no longer holds offsets {last + 1}..{low - 1} to replay after a rebuild"
                    )
                plan.mode = "rebuild"
                replay = "its records" if mark is None else f"offsets {last + 1}..{mark - 1}"
                plan.notes.append(
                    f"the consumer started at offset {start}, after the files' first offset {first}: the files' "
                    f"customers are rebuilt and the consumer replays {replay} from Kafka"
                )
            elif mark is None:
                if first > low:
                    raise HandoverRefused(
                        f"partition {p}: Kafka holds records from offset {low} but the files start at {first}: "
                        f"export from offset {low} or earlier"
                    )
            elif first > mark:
                raise HandoverRefused(
                    f"partition {p}: Redis's state ends at offset {mark} but the files start at {first}: "
                    f"let the consumer pass offset {first - 1} first, or export from offset {mark}"
                )
            else:
                plan.handover = max(mark, last + 1)
                plan.start = start  # unchanged (None: a state from before starts were recorded)
            plans[p] = plan
        return plans

    def plan_until(self, until: float) -> dict[int, PartitionPlan]:
        """Every partition's plan for a load of the events before ``until``."""
        at = self.offsets_for_time(until)
        marks = self._watermarks.read(self.partitions)
        plans: dict[int, PartitionPlan] = {}
        for p in self.partitions:
            mark = marks.get(p)
            plan = PartitionPlan(p, "until", None, None, mark, at[p], None)
            if mark is None:
                plan.start = at[p]
            elif mark > at[p]:
                plan.handover = mark
                plan.notes.append(
                    f"the consumer already applied offsets up to {mark - 1}, past offset {at[p]} (the first "
                    "at or after --until): events in both the files and those records count once only with an event_id"
                )
            plans[p] = plan
        return plans


def handover_fields(plans: dict[int, PartitionPlan]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for p, plan in plans.items():
        fields[f"p:{p}"] = str(plan.handover)
        if plan.start is not None:
            fields[f"s:{p}"] = str(plan.start)
    return fields
