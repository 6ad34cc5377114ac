"""Reading history files into batches of events: every row decoded and validated exactly as a
Kafka record is (the Rust fast path, then Python's validator for the rest), in file order,
a bounded chunk at a time.

Each chunk comes back as a ``Batch`` whose records are the chunk's rows: valid ones carry their
event and position (the Kafka partition and offset from the row, or the row's place in the load:
``file << 40 | row``), invalid ones are listed as ``DeadRow`` with the stream's reason codes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.csv as pa_csv

from .._native import Batch, decode_columns, decode_lines
from ..core.events import decode_event, validate_event
from ..errors import InvalidEvent
from ..ingest.decode import set_event
from .columns import COORDINATES, EVENT_FIELDS, PYTHON_COLUMN, _Unparsable, column_spec, row_object, type_csv_columns
from .files import SourceFile, UnreadableFile, read_blocks

ROW_BITS: Final = 40  # a row's place in the load: file index << 40 | row (native/history.rs)
ROWS_PER_CHUNK: Final = 65_536
JSONL_BLOCK_BYTES: Final = 8 << 20
_object: Final = msgspec.json.Decoder(float_hook=float)


@dataclass(frozen=True)
class DeadRow:
    """An invalid row: where it is, why, and the row itself (a line's text, or the row's object)."""

    file: str
    row: int  # 1-based line (JSON Lines) or data row (CSV, Parquet)
    reason: str
    message: str
    record: Any
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class ReadSettings:
    now: float
    max_future_skew_seconds: float
    coordinates: bool
    columns: Mapping[str, str]  # event field → the file's column name (for renamed exports)


@dataclass
class Chunk:
    batch: Batch
    rows: int
    letters: list[DeadRow]


def read_file(source: SourceFile, file_index: int, settings: ReadSettings) -> Iterator[Chunk]:
    """The file's rows, chunk by chunk, decoded (see module doc)."""
    if source.format == "jsonl":
        yield from _read_jsonl(source, file_index, settings)
    elif source.format == "csv":
        yield from _read_csv(source, file_index, settings)
    else:
        yield from _read_parquet(source, file_index, settings)


# ----- JSON Lines: each line is a Kafka record's value --------------------------------------


def _read_jsonl(source: SourceFile, file_index: int, settings: ReadSettings) -> Iterator[Chunk]:
    row = 0
    rename = {their: ours for ours, their in settings.columns.items() if their != ours}
    for block in read_blocks(source, JSONL_BLOCK_BYTES):
        if rename:
            block = _renamed_lines(block, rename)
        batch, spans = decode_lines(
            block,
            file_index=file_index,
            first_row=row,
            order_base=file_index << ROW_BITS,
            coordinates=settings.coordinates,
            now=settings.now,
            max_future_skew_seconds=settings.max_future_skew_seconds,
        )
        letters: list[DeadRow] = []
        for index, (start, end) in zip(batch.fallback(), spans, strict=True):
            line = block[start:end]
            line_number = (batch.row_ref(index) or 0) - (file_index << ROW_BITS) + 1
            judged = _judge_line(batch, index, line, settings)
            if judged is not None:
                error, coordinates = judged
                text = line.decode("utf-8", "replace")
                letters.append(
                    DeadRow(source.name, line_number, error.reason, error.message, text, *(coordinates or (None, None)))
                )
        count = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        row += count
        batch.finish()
        yield Chunk(batch, count, letters)


def _judge_line(
    batch: Batch, index: int, line: bytes, settings: ReadSettings
) -> tuple[InvalidEvent, tuple[int, int] | None] | None:
    """Decide a line the fast path left to Python; returns (error, coordinates) when invalid."""
    coordinates = None
    if settings.coordinates:
        try:
            obj = _object.decode(line)
        except (msgspec.DecodeError, RecursionError):
            obj = None
        coordinates = _coordinates(obj.get("partition"), obj.get("offset")) if isinstance(obj, dict) else None
        if coordinates is not None:
            batch.set_position(index, *coordinates)
    try:
        event = decode_event(line, now=settings.now, max_future_skew_seconds=settings.max_future_skew_seconds)
    except InvalidEvent as exc:
        return exc, coordinates
    except Exception as exc:  # the last resort, as in the stream: no row stops the load
        return InvalidEvent("internal_error", f"{type(exc).__name__}: {exc}"[:300]), coordinates
    if settings.coordinates and coordinates is None:
        return _no_coordinates(), None
    set_event(batch, index, event)
    return None


def _renamed_lines(block: bytes, rename: Mapping[str, str]) -> bytes:
    """Lines with their fields renamed to ours (``--column`` on JSON Lines): decoded, renamed
    and encoded again; a line that is not a JSON object is kept as it is (it is invalid anyway)."""
    out = []
    for line in block.split(b"\n"):
        try:
            obj = _object.decode(line) if line.strip() else None
        except (msgspec.DecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            line = msgspec.json.encode({rename.get(key, key): value for key, value in obj.items()})
        out.append(line)
    return b"\n".join(out)


# ----- typed rows: Parquet, and CSV typed by field ------------------------------------------


def _read_parquet(source: SourceFile, file_index: int, settings: ReadSettings) -> Iterator[Chunk]:
    parquet = source.parquet()
    names = _columns_to_read(source, parquet.schema_arrow.names, settings)
    row = 0
    # Row groups are read in batches: memory stays bounded whatever the file's size.
    for record_batch in parquet.iter_batches(batch_size=ROWS_PER_CHUNK, columns=list(names)):
        renamed = record_batch.rename_columns([names[n] for n in record_batch.schema.names])
        yield _decode_typed(renamed, source, file_index, row, settings)
        row += record_batch.num_rows


def _read_csv(source: SourceFile, file_index: int, settings: ReadSettings) -> Iterator[Chunk]:
    names = _columns_to_read(source, source.header(), settings)
    try:
        reader = pa_csv.open_csv(
            pa.input_stream(str(source.path), compression=source.compression),
            read_options=pa_csv.ReadOptions(block_size=4 << 20, encoding="utf8"),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(names),
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableFile(f"{source.path}: not a readable CSV file ({exc})") from None
    row = 0
    while True:
        try:
            record_batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowException as exc:
            raise UnreadableFile(f"{source.path}: CSV after data row {row}: {exc}") from None
        renamed = record_batch.rename_columns([names[n] for n in record_batch.schema.names])
        # Rust reads the typed columns; Python judges rows from their text (columns.csv_cell).
        yield _decode_typed(type_csv_columns(renamed), source, file_index, row, settings, text=renamed)
        row += record_batch.num_rows


def _columns_to_read(source: SourceFile, available: list[str], settings: ReadSettings) -> dict[str, str]:
    """The file's columns to read → our field names; a required one missing is an error."""
    wanted = {settings.columns.get(name, name): name for name in (*EVENT_FIELDS, *COORDINATES)}
    present = {their: ours for their, ours in wanted.items() if their in available}
    needed = ["type", "customer_id", "timestamp", *(COORDINATES if settings.coordinates else ())]
    missing = [name for name in needed if name not in present.values()]
    if missing:
        their = [settings.columns.get(name, name) for name in missing]
        raise UnreadableFile(
            f"{source.path}: no column {', '.join(their)} (columns: {', '.join(available[:30])}); "
            "name it with --column FIELD=COLUMN"
        )
    return present


def _decode_typed(
    record_batch: pa.RecordBatch,
    source: SourceFile,
    file_index: int,
    first_row: int,
    settings: ReadSettings,
    *,
    text: pa.RecordBatch | None = None,
) -> Chunk:
    specs = [
        column_spec(name, record_batch.column(name))
        for name in record_batch.schema.names
        if name not in ("attributes", PYTHON_COLUMN)
    ]
    if PYTHON_COLUMN in record_batch.schema.names:
        specs.append(column_spec(PYTHON_COLUMN, record_batch.column(PYTHON_COLUMN)))
    batch = decode_columns(
        specs,
        record_batch.num_rows,
        file_index=file_index,
        first_row=first_row,
        order_base=(file_index << ROW_BITS) + first_row,
        now=settings.now,
        max_future_skew_seconds=settings.max_future_skew_seconds,
    )
    fallback = batch.fallback()
    letters: list[DeadRow] = []
    if fallback:
        rows = (record_batch if text is None else text).take(pa.array(fallback, pa.int64())).to_pylist()
        for index, row in zip(fallback, rows, strict=True):
            letter = _judge_row(batch, index, row, settings, csv=text is not None)
            if letter is not None:
                letters.append(_dead_row(source, first_row + index, letter, row))
    batch.finish()
    return Chunk(batch, record_batch.num_rows, letters)


def _judge_row(
    batch: Batch, index: int, row: dict[str, Any], settings: ReadSettings, *, csv: bool
) -> tuple[InvalidEvent, tuple[int, int] | None] | None:
    obj, (partition, offset) = row_object(row, csv=csv)
    coordinates = _coordinates(partition, offset) if settings.coordinates else None
    if coordinates is not None:
        batch.set_position(index, *coordinates)
    if isinstance(obj.get("attributes"), _Unparsable):
        if obj.get("type") == "profile":
            return InvalidEvent("malformed_json", "attributes is not JSON text"), coordinates
        del obj["attributes"]  # on other types an unknown field, ignored as any other
    try:
        event = validate_event(obj, now=settings.now, max_future_skew_seconds=settings.max_future_skew_seconds)
    except InvalidEvent as exc:
        return exc, coordinates
    except Exception as exc:  # the last resort, as in the stream
        return InvalidEvent("internal_error", f"{type(exc).__name__}: {exc}"[:300]), coordinates
    if settings.coordinates and coordinates is None:
        return _no_coordinates(), None
    set_event(batch, index, event)
    return None


def _dead_row(
    source: SourceFile,
    row_index: int,
    letter: tuple[InvalidEvent, tuple[int, int] | None],
    row: dict[str, Any],
) -> DeadRow:
    error, coordinates = letter
    record = {k: v for k, v in row.items() if k != PYTHON_COLUMN and v is not None}
    return DeadRow(source.name, row_index + 1, error.reason, error.message, record, *(coordinates or (None, None)))


# ----- coordinates ------------------------------------------------------------------------------


def _coordinates(partition: object, offset: object) -> tuple[int, int] | None:
    """A row's Kafka position when both are whole numbers in range (not booleans)."""
    if isinstance(partition, bool) or isinstance(offset, bool):
        return None
    if isinstance(partition, int) and isinstance(offset, int) and 0 <= partition < 2**31 and 0 <= offset < 2**63:
        return partition, offset
    return None


def _no_coordinates() -> InvalidEvent:
    return InvalidEvent("missing_field", "partition and offset are required in a load with Kafka coordinates")
