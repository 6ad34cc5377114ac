"""What a history load shows people while it runs: rows read, then events applied, each with
its rate and the time left (rich, on stderr)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {task.fields['unit']}/s")


class LoadProgress:
    """Reading (rows, against an estimate from Parquet row counts and file sizes) and applying
    (events, exact)."""

    def __init__(self, *, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._read: TaskID | None = None
        self._apply: TaskID | None = None

    def __enter__(self) -> LoadProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()

    def start_reading(self, estimated_rows: int) -> None:
        self._read = self._progress.add_task("reading", total=max(estimated_rows, 1), unit="rows")

    def read(self, rows: int) -> None:
        if self._read is not None:
            task = self._progress.tasks[self._read]
            total = max(task.total or 0, task.completed + rows)  # the estimate was low
            self._progress.update(self._read, advance=rows, total=total)

    def done_reading(self) -> None:
        if self._read is not None:
            task = self._progress.tasks[self._read]
            self._progress.update(self._read, total=task.completed)

    def start_applying(self, events: int) -> None:
        self._apply = self._progress.add_task("applying", total=max(events, 1), unit="events")

    def applied(self, events: int) -> None:
        if self._apply is not None:
            self._progress.advance(self._apply, events)
