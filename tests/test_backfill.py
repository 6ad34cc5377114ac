"""History loads (``stream-features backfill``, SPEC §5a) against a real Kafka broker and Redis.

The state a load leaves is compared with the state the consumer leaves for the same records
(tiles byte for byte, remembered event ids) and with the in-memory engine (features over 1, 30,
90 and 400 days at two times), for every customer found in either.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from stream_features import CustomerActivityFeatures, InvalidEvent, decode_event
from stream_features.config import ServiceConfig
from stream_features.history import reading
from stream_features.history.load import LoadOptions, LoadReport, run_load
from stream_features.query.reader import FeatureReader
from stream_features.store.watermarks import Watermarks

from .history_files import rows_of, write_csv, write_jsonl, write_parquet
from .streaming import Pipeline, memory_engine, recent_events, stop, wait_until

pytestmark = pytest.mark.integration
DAY = 86400.0


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Iterator[Pipeline]:
    fresh = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    yield fresh
    fresh.cleanup()


# ----- helpers ---------------------------------------------------------------------------------


def history(count: int, customers: int, seed: int) -> list[bytes]:
    """Generated events over 100 days (invalid ones and re-sent duplicates included), then events
    500 days older than the rest for a few customers: too_late once their newer events are in."""
    lines = recent_events(count, customers, seed)
    now = time.time()
    late = [
        json.dumps(
            {"type": "purchase", "customer_id": f"cust-{i:07d}", "timestamp": now - 500 * DAY, "amount": 3.0}
        ).encode()
        for i in range(0, min(customers, 40), 4)
    ]
    return lines + late


def load(config: ServiceConfig, paths: Sequence[Path], tmp_path: Path, **options: Any) -> LoadReport:
    letters = tmp_path / f"dead-{uuid.uuid4().hex[:6]}.jsonl"
    return run_load(config, LoadOptions([str(p) for p in paths], dead_letters=letters, show_progress=False, **options))


def stored(client: redis.Redis, prefix: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every customer key under the prefix: the tiles hash whole, the bookkeeping hash's
    remembered ids (its version, offsets and TTL time depend on how often it was written)."""
    out: dict[bytes, dict[bytes, bytes]] = {}
    for key in client.scan_iter(match=f"{prefix}:{{*", count=1000):
        fields = client.hgetall(key)
        if key.endswith(b":x"):
            fields = {f: v for f, v in fields.items() if f.startswith(b"e:")}
        out[key[len(prefix) :]] = fields
    return out


def engine_of(lines: Sequence[bytes], now: float) -> CustomerActivityFeatures:
    engine, _ = memory_engine(lines, now)
    return engine


def customers_in(client: redis.Redis, prefix: str) -> set[str]:
    """Customer ids of the tiles keys under the prefix (README "Redis key layout": unescaped)."""
    found = set()
    for key in client.scan_iter(match=f"{prefix}:{{*}}", count=1000):
        escaped = key.decode()[len(prefix) + 2 : -1]
        found.add(escaped.replace("%7B", "{").replace("%7D", "}").replace("%25", "%"))
    return found


def assert_features_equal(
    engine: CustomerActivityFeatures, reader: FeatureReader, client: redis.Redis, prefix: str, now: float
) -> int:
    """Features of every customer in the engine or in Redis, as the engine has them."""
    customers = sorted(set(engine.customer_ids()) | customers_in(client, prefix))
    for as_of in (now, now - 60 * DAY):
        for days in (1, 30, 90, 400):
            got = reader.get_cohort_features(customers, days=days, as_of=as_of)
            for customer in customers:
                assert got[customer] == engine.get_all_features(customer, days, as_of), (customer, days, as_of)
    return len(customers)


def topic_records(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    """Every record of the topic as (partition, offset, value), partition by partition."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        found: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + 60
        while len(found) < sum(ends.values()) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error() is None:
                    found.append((message.partition(), message.offset(), message.value() or b""))
        return sorted(found)
    finally:
        consumer.close()


def with_coordinates(records: Sequence[tuple[int, int, bytes]]) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """Typed rows of the records that can be rows, with their partitions and offsets."""
    rows, partitions, offsets = [], [], []
    for index, row in rows_of([value for _, _, value in records]):
        partition, offset, _ = records[index]
        rows.append(row)
        partitions.append(partition)
        offsets.append(offset)
    return rows, partitions, offsets


# ----- same state as the stream ------------------------------------------------------------


def test_history_from_files_equals_history_from_kafka(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = history(12000, 600, seed=21)
    pipeline.produce(lines)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=180) == 0
    now = time.time()
    stream = stored(redis_client, pipeline.prefix)

    write_jsonl(tmp_path / "all.jsonl", lines)
    report = load(replace(pipeline.config, key_prefix=f"{pipeline.prefix}:jsonl"), [tmp_path / "all.jsonl"], tmp_path)
    _, reasons = memory_engine(lines, now)
    assert report.dead_letters == reasons and reasons["too_late"] == 10
    assert report.duplicates > 0 and report.applied + report.duplicates == report.events - 10
    assert stored(redis_client, f"{pipeline.prefix}:jsonl") == stream
    engine = engine_of(lines, now)
    reader = FeatureReader(redis_client, prefix=f"{pipeline.prefix}:jsonl")
    assert assert_features_equal(engine, reader, redis_client, f"{pipeline.prefix}:jsonl", now) >= 550

    # The rows a typed file can hold, as JSON Lines, Parquet and CSV: one state.
    rows = rows_of(lines)
    typed_lines = [lines[i] for i, _ in rows]
    write_jsonl(tmp_path / "typed.jsonl", typed_lines)
    write_parquet(tmp_path / "typed.parquet", [r for _, r in rows])
    write_csv(tmp_path / "typed.csv", [r for _, r in rows])
    reference = load(
        replace(pipeline.config, key_prefix=f"{pipeline.prefix}:t-jsonl"), [tmp_path / "typed.jsonl"], tmp_path
    )
    expected = stored(redis_client, f"{pipeline.prefix}:t-jsonl")
    assert len(expected) >= 1000
    for name in ("typed.parquet", "typed.csv"):
        prefix = f"{pipeline.prefix}:{name}"
        report = load(replace(pipeline.config, key_prefix=prefix), [tmp_path / name], tmp_path)
        assert (report.events, report.applied, report.duplicates) == (
            reference.events,
            reference.applied,
            reference.duplicates,
        )
        assert report.dead_letters == reference.dead_letters
        assert stored(redis_client, prefix) == expected, name

    # Chunking and buckets change nothing: tiny chunks, tiny buckets (split further), same state.
    monkeypatch.setattr(reading, "ROWS_PER_CHUNK", 97)
    monkeypatch.setattr(reading, "JSONL_BLOCK_BYTES", 4096)
    for name in ("typed.parquet", "typed.jsonl"):
        prefix = f"{pipeline.prefix}:small-{name}"
        load(replace(pipeline.config, key_prefix=prefix), [tmp_path / name], tmp_path, bucket_events=50)
        assert stored(redis_client, prefix) == expected, name


def test_running_a_load_twice_or_after_a_sigkill_gives_the_state_of_one_run(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    lines = history(200000, 10000, seed=22)
    rows = rows_of(lines)
    path = tmp_path / "history.parquet"
    write_parquet(path, [r for _, r in rows])

    def command(prefix: str) -> list[str]:
        return [
            *(sys.executable, "-m", "stream_features", "backfill", str(path), "--redis-url", pipeline.redis_url),
            *("--key-prefix", prefix, "--no-progress", "--bucket-events", "4000", "--json"),
            *("--dead-letters", str(tmp_path / f"{prefix}.jsonl")),
        ]

    once = f"{pipeline.prefix}:once"
    started = time.monotonic()
    first = json.loads(subprocess.run(command(once), capture_output=True, check=True, timeout=300).stdout)
    whole = time.monotonic() - started
    expected = stored(redis_client, once)
    assert first["applied"] > 150000
    again = load(replace(pipeline.config, key_prefix=once), [path], tmp_path)
    assert (again.applied, again.duplicates, again.already_loaded) == (0, 0, first["applied"] + first["duplicates"])
    assert stored(redis_client, once) == expected

    killed = f"{pipeline.prefix}:killed"
    rng = random.Random(3)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:  # at a random moment of a run: starting, reading, scattering or writing
            process.wait(timeout=rng.uniform(0.15, 0.7) * whole)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            kills += 1
    assert kills >= 2, "the load finished before it could be killed"
    final = subprocess.run(command(killed), capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert stored(redis_client, killed) == expected


# ----- handing over to the stream -------------------------------------------------------------


def _split_file(records: list[tuple[int, int, bytes]], split: dict[int, int], path: Path) -> int:
    """The records below each partition's split, as Parquet with partition and offset columns."""
    below = [r for r in records if r[1] < split.get(r[0], 0)]
    rows, partitions, offsets = with_coordinates(below)
    write_parquet(path, rows, extra={"partition": partitions, "offset": offsets})
    return len(rows)


def _random_splits(records: list[tuple[int, int, bytes]], rng: random.Random) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset, _ in records:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    splits = {p: rng.randint(end // 4, end) for p, end in ends.items()}
    splits[min(splits)] = ends[min(splits)]  # one partition wholly in the files
    return splits


def test_coordinates_hand_over_after_the_last_loaded_offset(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Files first, then the consumer: it continues each partition right after the files."""
    lines = history(12000, 800, seed=23)
    pipeline.produce(lines)
    records = topic_records(pipeline.bootstrap, pipeline.topic)
    split = _random_splits(records, random.Random(23))
    _split_file(records, split, tmp_path / "export.parquet")
    report = load(pipeline.config, [tmp_path / "export.parquet"], tmp_path)
    assert report.coordinates and all(plan.mode == "merge" for plan in report.plans.values())
    marks = Watermarks(redis_client, prefix=pipeline.prefix, topic=pipeline.topic).read(sorted(split))
    for partition, plan in report.plans.items():
        assert marks[partition] == plan.handover == plan.last + 1  # type: ignore[operator]
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=180) == 0
    now = time.time()
    engine = engine_of([value for _, _, value in records], now)
    assert assert_features_equal(engine, pipeline.reader(), redis_client, pipeline.prefix, now) >= 700
    # Nothing below the splits was read by the consumer (only dead letters show what it read).
    letters = pipeline.dead_letters(0, timeout=5)
    assert all(
        int(dict(m.headers())["source.offset"]) >= split[int(dict(m.headers())["source.partition"])] for m in letters
    )


def test_a_consumer_that_already_passed_the_point_counts_nothing_twice(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    lines = history(8000, 500, seed=24)
    pipeline.produce(lines)
    consumer = pipeline.start_consumer()
    pipeline.wait_all_committed(timeout=120)
    before = stored(redis_client, pipeline.prefix)
    records = topic_records(pipeline.bootstrap, pipeline.topic)
    in_file = _split_file(records, _random_splits(records, random.Random(24)), tmp_path / "export.parquet")
    report = load(pipeline.config, [tmp_path / "export.parquet"], tmp_path)
    assert report.rows == in_file and (report.applied, report.duplicates) == (0, 0)
    assert report.already_loaded + report.dead_letters.get("too_late", 0) == report.events
    assert stored(redis_client, pipeline.prefix) == before
    assert stop(consumer) == 0


def test_a_truncated_topic_and_a_running_consumer_still_end_exact(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The topic no longer holds what the files hold (retention): the consumer, already running,
    started after the files' first offsets. The load holds the partitions (the consumer pauses
    them), rebuilds the files' customers, and hands over; the consumer replays the rest on top."""
    lines = history(16000, 800, seed=25)
    pipeline.produce(lines)
    records = topic_records(pipeline.bootstrap, pipeline.topic)
    split = _random_splits(records, random.Random(25))
    split = {p: min(s, max(o for q, o, _ in records if q == p)) for p, s in split.items()}  # each keeps a record
    _split_file(records, split, tmp_path / "export.parquet")
    admin = AdminClient({"bootstrap.servers": pipeline.bootstrap})
    for future in admin.delete_records([TopicPartition(pipeline.topic, p, o) for p, o in split.items()]).values():
        future.result(timeout=30)
    consumer = pipeline.start_consumer("--batch-size", "500")
    wait_until(lambda: pipeline.committed() > 0, timeout=60, what="the consumer under way")
    report = load(pipeline.config, [tmp_path / "export.parquet"], tmp_path)
    assert any(plan.mode == "rebuild" for plan in report.plans.values()), report.plans
    more = history(2000, 800, seed=26)[:-10]  # and the stream goes on
    pipeline.produce(more)
    pipeline.wait_all_committed(timeout=180)
    assert stop(consumer) == 0
    now = time.time()
    engine = engine_of([value for _, _, value in records] + more, now)
    assert assert_features_equal(engine, pipeline.reader(), redis_client, pipeline.prefix, now) >= 700


def _produce_at_event_times(pipeline: Pipeline, lines: Sequence[bytes]) -> None:
    """Each record with its event's time as the Kafka timestamp (what a producer stamping
    CreateTime at the event does), so the topic's offsets for a time match the events'."""
    producer = Producer({"bootstrap.servers": pipeline.bootstrap, "linger.ms": 20})
    for line in lines:
        event = json.loads(line)
        producer.produce(
            pipeline.topic,
            value=line,
            key=event["customer_id"].encode(),
            timestamp=int(_seconds(event["timestamp"]) * 1000),
        )
        producer.poll(0)
    assert producer.flush(60) == 0


def _seconds(value: object) -> float:
    from stream_features.core.timeparse import parse_timestamp

    return parse_timestamp(value)


def test_until_with_a_one_day_overlap_counts_each_event_once(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    now = time.time()
    valid = []
    for line in recent_events(10000, 500, seed=27):
        try:
            event = decode_event(line, now=now)
        except InvalidEvent:
            continue
        obj = json.loads(line)
        if len(valid) % 2:
            obj.pop("event_id", None)  # half without ids: the record times decide for them
        valid.append((event.timestamp, json.dumps(obj).encode()))
    until = now - 30 * DAY
    in_files = [line for ts, line in valid if ts < until + DAY]
    in_topic = [line for ts, line in valid if ts >= until - DAY]
    _produce_at_event_times(pipeline, in_topic)
    write_jsonl(tmp_path / "export.jsonl", in_files)
    report = load(pipeline.config, [tmp_path / "export.jsonl"], tmp_path, until=until)
    assert report.left_to_topic == sum(1 for ts, _ in valid if until <= ts < until + DAY) > 0
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=180) == 0
    engine = engine_of([line for _, line in valid], now)
    assert assert_features_equal(engine, pipeline.reader(), redis_client, pipeline.prefix, now) >= 350


def test_until_with_ids_counts_overlapping_events_once_whatever_the_record_times(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Records stamped with the time they were produced (now): the topic's offset for T is its
    start, so the overlap day is in both; event ids make each of its events count once."""
    now = time.time()
    valid = [
        (decode_event(line, now=now).timestamp, line) for line in recent_events(6000, 300, seed=28) if _valid(line, now)
    ]
    assert all(b'"event_id"' in line for _, line in valid)
    until = now - 30 * DAY
    pipeline.produce([line for ts, line in valid if ts >= until - DAY])
    write_jsonl(tmp_path / "export.jsonl", [line for ts, line in valid if ts < until + DAY])
    load(pipeline.config, [tmp_path / "export.jsonl"], tmp_path, until=until)
    consumer = pipeline.start_consumer("--exit-when-idle", "3")
    assert consumer.wait(timeout=180) == 0
    engine = engine_of([line for _, line in valid], now)
    assert assert_features_equal(engine, pipeline.reader(), redis_client, pipeline.prefix, now) >= 200


def _first_copies(lines: list[bytes]) -> list[bytes]:
    seen: set[str] = set()
    out = []
    for line in lines:
        event_id = json.loads(line).get("event_id")
        if event_id not in seen:
            out.append(line)
            seen.add(event_id)
    return out


def _valid(line: bytes, now: float) -> bool:
    try:
        decode_event(line, now=now)
    except InvalidEvent:
        return False
    return True


def test_a_load_while_the_consumer_writes_the_same_customers_loses_nothing(
    pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """History (before T) from a file while the consumer applies live events (after T) of the same
    customers: every event counts once (the same compare-and-set). Their interleaving decides only
    the order of float additions, so sums are compared to the last bits and counts exactly."""
    now = time.time()
    # No re-sent duplicates: which of two copies counts depends on the order the two writers'
    # events land in (the dedup horizon is order-sensitive, SPEC §5a), not on safety.
    lines = _first_copies([line for line in recent_events(30000, 1500, seed=29) if _valid(line, now)])
    times = [decode_event(line, now=now).timestamp for line in lines]
    until = sorted(times)[len(times) // 2]
    old = [line for line, ts in zip(lines, times, strict=True) if ts < until]
    new = [line for line, ts in zip(lines, times, strict=True) if ts >= until]
    pipeline.produce(new)
    write_jsonl(tmp_path / "history.jsonl", old)
    consumer = pipeline.start_consumer("--batch-size", "300")
    wait_until(lambda: pipeline.committed() > 0, timeout=60, what="the consumer under way")
    report = load(pipeline.config, [tmp_path / "history.jsonl"], tmp_path, bucket_events=2000)
    assert report.applied + report.duplicates == len(old)
    pipeline.wait_all_committed(timeout=180)
    assert stop(consumer) == 0
    engine = engine_of(old + new, now)
    reader = pipeline.reader()
    customers = engine.customer_ids()
    got = reader.get_cohort_features(customers, days=400, as_of=now)
    for customer in customers:
        expected = engine.get_all_features(customer, 400, now)
        for name, value in expected.items():
            if isinstance(value, float):
                assert got[customer][name] == pytest.approx(value, rel=1e-12, abs=1e-9), (customer, name)
            else:
                assert got[customer][name] == value, (customer, name)


# ----- for people ---------------------------------------------------------------------------------


def test_unreadable_files_and_bad_flags_are_one_line_errors(pipeline: Pipeline, tmp_path: Path) -> None:
    no_id = tmp_path / "no-id.csv"
    no_id.write_text("type,timestamp,amount\npurchase,2026-01-01T00:00:00Z,5\n")
    cases = {
        "missing": [str(tmp_path / "missing.parquet")],
        "no such file": [str(tmp_path / "missing.parquet")],
        "no column customer_id": [str(no_id)],
        "is not an event field": [str(no_id), "--column", "customer=user"],
    }
    not_parquet = tmp_path / "bad.parquet"
    not_parquet.write_bytes(b"not parquet at all")
    cases["not a readable Parquet file"] = [str(not_parquet)]
    base = [sys.executable, "-m", "stream_features", "backfill", "--redis-url", pipeline.redis_url, "--no-progress"]
    for expected, args in cases.items():
        if expected == "missing":
            continue
        result = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (expected, result.stderr)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_dry_run_validates_and_writes_nothing(pipeline: Pipeline, redis_client: redis.Redis, tmp_path: Path) -> None:
    lines = history(3000, 200, seed=30)
    write_jsonl(tmp_path / "h.jsonl", lines)
    command = [sys.executable, "-m", "stream_features", "backfill", str(tmp_path / "h.jsonl"), "--dry-run", "--json"]
    command += ["--redis-url", pipeline.redis_url, "--key-prefix", pipeline.prefix, "--no-progress"]
    result = subprocess.run(command, capture_output=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    _, reasons = memory_engine(lines, time.time())
    assert reasons.pop("too_late") == 10  # judged against the stored state: only when applying
    assert report["dead_letters_by_reason"] == reasons and report["rows"] == len(lines)
    assert report["customers"] == 200 and report["applied"] == 0
    assert not list(redis_client.scan_iter(match=f"{pipeline.prefix}:*"))
    assert not (tmp_path / "backfill-dead-letters.jsonl").exists()
