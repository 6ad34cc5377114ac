"""The status page's data (and ``stream-features status``'s): sampled every few seconds, kept
for the last minutes.

Reads only what any operator could read: from Kafka the topic's end offsets, the group's
committed offsets and members, and the dead-letter topic (its records' reasons, the last few of
each); from Redis the consumer's watermark hash (event-time freshness), memory, and a random
sample of customers (the largest, so a runaway producer is visible). Throughput is committed
records per second between samples; lag is end minus committed. With a read URL (replicas),
the Redis figures come from the server lookups read from, with its replication state and how
far it is behind the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from ..config import ServiceConfig, read_redis_client, redis_client
from ..core.timeparse import unix_to_iso
from ..ingest.kafka_io import client_settings
from ..redaction import redact
from ..store.replication import replication_state
from ..store.watermarks import Watermarks
from ..version import version_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    end: int
    committed: int
    dead_letters: int


RECENT_PER_REASON = 5
PAYLOAD_CHARS = 200
REDIS_SAMPLE_EVERY = 5  # samples: Redis memory and the customer sample are slower to read
CUSTOMER_SAMPLE = 200


@dataclass
class Details:
    """What the cards and tables show besides the chart (the latest reading of each)."""

    partitions: list[dict[str, Any]] = field(default_factory=list)
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    # (sample time, counts by reason then): the window's increase is "over time" per reason.
    reason_history: deque[tuple[float, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=600))
    recent_dead_letters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    freshness: dict[str, float | None] = field(default_factory=dict)
    replay: dict[str, Any] | None = None
    redis: dict[str, Any] = field(default_factory=dict)


class StatusSampler:
    def __init__(self, config: ServiceConfig, *, interval_seconds: float = 2.0, keep: int = 300) -> None:
        self.config = config
        self.interval = interval_seconds
        self.samples: deque[Sample] = deque(maxlen=keep)
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self._dlq_reader: Consumer | None = None
        self._admin: AdminClient | None = None
        self._redis: Any = None  # the server lookups read from
        self._primary: Any = None  # with a read URL: the primary, for the replication lag
        self._samples_taken = 0
        self.details = Details()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        for client in (self._consumer, self._dlq_reader):
            if client is not None:
                client.close()
        self._consumer = self._dlq_reader = None
        for redis in (self._redis, self._primary):
            if redis is not None:
                redis.close()
        self._redis = self._primary = None

    async def _loop(self) -> None:
        while True:
            await asyncio.to_thread(self.collect)
            await asyncio.sleep(self.interval)

    def collect(self) -> None:
        """Take one sample (blocking I/O; the page runs it in a thread)."""
        try:
            self.samples.append(self._sample())
            self.error = None
        except (KafkaException, KeyError, RuntimeError) as exc:
            self.error = redact(f"Kafka not readable: {exc}")
            log.debug("status sample failed: %s", exc)
            return
        for step in (self._read_dead_letters, self._read_owners, self._read_redis):
            try:
                step()
            except Exception as exc:  # a detail that cannot be read leaves the rest of the page
                log.debug("status detail %s failed: %s", step.__name__, exc)
        self._samples_taken += 1

    def _sample(self) -> Sample:
        if self._consumer is None:
            # A consumer that never subscribes: it only reads offsets, it never joins the group.
            self._consumer = Consumer(client_settings(self.config, **{"group.id": self.config.group_id}))
        consumer = self._consumer
        topics = consumer.list_topics(timeout=5).topics
        if self.config.topic not in topics:
            raise RuntimeError(f"topic {self.config.topic} does not exist yet")
        parts = [TopicPartition(self.config.topic, p) for p in sorted(topics[self.config.topic].partitions)]
        ends = [consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in parts]
        commits = [max(tp.offset, 0) for tp in consumer.committed(parts, timeout=5)]
        owners = {row["partition"]: row.get("owner") for row in self.details.partitions}
        self.details.partitions = [
            {
                "partition": tp.partition,
                "end": e,
                "committed": c,
                "lag": max(0, e - c),
                "owner": owners.get(tp.partition),
            }
            for tp, e, c in zip(parts, ends, commits, strict=True)
        ]
        end, committed = sum(ends), sum(commits)
        dead = 0
        dlq = topics.get(self.config.dlq_topic)
        if dlq is not None:
            dead = sum(
                consumer.get_watermark_offsets(TopicPartition(self.config.dlq_topic, p), timeout=5)[1]
                for p in dlq.partitions
            )
        return Sample(time.time(), end, committed, dead)

    def _read_owners(self) -> None:
        """Which member of the group owns each partition (client id and host)."""
        if self._admin is None:
            self._admin = AdminClient(client_settings(self.config))
        future = self._admin.describe_consumer_groups([self.config.group_id])[self.config.group_id]
        group = future.result(timeout=5)
        owners: dict[int, str] = {}
        for member in group.members:
            for tp in member.assignment.topic_partitions if member.assignment else []:
                if tp.topic == self.config.topic:
                    owners[tp.partition] = f"{member.client_id} ({member.host.lstrip('/')})"
        for row in self.details.partitions:
            row["owner"] = owners.get(row["partition"])

    def _read_dead_letters(self) -> None:
        """New dead letters since the last sample: counts by reason, the last few of each."""
        if self._dlq_reader is None:
            self._dlq_reader = self._start_dlq_reader()
            if self._dlq_reader is None:
                return
        for message in self._dlq_reader.consume(5000, 0.2):
            if message.error() is not None:
                continue
            raw_headers = message.headers() or []
            pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers  # a list from a consumer
            headers = {name: _text(value) for name, value in pairs}
            reason = headers.get("error.reason", "unknown")
            self.details.dead_letters_by_reason[reason] = self.details.dead_letters_by_reason.get(reason, 0) + 1
            recent = self.details.recent_dead_letters.setdefault(reason, [])
            recent.append(
                {
                    "key": (message.key() or b"").decode(errors="replace")[:PAYLOAD_CHARS],
                    "message": headers.get("error.message", "")[:PAYLOAD_CHARS],
                    "partition": headers.get("source.partition"),
                    "offset": headers.get("source.offset"),
                    "payload": (message.value() or b"").decode(errors="replace")[:PAYLOAD_CHARS],
                }
            )
            del recent[:-RECENT_PER_REASON]
        self.details.reason_history.append((time.time(), dict(self.details.dead_letters_by_reason)))

    def _recent_reason_counts(self, window_seconds: float = 300.0) -> dict[str, int]:
        """Dead letters per reason in the last ``window_seconds``, from the sampled totals."""
        history = self.details.reason_history
        if not history:
            return {}
        now, latest = history[-1]
        baseline: dict[str, int] = {}
        for at, counts in history:
            if at >= now - window_seconds:
                break
            baseline = counts
        return {reason: total - baseline.get(reason, 0) for reason, total in latest.items()}

    def _start_dlq_reader(self) -> Consumer | None:
        """A reader of the dead-letter topic from its last 1,000 records per partition on."""
        reader = Consumer(client_settings(self.config, **{"group.id": f"{self.config.group_id}-status"}))
        topic = reader.list_topics(self.config.dlq_topic, timeout=5).topics.get(self.config.dlq_topic)
        if topic is None or topic.error is not None:
            reader.close()
            return None
        assignment = []
        for partition in topic.partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(self.config.dlq_topic, partition), timeout=5)
            assignment.append(TopicPartition(self.config.dlq_topic, partition, max(low, high - 1000)))
        reader.assign(assignment)
        return reader

    def _read_redis(self) -> None:
        """Freshness from the consumer's watermark hash (as the read server has it: what lookups
        see); memory, the largest sampled customers and, with a read URL, replication."""
        if self._redis is None:
            self._redis = read_redis_client(self.config, socket_timeout=2, socket_connect_timeout=2)
        status = Watermarks(self._redis, prefix=self.config.key_prefix, topic=self.config.topic).status()
        now = time.time()
        newest = status.get("newest_event_time")
        applied = status.get("applied_at")
        self.details.freshness = {
            "event_time_delay_seconds": None if newest is None else max(0.0, now - float(newest)),
            "last_batch_seconds_ago": None if applied is None else max(0.0, now - float(applied)),
        }
        self.details.replay = replay_of(status)
        if self._samples_taken % REDIS_SAMPLE_EVERY:
            return
        memory = self._redis.info("memory")
        keys = int(self._redis.dbsize())
        customers = self._sample_customers()
        self.details.redis = {
            "used_memory": memory.get("used_memory"),
            "maxmemory": memory.get("maxmemory"),
            "keys": keys,
            # Two keys per customer (tiles and bookkeeping): a rough figure, the sample below is exact.
            "bytes_per_customer_estimate": round(memory.get("used_memory", 0) / max(1, keys / 2)),
            "largest_sampled_customers": customers[:5],
        }
        if self.config.redis_read_url:
            self.details.redis["replication"] = self._replication()

    def _replication(self) -> dict[str, Any]:
        """The read server's role, link and lag behind the primary (the primary read second, so
        the lag is not understated; a primary that does not answer leaves the lag out)."""
        read = self._redis.info("replication")
        if self._primary is None:
            self._primary = redis_client(self.config, socket_timeout=2, socket_connect_timeout=2)
        try:
            primary = self._primary.info("replication")
        except Exception as exc:  # the primary may be down while the replica answers
            log.debug("status: primary not readable: %s", exc)
            primary = None
        return replication_state(read, primary)

    def _sample_customers(self) -> list[dict[str, Any]]:
        """``CUSTOMER_SAMPLE`` random keys; of those that are customers' tile hashes, the biggest."""
        pipe = self._redis.pipeline(transaction=False)
        for _ in range(CUSTOMER_SAMPLE):
            pipe.randomkey()
        prefix = f"{self.config.key_prefix}:{{".encode()
        names = {k for k in pipe.execute() if k and k.startswith(prefix) and k.endswith(b"}")}
        sizes = self._redis.pipeline(transaction=False)
        for name in names:
            sizes.memory_usage(name)
            sizes.hlen(name)
        replies = sizes.execute()
        found = [
            {
                "customer_id": name[len(prefix) : -1].decode(errors="replace"),
                "bytes": replies[2 * i] or 0,
                "fields": replies[2 * i + 1],
            }
            for i, name in enumerate(names)
        ]
        return sorted(found, key=lambda row: -row["bytes"])

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
            "partitions": self.details.partitions,
            "freshness": self.details.freshness,
            "replay": self.details.replay,
            "dead_letters_by_reason": self.details.dead_letters_by_reason,
            "dead_letters_last_5_minutes": self._recent_reason_counts(),
            "recent_dead_letters": self.details.recent_dead_letters,
            "redis": self.details.redis,
        }

    def mount(self, app: FastAPI) -> None:
        page = resources.files("stream_features.query.web").joinpath("status.html").read_text()
        page = page.replace("<!-- version -->", html.escape(version_line()))  # the footer: what runs

        from .api_models import Status

        @app.get(
            "/v1/status",
            summary="Throughput, lag, partitions, freshness, dead letters and Redis over the last minutes",
            response_model=None,
            responses={200: {"model": Status}},
        )
        async def status_data() -> Any:
            return self.snapshot()

        @app.get("/status", include_in_schema=False)
        async def status_page() -> HTMLResponse:
            return HTMLResponse(page)

        @app.get("/", include_in_schema=False)
        async def index() -> HTMLResponse:
            return HTMLResponse(page)


def replay_of(status: dict[str, str]) -> dict[str, Any] | None:
    """A replay under way, from the consumer's watermark hash: per partition the offset its replay
    reaches (``replays``) against its watermark now (``p:<partition>``); None when none is left."""
    try:
        replays = json.loads(status.get("replays") or "{}")
    except ValueError:
        return None
    remaining, since = 0, None
    for partition, (until, started) in replays.items():
        mark = status.get(f"p:{partition}")
        left = int(until) - (int(mark) if mark is not None else 0)
        if left > 0:
            remaining += left
            since = started if since is None else min(since, started)
    if not remaining or since is None:
        return None
    return {"records": remaining, "since": unix_to_iso(float(since))}


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def render_status(snapshot: dict[str, Any]) -> None:
    """The page's summary as terminal tables (event data shown as plain text)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    points = snapshot["points"]
    throughput = f"{points[-1]['throughput_per_s']:,.0f}/s" if points else "–"
    fresh = snapshot["freshness"].get("event_time_delay_seconds") if snapshot["freshness"] else None
    head = Table(title=Text(f"topic {snapshot['topic']} · group {snapshot['group']}"), show_header=False)
    head.add_row("throughput", throughput)
    head.add_row("lag", f"{snapshot['lag']:,}" if snapshot["lag"] is not None else "–")
    head.add_row("dead letters", f"{snapshot['dead_letters']:,}" if snapshot["dead_letters"] is not None else "–")
    head.add_row("freshness (event time)", "–" if fresh is None else f"{fresh:,.1f} s behind the newest event")
    replay = snapshot.get("replay")
    if replay:
        head.add_row("replay", f"replaying {replay['records']:,} records since {replay['since']}")
    redis = snapshot["redis"]
    if redis:
        head.add_row("redis memory", f"{redis['used_memory'] / 1e6:,.1f} MB, {redis['keys']:,} keys")
    console.print(head)
    parts = Table("partition", "end", "committed", "lag", "owner", title="partitions")
    for row in snapshot["partitions"]:
        parts.add_row(
            *(
                Text(str(row[k] if row[k] is not None else "–"))
                for k in ("partition", "end", "committed", "lag", "owner")
            )
        )
    console.print(parts)
    if snapshot["dead_letters_by_reason"]:
        letters = Table(
            "reason", "count", "last one: message · payload", title="dead letters (last 1,000 per partition)"
        )
        for reason, count in sorted(snapshot["dead_letters_by_reason"].items()):
            last = (snapshot["recent_dead_letters"].get(reason) or [{}])[-1]
            letters.add_row(Text(reason), str(count), Text(f"{last.get('message', '')} · {last.get('payload', '')}"))
        console.print(letters)
