"""``stream-features redrive``: the flags to a filter, a progress bar, the report as a table or JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import IO

from confluent_kafka import KafkaException

from .config import ServiceConfig
from .errors import StreamFeaturesError
from .ingest.redrive import Redrive, RedriveFilter, RedriveReport

PROGRESS_EVERY = 500  # records between progress bar updates


def run_redrive(config: ServiceConfig, args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    selection = RedriveFilter(
        reasons=frozenset(args.reason),
        source_partition=args.source_partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        since=args.since,
        until=args.until,
    )
    redrive = Redrive(config, selection, dry_run=args.dry_run)
    columns = (TextColumn("dead letters"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with contextlib.ExitStack() as stack:
        failed: IO[bytes] | None = None
        if not args.dry_run:
            failed = stack.enter_context(Path(args.failed_output).open("wb"))
            redrive.report.failed_output = args.failed_output
        progress = stack.enter_context(Progress(*columns, disable=args.no_progress, transient=True))
        task = progress.add_task("read", total=None)
        read = 0

        def on_read() -> None:
            nonlocal read
            read += 1
            if read % PROGRESS_EVERY == 0:
                progress.update(task, completed=read)

        try:
            report = redrive.run(failed, on_total=lambda total: progress.update(task, total=total), on_read=on_read)
        except KafkaException as exc:  # e.g. the broker refuses transactions: one line, exit 2
            raise StreamFeaturesError(f"Kafka: {exc}; run it again: what was sent back is skipped") from None
        progress.update(task, completed=read)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        render_report(report)
    return 0


def render_report(report: RedriveReport) -> None:
    """Per reason: sent back (by the reason the record had), still failing (by its reason now)."""
    from rich.console import Console
    from rich.table import Table

    verb = "would send back" if report.dry_run else "sent back"
    title = f"redrive{' (dry run: nothing sent)' if report.dry_run else ''}: {report.scanned:,} dead letters read"
    table = Table("reason", verb, "still failing", title=title)
    reasons = sorted(set(report.sent_back_by_reason) | set(report.still_failing_by_reason))
    for reason in reasons:
        table.add_row(
            reason, str(report.sent_back_by_reason.get(reason, 0)), str(report.still_failing_by_reason.get(reason, 0))
        )
    table.add_row("total", str(report.sent_back), str(report.still_failing), style="bold")
    console = Console()
    console.print(table)
    console.print(f"matched the filter: {report.matched:,} · already sent back earlier: {report.already_sent_back:,}")
    for reason, count in sorted(report.skipped.items()):
        why = "repair applies these" if reason == "state_unreadable" else "no source headers"
        console.print(f"skipped {reason}: {count:,} ({why})")
    if report.failed_output and report.still_failing:
        console.print(f"still failing, with their reason now: {report.failed_output}")
