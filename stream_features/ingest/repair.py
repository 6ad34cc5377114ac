"""``stream-features repair CUSTOMER``: rebuild one customer from what Kafka still holds.

Repair means: delete the customer's two hashes, then read the topic from its earliest retained
offset to its end and apply that customer's records with the consumer's own rules and original
offsets (so the running consumer, which may keep going meanwhile, skips them as replays). Two
passes: the second picks up what arrived during the first; the per-customer offsets make any
number of passes safe. Records the consumer dead-lettered as ``state_unreadable`` are originals
in the topic, so they come back with the rest. Events older than the topic's retention are gone:
the report says how many records of the customer were found.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..config import ServiceConfig, redis_client
from ..errors import ServiceUnavailable
from ..store.keys import aux_key, tiles_key
from ..store.watermarks import Watermarks
from ..store.writer import StateWriter
from .decode import decode_batch
from .kafka_io import client_settings
from .resume import log_name

log = logging.getLogger(__name__)
CHUNK = 5000


@dataclass
class RepairReport:
    customer_id: str
    records_scanned: int = 0
    records_of_customer: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def repair_customer(config: ServiceConfig, customer_id: str, *, show_progress: bool = True) -> RepairReport:
    client = redis_client(config, socket_timeout=10, socket_connect_timeout=5)
    _, epoch = Watermarks(client, prefix=config.key_prefix, topic=config.topic).log_identity()
    writer = StateWriter(client, config.engine, topic=config.topic, prefix=config.key_prefix)
    writer.rename_log(log_name(config.topic, epoch))
    report = RepairReport(customer_id)
    try:
        client.delete(tiles_key(customer_id, config.key_prefix), aux_key(customer_id, config.key_prefix))
        for _ in range(2):
            _replay(config, writer, report, show_progress=show_progress)
    finally:
        writer.close()
        client.close()
    return report


def _replay(config: ServiceConfig, writer: StateWriter, report: RepairReport, *, show_progress: bool) -> None:
    consumer = Consumer(
        client_settings(
            config,
            **{"group.id": f"stream-features-repair-{uuid.uuid4().hex}", "enable.auto.commit": False},
        )
    )
    try:
        metadata = consumer.list_topics(config.topic, timeout=10).topics.get(config.topic)
        if metadata is None or metadata.error is not None:
            raise ServiceUnavailable(f"topic {config.topic} not found")
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(config.topic, partition), timeout=10)
            if high > low:
                ends[partition] = (low, high)
        consumer.assign([TopicPartition(config.topic, p, OFFSET_BEGINNING) for p in ends])
        total = sum(high - low for low, high in ends.values())
        with Progress(
            TextColumn("repairing"), BarColumn(), MofNCompleteColumn(), disable=not show_progress
        ) as progress:
            task = progress.add_task("scan", total=total)
            remaining = dict(ends)
            while remaining:
                messages = [m for m in consumer.consume(1000, 1.0) if m.error() is None]
                chunk = [m for m in messages if m.partition() in remaining and m.offset() < remaining[m.partition()][1]]
                for message in messages:
                    partition = message.partition()
                    if partition in remaining and message.offset() >= remaining[partition][1] - 1:
                        del remaining[partition]
                if chunk:
                    _apply(config, writer, chunk, report)
                progress.update(task, advance=len(chunk))
    finally:
        consumer.close()


def _apply(config: ServiceConfig, writer: StateWriter, chunk: list, report: RepairReport) -> None:  # type: ignore[type-arg]
    report.records_scanned += len(chunk)
    skew = config.engine.max_future_skew_seconds
    batch, _ = decode_batch(chunk, now=time.time(), max_future_skew_seconds=skew)
    mine = batch.records_of(report.customer_id)
    if not mine:
        return
    report.records_of_customer += len(mine)
    writer.apply(batch, [report.customer_id])
    counts, too_late = batch.outcomes()
    for (_kind, outcome), count in counts.items():
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + count
    if too_late:
        report.outcomes["too_late"] = report.outcomes.get("too_late", 0) + len(too_late)
