"""How the consumer cuts batches from what the Kafka client hands it (pure logic: the client is a
stand-in that serves prepared messages; the real client is exercised by the streaming tests)."""

from __future__ import annotations

from confluent_kafka import Message

from stream_features.config import ServiceConfig
from stream_features.consumer import FeatureConsumer


class QueuedMessages:
    """Serves at most ``per_call`` queued messages per consume(), like a local fetch queue."""

    def __init__(self, messages: list[Message], per_call: int) -> None:
        self.messages = messages
        self.per_call = per_call

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        taken = self.messages[: min(num_messages, self.per_call)]
        del self.messages[: len(taken)]
        return taken


def next_batch(config: ServiceConfig, messages: list[Message], per_call: int) -> list[Message]:
    consumer = FeatureConsumer(config)
    try:
        return consumer._next_batch(QueuedMessages(messages, per_call))  # type: ignore[arg-type]
    finally:
        consumer.close()


def test_a_batch_stops_at_its_record_count() -> None:
    messages = [Message(value=b"x", offset=i) for i in range(50)]
    batch = next_batch(ServiceConfig(batch_size=10), messages, per_call=4)
    assert [m.offset() for m in batch] == list(range(10))


def test_a_batch_stops_once_its_values_pass_the_byte_limit() -> None:
    messages = [Message(value=b"x" * 1000, offset=i) for i in range(50)]
    batch = next_batch(ServiceConfig(batch_size=1000, batch_max_bytes=10_500), messages, per_call=4)
    assert len(batch) == 12  # the chunk that crossed 10,500 bytes is kept whole


def test_a_drained_queue_ends_the_batch() -> None:
    messages = [Message(value=None, offset=i) for i in range(5)]  # tombstones count 0 bytes
    batch = next_batch(ServiceConfig(batch_size=1000, batch_timeout_seconds=30.0), messages, per_call=2)
    assert len(batch) == 5
