"""The ``backfill`` command line: its flags, and the summary people and scripts read at the end."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import ServiceConfig
from .columns import COORDINATES, EVENT_FIELDS
from .load import LoadOptions, LoadReport, run_load


def _mapping(text: str) -> tuple[str, str]:
    field, sep, column = text.partition("=")
    if not sep or not column:
        raise argparse.ArgumentTypeError(f"expects FIELD=COLUMN, got {text!r}")
    if field not in (*EVENT_FIELDS, *COORDINATES):
        raise argparse.ArgumentTypeError(
            f"{field!r} is not an event field ({', '.join((*EVENT_FIELDS, *COORDINATES))})"
        )
    return field, column


def add_arguments(parser: argparse.ArgumentParser, timestamp: Any, positive_int: Any) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="files or folders: JSON Lines (.gz/.zst), CSV, Parquet"
    )
    parser.add_argument(
        "--group", help="the consumers' group, paused while the load holds partitions (env STREAM_FEATURES_GROUP)"
    )
    parser.add_argument(
        "--column",
        type=_mapping,
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read an event field (or partition/offset) from a column of another name (repeatable)",
    )
    parser.add_argument(
        "--until",
        type=timestamp,
        help="files without Kafka coordinates: load events before this time; the topic gives the rest",
    )
    parser.add_argument(
        "--no-coordinates", action="store_true", help="ignore partition and offset columns (a load of its own)"
    )
    parser.add_argument("--dry-run", action="store_true", help="only read and validate; report what a load would do")
    parser.add_argument(
        "--dead-letters",
        type=Path,
        default=Path("backfill-dead-letters.jsonl"),
        help="JSON Lines file for invalid rows (default ./backfill-dead-letters.jsonl)",
    )
    parser.add_argument(
        "--load-id", help="name of a load without coordinates (default: from the files' names and sizes)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="folder for the spill files (default: the system's temporary folder)"
    )
    parser.add_argument(
        "--bucket-events",
        type=positive_int,
        default=500_000,
        help="events held in memory at once (default 500000, about 0.5 GB with the writer)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on standard output")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace, config: ServiceConfig) -> int:
    options = LoadOptions(
        paths=args.paths,
        columns=dict(args.column),
        until=args.until,
        coordinates=False if args.no_coordinates else None,
        dry_run=args.dry_run,
        dead_letters=args.dead_letters,
        work_dir=args.work_dir,
        load_id=args.load_id,
        bucket_events=args.bucket_events,
        show_progress=not args.no_progress,
    )
    report = run_load(config, options)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_summary(report)
    return 0


def report_json(report: LoadReport) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dry_run": report.dry_run,
        "files": report.files,
        "rows": report.rows,
        "events": report.events,
        "applied": report.applied,
        "duplicates": report.duplicates,
        "already_loaded": report.already_loaded,
        "dead_lettered": report.dead_lettered,
        "dead_letters_by_reason": dict(sorted(report.dead_letters.items())),
        "dead_letter_file": report.dead_letter_file if report.dead_lettered else None,
        "customers": report.customers,
        "caps_reached": report.caps_reached,
        "coordinates": report.coordinates,
        "load_id": report.load_id,
        "seconds": round(report.seconds, 3),
        "read_seconds": round(report.read_seconds, 3),
        "events_per_second": round(report.events / report.seconds) if report.seconds > 0 else None,
    }
    if report.left_to_topic:
        out["left_to_topic"] = report.left_to_topic
    if report.ranges:
        out["partitions"] = {
            str(p): {"first_offset": low, "last_offset": high, "records": count}
            for p, (low, high, count) in sorted(report.ranges.items())
        }
    if report.plans:
        out["handover"] = {
            str(p): {
                "mode": plan.mode,
                "watermark_before": plan.watermark_before,
                "continues_at": plan.handover,
                "notes": plan.notes,
            }
            for p, plan in sorted(report.plans.items())
        }
    return out


def print_summary(report: LoadReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    title = "backfill (dry run: nothing written)" if report.dry_run else "backfill"
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rate = f"{report.events / report.seconds:,.0f} events/s" if report.seconds > 0 else ""
    rows = [
        ("files", f"{report.files:,}"),
        ("rows read", f"{report.rows:,}"),
        ("valid events", f"{report.events:,}"),
    ]
    if report.left_to_topic:
        rows.append(("at or after --until (left to the topic)", f"{report.left_to_topic:,}"))
    if not report.dry_run:
        rows += [
            ("applied", f"{report.applied:,}"),
            ("duplicates (event_id)", f"{report.duplicates:,}"),
            ("already loaded (skipped)", f"{report.already_loaded:,}"),
        ]
    rows.append(("dead-lettered", f"{report.dead_lettered:,}"))
    for reason, count in sorted(report.dead_letters.items()):
        rows.append((f"  {reason}", f"{count:,}"))
    rows += [("customers", f"{report.customers:,}"), ("time", f"{report.seconds:,.1f} s  {rate}")]
    for name, value in rows:
        table.add_row(name, value)
    for partition, plan in sorted(report.plans.items()):
        before = "none" if plan.watermark_before is None else f"{plan.watermark_before:,}"
        table.add_row(f"partition {partition}", f"{plan.mode}: stream continues at {plan.handover:,} (was {before})")
        for note in plan.notes:
            table.add_row("", note)
    console.print(table)
    if report.dead_lettered and report.dead_letter_file:
        print(f"invalid rows: {report.dead_letter_file}", file=sys.stderr)
