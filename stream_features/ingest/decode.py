"""Kafka records → a ``Batch`` of events for the writer, and the dead letters of those that are
not events.

The Rust fast path (``_native.decode_records``) decodes the common valid events; every record it
is unsure about is judged by ``core.events.decode_event``, so dead-letter reasons have one source.
The writer (``store/``) never sees a Kafka message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .._native import Batch, decode_records, empty_batch
from ..core.events import CartEvent, Event, ProfileEvent, PurchaseEvent, SessionEvent, SupportEvent, decode_event
from ..errors import InvalidEvent
from ..store.hash_fields import encode_attribute
from ..store.writer import StateWriter


class PendingEvent(NamedTuple):
    """A decoded event and the Kafka position it came from (for callers without records)."""

    event: Event
    partition: int
    offset: int


def decode_batch(
    records: list[Any], *, now: float, max_future_skew_seconds: float
) -> tuple[Batch, list[tuple[int, InvalidEvent]]]:
    """Decode Kafka messages into a batch; also returns the invalid ones (index, reason)."""
    batch = decode_records(records, now, max_future_skew_seconds)
    invalid: list[tuple[int, InvalidEvent]] = []
    for index in batch.fallback():
        data = records[index].value() or b""
        try:
            set_event(batch, index, decode_event(data, now=now, max_future_skew_seconds=max_future_skew_seconds))
        except InvalidEvent as exc:
            invalid.append((index, exc))
        except Exception as exc:  # the last resort: no record's bytes may stop the stream
            invalid.append((index, InvalidEvent("internal_error", f"{type(exc).__name__}: {exc}"[:300], data)))
    batch.finish()
    return batch, invalid


def batch_of(events: Iterable[PendingEvent]) -> Batch:
    """A batch of already decoded events (loaders, benchmarks, tests)."""
    pending = list(events)
    batch = empty_batch([p.partition for p in pending], [p.offset for p in pending])
    for index, item in enumerate(pending):
        set_event(batch, index, item.event)
    batch.finish()
    return batch


def set_event(batch: Batch, index: int, event: Event) -> None:
    """Hand one Python-decoded event to the batch (the fields the rules read)."""
    common = (index, event.kind, event.customer_id, event.timestamp, event.event_id)
    if isinstance(event, PurchaseEvent):
        batch.set_event(*common, event.amount, False, None, [])
    elif isinstance(event, SessionEvent):
        batch.set_event(*common, event.duration_seconds, False, event.device, [])
    elif isinstance(event, CartEvent):
        batch.set_event(*common, event.value, event.converted, None, [])
    elif isinstance(event, SupportEvent):
        batch.set_event(*common, event.response_time_hours, event.escalated, None, [])
    else:
        assert isinstance(event, ProfileEvent)
        attributes = [(key, encode_attribute(event.timestamp, value)) for key, value in event.attributes.items()]
        batch.set_event(*common, None, False, None, attributes)


def apply_events(writer: StateWriter, by_customer: dict[str, list[PendingEvent]]) -> dict[str, str]:
    """Write decoded events (each customer's list in stream order) through ``writer``; returns
    each customer's outcome codes (``Outcome.code``) in its events' order."""
    order = [item for items in by_customer.values() for item in items]
    batch = batch_of(order)
    writer.apply(batch)
    outcomes: dict[str, str] = {}
    for item, code in zip(order, batch.codes(), strict=True):
        outcomes[item.event.customer_id] = outcomes.get(item.event.customer_id, "") + code
    return outcomes
