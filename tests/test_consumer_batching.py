"""How the consumer cuts batches from what the Kafka client hands it (pure logic: the client is a
stand-in that serves prepared messages; the real client is exercised by the streaming tests)."""

from __future__ import annotations

from confluent_kafka import Message

from stream_features.config import ServiceConfig
from stream_features.ingest.consumer import FeatureConsumer


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
    assert len(batch) == 13  # 1 waited for, then chunks of 4: the one that crossed 10,500 bytes is kept whole


def test_a_drained_queue_ends_the_batch() -> None:
    messages = [Message(value=None, offset=i) for i in range(5)]  # tombstones count 0 bytes
    batch = next_batch(ServiceConfig(batch_size=1000, batch_timeout_seconds=30.0), messages, per_call=2)
    assert len(batch) == 5


class RecordingQueue(QueuedMessages):
    def __init__(self, messages: list[Message], per_call: int) -> None:
        super().__init__(messages, per_call)
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls.append((num_messages, timeout))
        return super().consume(num_messages, timeout)


def test_only_the_first_record_is_waited_for() -> None:
    """consume(n, timeout) waits for n records: asking for 1,000 with a timeout made a lone
    event wait the whole timeout. Only the first record may be waited for, and alone."""
    queue = RecordingQueue([Message(value=b"x", offset=i) for i in range(7)], per_call=3)
    consumer = FeatureConsumer(ServiceConfig(batch_size=1000, batch_timeout_seconds=0.25))
    try:
        batch = consumer._next_batch(queue)  # type: ignore[arg-type]
    finally:
        consumer.close()
    assert len(batch) == 7
    assert queue.calls[0][0] == 1 and queue.calls[0][1] > 0
    assert all(timeout == 0.0 for _, timeout in queue.calls[1:])
