"""History loads: ``stream-features backfill`` from Parquet and JSON Lines against the stream path
on the same events, in the same run.

For each size: generate the events, write them as JSON Lines and as Parquet (written in row
groups, so this script's own memory stays flat), produce them to a fresh topic and consume it with
the consumer (the stream path: events/s from first record to last commit), then load each file
into a fresh key prefix with ``stream-features backfill`` in a process of its own (events/s from
its report, peak RSS from the kernel). Redis is flushed of each prefix afterwards.

    python3 -m bench.backfill --sizes 1000000,5000000 --customers-per-event 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from stream_features.config import ServiceConfig
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.kafka_io import ensure_topics, wait_for_kafka
from stream_features.ingest.producer import produce_lines

from .common import write_results
from .consumer_throughput import run_ours

_TEXT = ("type", "customer_id", "event_id", "device", "status", "attributes")
_NUMBERS = ("amount", "value", "duration_seconds", "response_time_hours")


def write_files(lines_path: Path, parquet_path: Path, options: GeneratorOptions) -> int:
    """The generated events as JSON Lines, and the rows a typed file holds as Parquet (row
    groups of 100,000; timestamps as text, as many exports have them)."""
    schema = pa.schema(
        [(name, pa.string()) for name in (*_TEXT, "timestamp")]
        + [(name, pa.float64()) for name in _NUMBERS]
        + [("escalated", pa.bool_())]
    )
    count = 0
    rows: list[dict[str, Any]] = []
    with lines_path.open("wb") as lines, pq.ParquetWriter(parquet_path, schema) as parquet:
        for line in generate_events(options):
            lines.write(line + b"\n")
            count += 1
            row = _row(line)
            if row is not None:
                rows.append(row)
            if len(rows) == 100_000:
                parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        if rows:
            parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
    return count


def _row(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    row: dict[str, Any] = {}
    for name in _TEXT:
        value = obj.get(name)
        row[name] = json.dumps(value) if name == "attributes" and value is not None else value
        if row[name] is not None and not isinstance(row[name], str):
            return None
    ts = obj.get("timestamp")
    row["timestamp"] = ts if isinstance(ts, str) or ts is None else repr(ts)
    for name in _NUMBERS:
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return None
        row[name] = None if value is None else float(value)
    escalated = obj.get("escalated")
    row["escalated"] = escalated if isinstance(escalated, bool) else None
    return row


def run_backfill(config: ServiceConfig, path: Path, prefix: str, work: Path) -> dict[str, Any]:
    """One load in a process of its own: its report, wall time and peak RSS."""
    command = [sys.executable, "-m", "stream_features", "backfill", str(path), "--json", "--no-progress"]
    command += ["--redis-url", config.redis_url, "--key-prefix", prefix, "--work-dir", str(work)]
    command += ["--dead-letters", str(work / f"{prefix}.dead.jsonl")]
    started = time.perf_counter()
    with (work / f"{prefix}.stderr").open("wb") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # the kernel's peak RSS of this process alone
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError((work / f"{prefix}.stderr").read_text()[-2000:])
    report = json.loads(out)
    peak_kb = usage.ru_maxrss
    return {
        "events": report["events"],
        "seconds": report["seconds"],
        "events_per_s": report["events_per_second"],
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def wipe(client: redis.Redis, prefix: str) -> None:
    batch = []
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) == 5000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,5000000", help="events per run, comma-separated")
    parser.add_argument("--customers-per-event", type=float, default=0.1, help="customers = events × this")
    parser.add_argument("--no-stream", action="store_true", help="skip the stream-path baseline")
    args = parser.parse_args()
    base = ServiceConfig(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    client = redis.Redis.from_url(base.redis_url)
    results: dict[str, Any] = {"runs": []}
    end = time.time() - 3600
    for size in (int(s) for s in args.sizes.split(",")):
        customers = max(1, int(size * args.customers_per_event))
        options = GeneratorOptions(customers=customers, events=size, start=end - 300 * 86400, end=end, seed=size)
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as folder:
            work = Path(folder)
            lines, parquet = work / "events.jsonl", work / "events.parquet"
            written = write_files(lines, parquet, options)
            run: dict[str, Any] = {"events": written, "customers": customers}
            run["file_mb"] = {
                "jsonl": round(lines.stat().st_size / 2**20, 1),
                "parquet": round(parquet.stat().st_size / 2**20, 1),
            }
            for name, path in (("parquet", parquet), ("jsonl", lines)):
                prefix = f"bench-bf-{uuid.uuid4().hex[:8]}"
                run[f"backfill_{name}"] = run_backfill(base, path, prefix, work)
                wipe(client, prefix)
            if not args.no_stream:
                suffix = uuid.uuid4().hex[:8]
                config = replace(
                    base, topic=f"bench-bf-{suffix}", group_id=f"bench-bf-{suffix}", key_prefix=f"bench-bf-{suffix}"
                )
                ensure_topics(wait_for_kafka(config), [config.topic, config.dlq_topic])
                with lines.open("rb") as handle:
                    produced = produce_lines(handle, config, show_progress=False)
                run["stream"] = run_ours(config, produced)
                wipe(client, config.key_prefix)
                stream = run["stream"]["events_per_s"]
                for name in ("parquet", "jsonl"):
                    run[f"backfill_{name}"]["vs_stream"] = round(run[f"backfill_{name}"]["events_per_s"] / stream, 2)
        results["runs"].append(run)
        print(json.dumps(run), file=sys.stderr)
    write_results("backfill", results)


if __name__ == "__main__":
    main()
