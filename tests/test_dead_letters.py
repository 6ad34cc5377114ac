"""Dead letters are acknowledged or the batch is not committed (SPEC §5 "Nothing lost")."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Message, Producer

from stream_features.errors import Stopped
from stream_features.ingest.dead_letters import DeadLetter, DeadLetterProducer


def test_unacknowledged_dead_letters_are_never_taken_as_delivered() -> None:
    """A broker that never answers: send_all must not return (the caller would commit past
    records whose dead letter never landed); asked to stop, it raises instead."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 600_000, "log_level": 0})
    letters = DeadLetterProducer(producer, "events.dlq")
    source = Message(topic="events", partition=0, offset=7, key=b"c", value=b"{")
    started = time.monotonic()
    with pytest.raises(Stopped):
        letters.send_all([DeadLetter(source, "malformed_json", "not JSON")], should_stop=lambda: True)
    assert time.monotonic() - started < 20
