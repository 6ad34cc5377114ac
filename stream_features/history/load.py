"""``stream-features backfill``: history from files into Redis, then handed over to the stream.

How a load runs (README "Starting with history"):

1. **Read** every file in order, a chunk at a time; every row is decoded and validated exactly as
   a Kafka record (``reading.py``); invalid rows go to the dead-letter file; valid events are
   scattered to bucket files on disk by customer (``_native.Spill``).
2. **Hold** (with Kafka coordinates or ``--until``): the topic's partitions are held so that no
   consumer writes them meanwhile, and each partition's plan is checked (``handover.py``).
3. **Apply** one bucket at a time: its events in the contract's order (file order, or offset
   order per partition), each customer's whole history in one pass through the consumer's own
   writer: the same rules, the same compare-and-set, and per-customer offsets (the Kafka
   coordinates, or the row's place in the load), so a row already applied is never applied again:
   stopping the load at any instant and running it again gives the same state.
4. **Hand over**: each partition's watermark is set where the stream continues, and the holds
   end, in one call.

Memory is bounded by one bucket (``bucket_events`` events), whatever the size of the files.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from .._native import Batch, Spill
from ..config import ServiceConfig, redis_client
from ..errors import ConfigurationError
from ..store.keys import aux_key, tiles_key
from ..store.transient import is_transient, retry_transient
from ..store.watermarks import Watermarks
from ..store.writer import StateWriter
from .dead_rows import DeadRowFile
from .files import SourceFile, discover, load_identity
from .handover import Handover, PartitionPlan, handover_fields
from .progress import LoadProgress
from .reading import ROW_BITS, DeadRow, ReadSettings, read_file

log = logging.getLogger(__name__)
T = TypeVar("T")
# A round's writes go to Redis while the next round is prepared: small enough to overlap.
CUSTOMERS_PER_ROUND = 2_000
# Open bucket files while reading (a larger load has larger buckets, split when read: _bucket_order).
MAX_BUCKETS = 256
_ROW_MASK = (1 << ROW_BITS) - 1


@dataclass(frozen=True)
class LoadOptions:
    paths: Sequence[str]
    columns: Mapping[str, str] = field(default_factory=dict)  # event field → the files' column
    until: float | None = None
    coordinates: bool | None = None  # None: as the files say (partition and offset columns)
    dry_run: bool = False
    dead_letters: Path | None = Path("backfill-dead-letters.jsonl")
    work_dir: Path | None = None
    load_id: str | None = None
    bucket_events: int = 500_000
    show_progress: bool = True


@dataclass
class LoadReport:
    files: int = 0
    rows: int = 0
    events: int = 0  # valid rows (with --until: before it)
    left_to_topic: int = 0  # --until: valid events at or after it
    applied: int = 0
    duplicates: int = 0
    already_loaded: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    customers: int = 0
    caps_reached: dict[str, int] = field(default_factory=dict)
    coordinates: bool = False
    load_id: str | None = None
    plans: dict[int, PartitionPlan] = field(default_factory=dict)
    ranges: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    dead_letter_file: str | None = None
    seconds: float = 0.0
    read_seconds: float = 0.0  # reading, validating and scattering the files
    dry_run: bool = False

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())


def run_load(config: ServiceConfig, options: LoadOptions, *, clock: Callable[[], float] = time.time) -> LoadReport:
    """Run a load (module doc); raises on anything that keeps a valid row from being applied."""
    started = time.monotonic()
    files = discover(options.paths)
    coordinates = options.coordinates if options.coordinates is not None else _have_coordinates(files, options)
    report = LoadReport(files=len(files), coordinates=coordinates, dry_run=options.dry_run)
    if coordinates and options.until is not None:
        raise ConfigurationError("--until is for files without Kafka coordinates (these have partition and offset)")
    settings = ReadSettings(clock(), config.engine.max_future_skew_seconds, coordinates, options.columns)
    letters = DeadRowFile(None if options.dry_run else options.dead_letters)
    if letters.path is not None:
        letters.path.unlink(missing_ok=True)
        report.dead_letter_file = str(letters.path)
    progress = LoadProgress(enabled=options.show_progress)
    try:
        with progress, _work_dir(options) as work:
            estimate = _estimated_rows(files)
            spill = (
                None if options.dry_run else Spill(work, max(1, math.ceil(estimate / max(1, options.bucket_events))))
            )
            progress.start_reading(estimate)
            customers = _scatter(files, settings, options, spill, letters, report, progress)
            report.read_seconds = time.monotonic() - started
            if spill is None:
                report.customers = customers
            else:
                _apply_and_hand_over(config, options, files, spill, letters, report, progress)
    finally:
        letters.close()
    report.seconds = time.monotonic() - started
    return report


# ----- reading -------------------------------------------------------------------------------


def _have_coordinates(files: list[SourceFile], options: LoadOptions) -> bool:
    """Whether the files carry Kafka coordinates: all of them, or none (a mix is refused)."""
    found = {source.name: _file_has_coordinates(source, options) for source in files}
    if len(set(found.values())) > 1:
        with_them = [name for name, has in found.items() if has][:3]
        without = [name for name, has in found.items() if not has][:3]
        raise ConfigurationError(
            f"some files have partition and offset columns ({', '.join(with_them)}) and some do not "
            f"({', '.join(without)}): load them separately"
        )
    return next(iter(found.values()))


def _file_has_coordinates(source: SourceFile, options: LoadOptions) -> bool:
    names = [options.columns.get(name, name) for name in ("partition", "offset")]
    if source.format == "parquet":
        available = source.parquet().schema_arrow.names
    elif source.format == "csv":
        available = source.header()
    else:
        import msgspec

        with source.open() as stream:
            for line in stream:
                if line.strip():
                    try:
                        obj = msgspec.json.decode(line)
                    except msgspec.DecodeError:
                        return False
                    available = list(obj) if isinstance(obj, dict) else []
                    break
            else:
                return False
    return all(name in available for name in names)


def _estimated_rows(files: list[SourceFile]) -> int:
    """Rows to expect: Parquet's row counts and, for text files, their size at ~100 bytes a row
    (compressed ones at 5 times their size). Sizes the spill's buckets and the progress bar."""
    estimate = 0
    for source in files:
        if source.format == "parquet":
            estimate += source.parquet().metadata.num_rows
        else:
            estimate += source.size * (5 if source.compression else 1) // 100
    return estimate


def _scatter(
    files: list[SourceFile],
    settings: ReadSettings,
    options: LoadOptions,
    spill: Spill | None,
    letters: DeadRowFile,
    report: LoadReport,
    progress: LoadProgress,
) -> int:
    """Read every file into the spill; returns the distinct customers seen (counted only on a dry run)."""
    customers: set[str] = set()
    for file_index, source in enumerate(files):
        for chunk in read_file(source, file_index, settings):
            batch = chunk.batch
            report.rows += chunk.rows
            if chunk.letters:
                _count_letters(report, chunk.letters)
                letters.write(chunk.letters)
            if settings.coordinates:
                _merge_ranges(report.ranges, batch.coordinate_ranges())
            if options.until is not None:
                report.left_to_topic += batch.drop_from(options.until)
            valid = batch.records - len(chunk.letters)
            if spill is None:
                customers.update(batch.customers)
            else:
                spill.add(batch)
            report.events += valid
            progress.read(chunk.rows)
    progress.done_reading()
    report.events -= report.left_to_topic
    return len(customers)


def _merge_ranges(ranges: dict[int, tuple[int, int, int]], found: dict[int, tuple[int, int, int]]) -> None:
    for partition, (low, high, count) in found.items():
        seen = ranges.get(partition)
        ranges[partition] = (
            (low, high, count) if seen is None else (min(seen[0], low), max(seen[1], high), seen[2] + count)
        )


def _count_letters(report: LoadReport, rows: list[DeadRow]) -> None:
    for row in rows:
        report.dead_letters[row.reason] = report.dead_letters.get(row.reason, 0) + 1


@contextmanager
def _work_dir(options: LoadOptions) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="stream-features-backfill-", dir=options.work_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----- applying and handing over ---------------------------------------------------------------


def _apply_and_hand_over(
    config: ServiceConfig,
    options: LoadOptions,
    files: list[SourceFile],
    spill: Spill,
    letters: DeadRowFile,
    report: LoadReport,
    progress: LoadProgress,
) -> None:
    client = redis_client(config, socket_timeout=30, socket_connect_timeout=5, health_check_interval=30)
    handover: Handover | None = None
    try:
        client.ping()
        watermarks = Watermarks(client, prefix=config.key_prefix, topic=config.topic)
        if report.coordinates or options.until is not None:
            handover = Handover(config, watermarks)
            if report.coordinates:
                handover.hold(sorted(report.ranges))
                report.plans = handover.plan_coordinates(report.ranges)
                source = handover.log_name
            else:
                handover.hold(handover.partitions)
                assert options.until is not None
                report.plans = handover.plan_until(options.until)
                source = _load_source(options, files, report)
        else:
            source = _load_source(options, files, report)
        rebuild = [p for p, plan in report.plans.items() if plan.mode == "rebuild"]
        writer = StateWriter(
            client,
            config.engine,
            topic=source,
            prefix=config.key_prefix,
            call_budget_us=config.write_call_budget_us,
            cache_bytes=1 << 40,  # a bucket's customers are forgotten after it (memory: one bucket)
        )
        applier = _Applier(client, writer, config.key_prefix)
        try:
            progress.start_applying(sum(spill.sizes))
            for bucket in _bucket_order(spill, options.bucket_events):
                batch = spill.take(bucket)
                report.customers += len(batch.customers)
                rebuilt = set(batch.customers_of_partitions(rebuild)) if rebuild else set()
                applier.apply(batch, rebuilt, progress)
                _settled(batch, files, report, letters)
                for cap, hits in writer.take_cap_hits().items():
                    report.caps_reached[cap] = report.caps_reached.get(cap, 0) + hits
                writer.forget_all()
                del batch  # one bucket in memory at a time: free it before the next is read
        finally:
            applier.close()
            writer.close()
        if handover is not None:
            handover.release(handover_fields(report.plans))
            handover = None
    finally:
        if handover is not None:
            handover.abandon()
        client.close()


def _load_source(options: LoadOptions, files: list[SourceFile], report: LoadReport) -> str:
    """Per-customer offsets of a load without coordinates are kept under this name (never a
    Kafka topic's: those cannot contain ``~``), at the row's place in the load."""
    report.load_id = options.load_id or load_identity(files)
    return f"history~{report.load_id}"


def _bucket_order(spill: Spill, bucket_events: int) -> Iterator[int]:
    """Every bucket, an oversized one split first (a skewed hash, or a low size estimate)."""
    queue = list(range(len(spill.sizes)))
    while queue:
        bucket = queue.pop(0)
        size = spill.sizes[bucket]
        if size > 2 * bucket_events and not spill.was_split(bucket):
            queue = spill.split(bucket, math.ceil(size / bucket_events)) + queue
        elif size:
            yield bucket


def _settled(batch: Batch, files: list[SourceFile], report: LoadReport, letters: DeadRowFile) -> None:
    """Count a bucket's outcomes; events judged too_late become dead rows."""
    counts, too_late = batch.outcomes()
    for (_kind, outcome), count in counts.items():
        if outcome == "applied":
            report.applied += count
        elif outcome == "duplicate":
            report.duplicates += count
        elif outcome == "redelivered":
            report.already_loaded += count
    rows = []
    for index in too_late:
        event = batch.event(index)
        ref = batch.row_ref(index) or 0
        record = _event_record(event) if event else None
        message = "older than the customer's newest event minus retention"
        rows.append(DeadRow(files[ref >> ROW_BITS].name, (ref & _ROW_MASK) + 1, "too_late", message, record))
    _count_letters(report, rows)
    letters.write(rows)


def _event_record(event: tuple[str, str, float, str | None, float | None, bool, str | None]) -> dict[str, Any]:
    kind, customer, timestamp, event_id = event[:4]
    record: dict[str, Any] = {"type": kind, "customer_id": customer, "timestamp": timestamp}
    if event_id is not None:
        record["event_id"] = event_id
    return record


class _Applier:
    """Writes a bucket's customers in rounds, the next round prepared while one is in Redis;
    Redis outages are waited out (the load never skips a customer)."""

    def __init__(self, client: Any, writer: StateWriter, prefix: str) -> None:
        self._client = client
        self._writer = writer
        self._prefix = prefix
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="backfill-writer")

    def close(self) -> None:
        self._sender.shutdown(wait=True)

    def apply(self, batch: Batch, rebuilt: set[str], progress: LoadProgress) -> None:
        customers = batch.customers
        rounds = [customers[i : i + CUSTOMERS_PER_ROUND] for i in range(0, len(customers), CUSTOMERS_PER_ROUND)]
        in_flight: tuple[list[str], Any, Future[list[str | None]]] | None = None
        for group in rounds:
            if rebuilt:
                self._clear([c for c in group if c in rebuilt])
            prepared = _retry(lambda group=group: self._writer.prepare(batch, group))  # type: ignore[misc]
            if in_flight is not None:
                self._settle(batch, *in_flight, progress)
            in_flight = (group, prepared, self._sender.submit(self._writer.execute, prepared))
        if in_flight is not None:
            self._settle(batch, *in_flight, progress)

    def _settle(
        self, batch: Batch, group: list[str], prepared: Any, written: Future[list[str | None]], progress: LoadProgress
    ) -> None:
        try:
            conflicted = self._writer.settle(batch, prepared, written.result())
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
            self._writer.forget(group)
            conflicted = group
        if conflicted:  # another writer touched them (a consumer on another partition), or Redis failed
            _retry(lambda: self._writer.apply(batch, conflicted))
        progress.applied(sum(len(batch.records_of(c)) for c in group))

    def _clear(self, customers: list[str]) -> None:
        """Customers rebuilt from the files start from nothing (``handover.py``, rebuild)."""
        if not customers:
            return

        def delete() -> None:
            # One DEL per customer: its two keys share a hash slot (Redis Cluster routes each).
            pipe = self._client.pipeline(transaction=False)
            for customer in customers:
                pipe.delete(tiles_key(customer, self._prefix), aux_key(customer, self._prefix))
            pipe.execute()

        _retry(delete)
        self._writer.forget(customers)


def _retry(call: Callable[[], T]) -> T:
    """Wait out Redis outages that end by themselves (``store/transient.py``), with back-off."""

    def waiting(exc: redis.RedisError, delay: float) -> None:
        log.warning("redis unavailable, retrying in %.1fs: %s", delay, exc)

    return retry_transient(call, on_wait=waiting, max_delay=5.0)


def reasons_summary(report: LoadReport) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in Counter(report.dead_letters).most_common())
