"""``produce``: JSONL lines into the events topic, keyed by customer_id, with a progress bar."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from confluent_kafka import KafkaException, Producer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import ServiceConfig
from .kafka_io import client_settings

_decoder = msgspec.json.Decoder()


def key_of(line: bytes) -> bytes | None:
    """The record key: the event's customer_id, or none for lines that are not events (they
    still go to the topic, so the consumer sends them to the dead-letter topic with a reason)."""
    try:
        obj = _decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    customer = obj.get("customer_id") if isinstance(obj, dict) else None
    return customer.encode("utf-8", "surrogatepass") if isinstance(customer, str) else None


def produce_lines(
    lines: Iterable[bytes], config: ServiceConfig, *, total: int | None = None, show_progress: bool = True
) -> int:
    """Send every non-empty line; returns how many were acknowledged by the broker."""
    producer = Producer(
        client_settings(config, **{"enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4"})
    )
    failures: list[str] = []

    def on_delivery(error: object, _msg: object) -> None:
        if error is not None:
            failures.append(str(error))

    sent = 0
    with Progress(
        TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not show_progress
    ) as progress:
        task = progress.add_task("produce", total=total)
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            while True:
                try:
                    producer.produce(config.topic, value=line, key=key_of(line), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.2)
            producer.poll(0)
            sent += 1
            if sent % 1000 == 0:
                progress.update(task, completed=sent)
        remaining = producer.flush(60)
        progress.update(task, completed=sent)
    if remaining or failures:
        raise KafkaException(f"{remaining + len(failures)} records not delivered: {failures[:3]}")
    return sent
