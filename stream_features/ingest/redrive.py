"""``redrive``: send dead letters that today's rules accept back to the events topic, once.

Each dead letter that passes the filter is judged again by ``core.events.decode_event`` (the
validator the consumer uses, with this process's settings and clock). One that passes goes back
to the events topic with its original key and bytes, into the partition it came from, with
``redrive.*`` headers saying where it came from; one that still fails is written to a JSONL file
with its reason now.

**Exactly once, whatever crashes.** A dead letter is known by its source record
(``<topic>:<partition>:<offset>`` from its headers; the dead-letter topic is at-least-once, so
one source can have several letters). The copy sent back and a ledger record keyed by that source
are written in one Kafka transaction, the ledger being a compacted topic
(``<topic>.dlq.redriven``). Both are visible, or neither: a crash after the broker acknowledged
the copy but before the commit leaves an open transaction that is aborted, and its copy is never
read by the consumer (``read_committed``, librdkafka's default). A run first takes over the
transactional id (``init_transactions``: any earlier or concurrent run is fenced and its open
transaction aborted), then reads the ledger to its end with ``read_committed``, and skips every
source found there. So "sent back" and "recorded as sent back" cannot diverge, and a second run,
or a run after a crash, sends nothing twice.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, get_args

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import ServiceConfig
from ..core.events import decode_event
from ..errors import ConfigurationError, InvalidEvent, ReasonCode, StreamFeaturesError
from .kafka_io import client_settings, ensure_topics, wait_for_kafka

log = logging.getLogger(__name__)

REASONS = frozenset(get_args(ReasonCode))
# Records of a customer whose stored state was unreadable are originals in the events topic:
# `repair` applies them from there; sending them back would count them twice.
NEVER_REDRIVEN = frozenset({"state_unreadable"})
TRANSACTION_RECORDS = 500  # copies per transaction: an open transaction holds back live reads
TRANSACTION_SECONDS = 0.5  # of the partitions it writes (read_committed), so keep each short
TRANSACTION_TIMEOUT_MS = 10_000  # a crashed run's open transaction is aborted within this
READ_TIMEOUT_SECONDS = 60.0


def ledger_topic(config: ServiceConfig) -> str:
    return f"{config.dlq_topic}.redriven"


def transactional_id(config: ServiceConfig) -> str:
    """One per events topic: a new run fences any earlier one still alive."""
    return f"stream-features-redrive.{config.topic}"


@dataclass(frozen=True, slots=True)
class Letter:
    """One record of the dead-letter topic."""

    dlq_partition: int
    dlq_offset: int
    dead_lettered_at: float  # the letter's Kafka timestamp, Unix seconds
    key: bytes | None
    value: bytes
    reason: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int

    @property
    def source(self) -> str:
        """The ledger key: the record the letter stands for."""
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"


@dataclass(frozen=True, slots=True)
class RedriveFilter:
    """Which dead letters to consider; every bound inclusive, ``None`` = no bound."""

    reasons: frozenset[str] = frozenset()  # empty: every reason
    source_partition: int | None = None
    from_offset: int | None = None  # source offsets
    to_offset: int | None = None
    since: float | None = None  # when the record was dead-lettered, Unix seconds
    until: float | None = None

    def __post_init__(self) -> None:
        unknown = sorted(self.reasons - REASONS)
        if unknown:
            raise ConfigurationError(f"unknown reason {', '.join(unknown)}; reasons are {', '.join(sorted(REASONS))}")
        if self.reasons & NEVER_REDRIVEN:
            raise ConfigurationError(
                "state_unreadable records are originals in the events topic: `stream-features repair` "
                "applies them; sending them back would count them twice"
            )
        if self.from_offset is not None and self.to_offset is not None and self.from_offset > self.to_offset:
            raise ConfigurationError(f"--from-offset {self.from_offset} is after --to-offset {self.to_offset}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ConfigurationError("--since is after --until")

    def matches(self, letter: Letter) -> bool:
        checks = (
            not self.reasons or letter.reason in self.reasons,
            self.source_partition is None or letter.source_partition == self.source_partition,
            self.from_offset is None or letter.source_offset >= self.from_offset,
            self.to_offset is None or letter.source_offset <= self.to_offset,
            self.since is None or letter.dead_lettered_at >= self.since,
            self.until is None or letter.dead_lettered_at <= self.until,
        )
        return all(checks)


@dataclass
class RedriveReport:
    dry_run: bool
    scanned: int = 0  # dead letters read
    matched: int = 0  # of those, passing the filter
    sent_back: int = 0  # (dry run: would be)
    already_sent_back: int = 0  # by an earlier run (the ledger), or a second letter of one source
    still_failing: int = 0
    sent_back_by_reason: dict[str, int] = field(default_factory=dict)  # the reason they had
    still_failing_by_reason: dict[str, int] = field(default_factory=dict)  # the reason they have now
    skipped: dict[str, int] = field(default_factory=dict)  # state_unreadable, or letters with no source
    failed_output: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ----- reading -------------------------------------------------------------------------------


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def parse_letter(message: Message) -> Letter | None:
    """A dead letter from its record; ``None`` when its source headers are missing or garbled."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = {name: _text(value) for name, value in pairs}
    try:
        source_partition = int(headers["source.partition"])
        source_offset = int(headers["source.offset"])
        source_topic = headers["source.topic"]
    except (KeyError, ValueError):
        return None
    _kind, stamp = message.timestamp()
    return Letter(
        dlq_partition=message.partition() or 0,
        dlq_offset=message.offset() or 0,
        dead_lettered_at=stamp / 1000.0,
        key=message.key(),
        value=message.value() or b"",
        reason=headers.get("error.reason", "unknown"),
        message=headers.get("error.message", ""),
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
    )


def read_to_end(
    config: ServiceConfig, topic: str, *, on_total: Callable[[int], None] = lambda _n: None
) -> Iterator[Message]:
    """Every record of ``topic`` from its start up to its end as of now (``read_committed``: the
    records of committed transactions only), partition by partition as fetched."""
    reader = KafkaConsumer(
        client_settings(
            config,
            **{
                "group.id": f"stream-features-redrive-{uuid.uuid4().hex[:12]}",  # never joined, never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
    )
    try:
        metadata = reader.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise StreamFeaturesError(f"topic {topic} does not exist")
        remaining: dict[int, int] = {}  # partition → its end when we started
        assignment = []
        for partition in sorted(metadata.partitions):
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                remaining[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        on_total(sum(remaining[tp.partition] - tp.offset for tp in assignment))
        reader.assign(assignment)
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while remaining:
            messages = reader.consume(1000, 0.5)
            if messages:
                deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            elif time.monotonic() > deadline:
                raise StreamFeaturesError(f"reading {topic} stalled before the end of partitions {sorted(remaining)}")
            for message in messages:
                partition = message.partition() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.pop(partition, None)
                        continue
                    raise KafkaException(error)
                if partition not in remaining or (message.offset() or 0) >= remaining[partition]:
                    remaining.pop(partition, None)  # arrived after we started: the next run's
                    continue
                yield message
                if (message.offset() or 0) + 1 >= remaining[partition]:
                    remaining.pop(partition, None)
    finally:
        reader.close()


def read_ledger(config: ServiceConfig) -> set[str]:
    """The sources already sent back: the keys of committed ledger records."""
    return {_text(message.key()) for message in read_to_end(config, ledger_topic(config))}


def ensure_ledger(admin: AdminClient, config: ServiceConfig) -> None:
    """The ledger topic, compacted (one record per source is all that is ever read)."""
    ensure_topics(admin, [ledger_topic(config)], partitions=1, topic_config={"cleanup.policy": "compact"})


# ----- sending -------------------------------------------------------------------------------


class Sender:
    """Copies and ledger records, in short transactions; ``commit`` says when they are visible."""

    def __init__(self, config: ServiceConfig, partitions: int) -> None:
        self._config = config
        self._partitions = partitions  # of the events topic
        self._producer = Producer(
            client_settings(
                config,
                **{
                    "transactional.id": transactional_id(config),
                    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                    "linger.ms": 5,
                },
            )
        )
        # Fences any earlier run (its open transaction is aborted): from here on only this run
        # can commit, so the ledger read next is complete.
        self._producer.init_transactions(30)
        self._open = False
        self._opened_at = 0.0
        self.pending: list[Letter] = []

    def send(self, letter: Letter, *, now: float) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open, self._opened_at = True, time.monotonic()
        headers: list[tuple[str, str | bytes | None]] = [
            ("redrive.source.topic", letter.source_topic.encode()),
            ("redrive.source.partition", str(letter.source_partition).encode()),
            ("redrive.source.offset", str(letter.source_offset).encode()),
            ("redrive.dlq.partition", str(letter.dlq_partition).encode()),
            ("redrive.dlq.offset", str(letter.dlq_offset).encode()),
            ("redrive.reason", letter.reason.encode()),
            ("redrive.at", repr(now).encode()),
        ]
        target: dict[str, Any] = {}
        if letter.source_topic == self._config.topic and 0 <= letter.source_partition < self._partitions:
            target["partition"] = letter.source_partition  # beside the customer's other records
        ledger = json.dumps({"dlq": f"{letter.dlq_partition}:{letter.dlq_offset}", "at": now}).encode()
        self._produce(self._config.topic, letter.value, letter.key, headers=headers, **target)
        self._produce(ledger_topic(self._config), ledger, letter.source.encode())
        self.pending.append(letter)

    def due(self) -> bool:
        return self._open and (
            len(self.pending) >= TRANSACTION_RECORDS or time.monotonic() - self._opened_at >= TRANSACTION_SECONDS
        )

    def commit(self) -> list[Letter]:
        """Commit the open transaction; returns the letters it made visible."""
        if not self._open:
            return []
        try:
            self._producer.commit_transaction(60)
        except KafkaException as exc:
            self._abort_quietly()
            raise StreamFeaturesError(
                f"redrive stopped, its last transaction aborted ({exc.args[0].str()}); run it again: "
                "what was sent back is skipped"
            ) from None
        done, self.pending, self._open = self.pending, [], False
        return done

    def close(self) -> None:
        if self._open:
            self._abort_quietly()
        self._producer.flush(10)

    def _abort_quietly(self) -> None:
        try:
            self._producer.abort_transaction(30)
        except KafkaException as exc:  # fenced or fatal: the broker aborts it at the timeout
            log.warning("abort failed (%s): the open transaction expires on its own", exc)
        self.pending, self._open = [], False

    def _produce(self, topic: str, value: bytes, key: bytes | None, **options: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, **options)
                return
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.2)


# ----- the run -------------------------------------------------------------------------------


def still_failing_line(letter: Letter, exc: InvalidEvent) -> bytes:
    """One JSONL line: where the record came from, why it fails now, and its bytes."""
    row: dict[str, Any] = {
        "reason": exc.reason,
        "message": exc.message,
        "original_reason": letter.reason,
        "source": {"topic": letter.source_topic, "partition": letter.source_partition, "offset": letter.source_offset},
        "dlq": {"partition": letter.dlq_partition, "offset": letter.dlq_offset},
    }
    for name, raw in (("key", letter.key), ("value", letter.value)):
        if raw is None:
            row[name] = None
            continue
        try:
            row[name] = raw.decode("utf-8")
        except UnicodeDecodeError:  # not text: kept exact
            row[f"{name}_base64"] = base64.b64encode(raw).decode()
    return json.dumps(row, ensure_ascii=False).encode() + b"\n"


class Redrive:
    """One run over the dead-letter topic (``run``); the CLI wraps it with a progress bar."""

    def __init__(
        self,
        config: ServiceConfig,
        selection: RedriveFilter,
        *,
        dry_run: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.selection = selection
        self.report = RedriveReport(dry_run=dry_run)
        self._clock = clock
        self._done: set[str] = set()  # sources sent back (ledger, this run's commits and pending)
        self._failing: set[str] = set()

    def run(
        self,
        failed: IO[bytes] | None,
        *,
        on_total: Callable[[int], None] = lambda _n: None,
        on_read: Callable[[], None] = lambda: None,
    ) -> RedriveReport:
        """Read the dead-letter topic to its end as of now; ``failed`` gets the still-failing
        records as JSONL (``None``: not written, e.g. a dry run)."""
        admin = wait_for_kafka(self.config, attempts=3)
        topics = admin.list_topics(timeout=10).topics
        if self.config.dlq_topic not in topics:
            raise StreamFeaturesError(f"no dead-letter topic {self.config.dlq_topic}: nothing to redrive")
        if self.config.topic not in topics:
            raise StreamFeaturesError(f"no events topic {self.config.topic}")
        ensure_ledger(admin, self.config)
        sender = None if self.report.dry_run else self.sender(len(topics[self.config.topic].partitions))
        try:
            self._done = read_ledger(self.config)  # after init_transactions: complete
            for message in read_to_end(self.config, self.config.dlq_topic, on_total=on_total):
                self._one(message, sender, failed)
                on_read()
                if sender is not None and sender.due():
                    self._committed(sender)
            if sender is not None:
                self._committed(sender)
        finally:
            if sender is not None:
                sender.close()
        return self.report

    def sender(self, partitions: int) -> Sender:
        """The transactional sender (fences earlier runs); ``partitions``: of the events topic."""
        return Sender(self.config, partitions)

    def _committed(self, sender: Sender) -> None:
        done = sender.commit()
        reasons = Counter(letter.reason for letter in done)
        for reason, count in reasons.items():
            self.report.sent_back_by_reason[reason] = self.report.sent_back_by_reason.get(reason, 0) + count
        self.report.sent_back += len(done)

    def _one(self, message: Message, sender: Sender | None, failed: IO[bytes] | None) -> None:
        report = self.report
        report.scanned += 1
        letter = parse_letter(message)
        if letter is None:
            report.skipped["no_source_headers"] = report.skipped.get("no_source_headers", 0) + 1
            return
        if not self.selection.matches(letter):
            return
        report.matched += 1
        if letter.reason in NEVER_REDRIVEN:
            report.skipped[letter.reason] = report.skipped.get(letter.reason, 0) + 1
            return
        if letter.source in self._done:
            report.already_sent_back += 1
            return
        now = self._clock()
        try:
            decode_event(letter.value, now=now, max_future_skew_seconds=self.config.engine.max_future_skew_seconds)
        except InvalidEvent as exc:
            if letter.source not in self._failing:  # one line per source record
                self._failing.add(letter.source)
                report.still_failing += 1
                report.still_failing_by_reason[exc.reason] = report.still_failing_by_reason.get(exc.reason, 0) + 1
                if failed is not None:
                    failed.write(still_failing_line(letter, exc))
            return
        self._done.add(letter.source)
        if sender is None:  # dry run: counted as if sent
            report.sent_back += 1
            report.sent_back_by_reason[letter.reason] = report.sent_back_by_reason.get(letter.reason, 0) + 1
            return
        sender.send(letter, now=now)
