"""Dead-letter producer: invalid records go to ``<topic>.dlq`` with original key, bytes and reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from ..errors import Stopped

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: Message
    reason: str
    message: str


class DeadLetterProducer:
    """Produces dead letters and waits until the broker acknowledged every one of them."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    def send_all(self, letters: list[DeadLetter], *, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Deliver every letter (retrying with back-off); returns only when all are acknowledged."""
        pending = list(letters)
        delay = 0.1
        while pending:
            failed: list[DeadLetter] = []
            for letter in pending:
                self._produce(letter, failed)
            # flush() returns how many are still unacknowledged: wait for every delivery report
            # (each one lands in `failed` or is an ack) before judging the round.
            while self._producer.flush(5) > 0:
                if should_stop():
                    raise Stopped("stopped while dead letters were unacknowledged")
                log.warning("dead letters still unacknowledged; waiting for the broker")
            if not failed:
                return
            if should_stop():
                raise Stopped("stopped while dead letters were undelivered")
            log.warning("%d dead letters not delivered; retrying in %.1fs", len(failed), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            pending = failed

    def _produce(self, letter: DeadLetter, failed: list[DeadLetter]) -> None:
        source = letter.source

        def on_delivery(error: KafkaError | None, _msg: Message) -> None:
            if error is not None:
                failed.append(letter)

        headers: list[tuple[str, str | bytes | None]] = [
            ("error.reason", letter.reason.encode()),
            ("error.message", letter.message.encode()[:1024]),
            ("source.topic", (source.topic() or "").encode()),
            ("source.partition", str(source.partition()).encode()),
            ("source.offset", str(source.offset()).encode()),
        ]
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=source.value(),
                    key=source.key(),
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.5)
