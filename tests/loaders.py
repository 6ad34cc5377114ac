"""Load events into Redis through the real writer (no Kafka), for read-side tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import msgspec
import redis

from stream_features import CustomerActivityFeatures, EngineSettings, InvalidEvent, decode_event
from stream_features.ingest.decode import PendingEvent, apply_events
from stream_features.store.writer import StateWriter


def load(
    client: redis.Redis, prefix: str, lines: Iterable[bytes], *, now: float, batch: int = 2000
) -> CustomerActivityFeatures:
    """Write lines to Redis as one partition in batches; return the in-memory engine fed the same."""
    engine = CustomerActivityFeatures(clock=lambda: now)
    writer = StateWriter(client, EngineSettings(), prefix=prefix)
    pending: dict[str, list[PendingEvent]] = {}
    for offset, line in enumerate(lines):
        try:
            event = decode_event(line, now=now)
        except InvalidEvent:
            continue
        with contextlib.suppress(InvalidEvent):  # too_late: the writer judges it the same way
            engine.ingest(msgspec.json.decode(line))
        pending.setdefault(event.customer_id, []).append(PendingEvent(event, 0, offset))
        if offset % batch == batch - 1:
            apply_events(writer, pending)
            pending = {}
    apply_events(writer, pending)
    return engine
