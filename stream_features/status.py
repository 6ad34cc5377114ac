"""The status page's data: Kafka progress sampled every few seconds, kept for the last minutes.

Reads only what any operator could read from Kafka: the topic's end offsets, the consumer
group's committed offsets and the dead-letter topic's end offsets. Throughput is committed
records per second between samples; lag is end minus committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from .config import ServiceConfig
from .kafka_io import client_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    end: int
    committed: int
    dead_letters: int


class StatusSampler:
    def __init__(self, config: ServiceConfig, *, interval_seconds: float = 2.0, keep: int = 300) -> None:
        self.config = config
        self.interval = interval_seconds
        self.samples: deque[Sample] = deque(maxlen=keep)
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.close)

    async def _loop(self) -> None:
        while True:
            try:
                sample = await asyncio.to_thread(self._sample)
                self.samples.append(sample)
                self.error = None
            except (KafkaException, KeyError, RuntimeError) as exc:
                self.error = f"Kafka not readable: {exc}"
                log.debug("status sample failed: %s", exc)
            await asyncio.sleep(self.interval)

    def _sample(self) -> Sample:
        if self._consumer is None:
            # A consumer that never subscribes: it only reads offsets, it never joins the group.
            self._consumer = Consumer(client_settings(self.config, **{"group.id": self.config.group_id}))
        consumer = self._consumer
        topics = consumer.list_topics(timeout=5).topics
        if self.config.topic not in topics:
            raise RuntimeError(f"topic {self.config.topic} does not exist yet")
        parts = [TopicPartition(self.config.topic, p) for p in topics[self.config.topic].partitions]
        end = sum(consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in parts)
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=5))
        dead = 0
        dlq = topics.get(self.config.dlq_topic)
        if dlq is not None:
            dead = sum(
                consumer.get_watermark_offsets(TopicPartition(self.config.dlq_topic, p), timeout=5)[1]
                for p in dlq.partitions
            )
        return Sample(time.time(), end, committed, dead)

    def snapshot(self) -> dict[str, Any]:
        samples = list(self.samples)
        points = []
        for previous, current in itertools.pairwise(samples):
            elapsed = max(current.at - previous.at, 1e-6)
            points.append(
                {
                    "at": current.at,
                    "throughput_per_s": max(0.0, (current.committed - previous.committed) / elapsed),
                    "lag": max(0, current.end - current.committed),
                    "dead_letters": current.dead_letters,
                }
            )
        latest = samples[-1] if samples else None
        return {
            "topic": self.config.topic,
            "group": self.config.group_id,
            "error": self.error,
            "points": points,
            "lag": None if latest is None else max(0, latest.end - latest.committed),
            "committed": None if latest is None else latest.committed,
            "dead_letters": None if latest is None else latest.dead_letters,
        }

    def mount(self, app: FastAPI) -> None:
        page = resources.files("stream_features.web").joinpath("status.html").read_text()

        @app.get("/v1/status", summary="Throughput, lag and dead letters over the last minutes")
        async def status_data() -> Any:
            return self.snapshot()

        @app.get("/status", include_in_schema=False)
        async def status_page() -> HTMLResponse:
            return HTMLResponse(page)

        @app.get("/", include_in_schema=False)
        async def index() -> HTMLResponse:
            return HTMLResponse(page)
