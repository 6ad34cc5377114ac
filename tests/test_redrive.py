"""``stream-features redrive`` end to end through real Kafka and Redis: dead letters that a relaxed
rule accepts go back once, even after a crash between the broker's ack and the commit, and even
when redrive runs twice; the rest land in a JSONL file with their reason now."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_features.config import ServiceConfig
from stream_features.core.settings import EngineSettings
from stream_features.ingest.redrive import Redrive, RedriveFilter, Sender, ledger_topic, read_ledger

from .streaming import Pipeline, assert_same_state, memory_engine, stop

pytestmark = pytest.mark.integration

STRICT_SKEW = "60"  # the rule at first: events more than a minute ahead are future_timestamp
RELAXED_SKEW = "7200"  # the rule relaxed: two hours


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    yield fresh
    fresh.cleanup()


def _events(now: float) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """Valid events, events an hour ahead (future under the strict rule only), events ten days
    ahead (future under both) and malformed ones. No event ids, so a record applied twice
    counts twice; whole numbers, so sums do not depend on the order of application."""

    def event(i: int, at: float) -> bytes:
        customer = f"c{i % 25}"
        if i % 2:
            body = {"type": "purchase", "customer_id": customer, "timestamp": at, "amount": i % 7 + 1}
        else:
            body = {"type": "session", "customer_id": customer, "timestamp": at, "duration_seconds": i % 50}
        return json.dumps(body).encode()

    valid = [event(i, now - 86400 + i * 60) for i in range(300)]
    soon = [event(i, now + 3600 + i) for i in range(150)]
    far = [event(i, now + 10 * 86400) for i in range(20)]
    malformed = [b'{"type": "purchase", "customer_id": "c%d"' % i for i in range(10)]
    return valid, soon, far, malformed


class Crash(BaseException):
    """The process dies: nothing after this point runs, nothing is closed."""


class CrashAfterAck(Sender):
    """Dies once the broker acknowledged the first transaction's records, before its commit."""

    def commit(self) -> list[Any]:
        assert self._producer.flush(30) == 0  # every copy and ledger record acknowledged
        raise Crash()

    def close(self) -> None:  # a dead process closes nothing: its transaction stays open
        pass


class CrashingRedrive(Redrive):
    def sender(self, partitions: int) -> Sender:
        self.crashed_sender = CrashAfterAck(self.config, partitions)
        return self.crashed_sender


def _redrive_cli(pipeline: Pipeline, *args: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "stream_features",
        "redrive",
        "--bootstrap-servers",
        pipeline.bootstrap,
        "--topic",
        pipeline.topic,
        "--json",
        "--no-progress",
        *args,
    ]
    env = {**_env(), "STREAM_FEATURES_MAX_FUTURE_SKEW_SECONDS": RELAXED_SKEW}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def _redriven_copies(pipeline: Pipeline, isolation: str) -> Counter[str]:
    """Records in the events topic that carry redrive headers, by source, as a reader with this
    isolation level sees them."""
    reader = Consumer(
        {
            "bootstrap.servers": pipeline.bootstrap,
            "group.id": f"probe-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    copies: Counter[str] = Counter()
    try:
        reader.assign([TopicPartition(pipeline.topic, p, 0) for p in range(pipeline.partitions)])
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < pipeline.partitions and time.monotonic() < deadline:
            for message in reader.consume(1000, 0.5):
                if message.error() is not None:
                    at_end.add(message.partition() or 0)
                    continue
                headers = {name: value.decode() for name, value in message.headers() or []}
                if "redrive.source.offset" in headers:
                    copies[f"{headers['redrive.source.partition']}:{headers['redrive.source.offset']}"] += 1
        assert len(at_end) == pipeline.partitions, "events topic not read to its end"
    finally:
        reader.close()
    return copies


def test_redriven_records_are_applied_exactly_once_after_a_crash_and_two_runs(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    valid, soon, far, malformed = _events(now)
    pipeline.produce([*valid, *soon, *far, *malformed])
    monkeypatch.setenv("STREAM_FEATURES_MAX_FUTURE_SKEW_SECONDS", STRICT_SKEW)
    strict = pipeline.start_consumer("--exit-when-idle", "3")
    assert strict.wait(timeout=120) == 0, strict.stderr.read().decode() if strict.stderr else ""
    letters = pipeline.dead_letters(len(soon) + len(far) + len(malformed))
    assert len(letters) == 180

    relaxed_config = ServiceConfig(
        kafka_bootstrap_servers=pipeline.bootstrap,
        topic=pipeline.topic,
        engine=EngineSettings(max_future_skew_seconds=float(RELAXED_SKEW)),
    )
    # A first run dies after the broker acknowledged its first transaction, before the commit.
    crashing = CrashingRedrive(relaxed_config, RedriveFilter())
    with pytest.raises(Crash):
        crashing.run(None)
    assert read_ledger(relaxed_config) == set()  # nothing recorded as sent back ...
    assert not _redriven_copies(pipeline, "read_committed")  # ... and nothing readable as sent back

    # The rule is relaxed: the consumer restarts with it, and redrive runs, twice.
    monkeypatch.setenv("STREAM_FEATURES_MAX_FUTURE_SKEW_SECONDS", RELAXED_SKEW)
    consumer = pipeline.start_consumer()
    try:
        dry = _redrive_cli(pipeline, "--dry-run")
        assert (dry["sent_back"], dry["still_failing"]) == (150, 30)
        failed = tmp_path / "still-failing.jsonl"
        first = _redrive_cli(pipeline, "--failed-output", str(failed))
        assert first["sent_back"] == 150 and first["sent_back_by_reason"] == {"future_timestamp": 150}
        assert first["still_failing_by_reason"] == {"future_timestamp": 20, "malformed_json": 10}
        rows = [json.loads(line) for line in failed.read_text().splitlines()]
        assert Counter(row["reason"] for row in rows) == {"future_timestamp": 20, "malformed_json": 10}
        assert sorted(row["value"].encode() for row in rows) == sorted([*far, *malformed])
        second = _redrive_cli(pipeline, "--failed-output", str(tmp_path / "second.jsonl"))
        assert (second["sent_back"], second["already_sent_back"], second["still_failing"]) == (0, 150, 30)
        pipeline.wait_all_committed(timeout=90)  # markers included: the consumer commits past them
    finally:
        assert stop(consumer) == 0

    copies = _redriven_copies(pipeline, "read_committed")
    assert len(copies) == 150 and set(copies.values()) == {1}
    # The crashed run's acknowledged copies are in the log too, aborted: never read as events.
    assert sum(_redriven_copies(pipeline, "read_uncommitted").values()) > 150
    assert len(read_ledger(relaxed_config)) == 150
    engine, reasons = memory_engine([*valid, *soon, *far, *malformed], now)
    assert reasons == {"future_timestamp": 20, "malformed_json": 10}
    assert assert_same_state(engine, pipeline, as_of=now + 7200) == 25
    assert len(pipeline.dead_letters(180, timeout=10)) == 180  # nothing redriven was dead-lettered again
    # The consumer moved its watermark past the transaction markers with its commit: a restart
    # finds them equal (no false "Redis went back in time") and nothing left to read.
    again = pipeline.start_consumer("--exit-when-idle", "3")
    assert again.wait(timeout=120) == 0
    assert b"went back in time" not in (again.stderr.read() if again.stderr else b"")


def test_filters_select_by_reason_and_source_offset(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    _, soon, _, malformed = _events(now)
    pipeline.produce([*soon[:20], *malformed])
    monkeypatch.setenv("STREAM_FEATURES_MAX_FUTURE_SKEW_SECONDS", STRICT_SKEW)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=120) == 0
    letters = pipeline.dead_letters(30)
    only_malformed = _redrive_cli(pipeline, "--dry-run", "--reason", "malformed_json")
    assert (only_malformed["matched"], only_malformed["still_failing"], only_malformed["sent_back"]) == (10, 10, 0)
    offsets = sorted(
        int(dict(m.headers())["source.offset"]) for m in letters if dict(m.headers())["source.partition"] == b"0"
    )
    assert offsets, "partition 0 got no dead letters"
    first = str(offsets[0])
    some = _redrive_cli(pipeline, "--dry-run", "--source-partition", "0", "--from-offset", first, "--to-offset", first)
    assert some["matched"] == 1
    assert ledger_topic(pipeline.config) == f"{pipeline.topic}.dlq.redriven"
