"""``stream-features features-at ROWS``: features of many (customer, as_of) rows, each exactly as
of its own time, streamed from a CSV or JSONL file to JSONL, pipelined in chunks.

Rows: CSV with a header naming ``customer_id`` and ``as_of`` columns, or JSONL objects with those
keys; ``as_of`` is any time ``parse_timestamp`` reads (ISO 8601 or Unix seconds). Output: one
JSON object per row, in row order: the row's flat features, or ``{"customer_id", "as_of",
"error"}`` for a row that cannot be answered (a bad time, an unreadable customer).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import IO, Any

import msgspec

from ..core.timeparse import parse_as_of
from ..errors import ConfigurationError, InvalidQuery
from .reader import FeatureReader

CHUNK = 1000
_encoder = msgspec.json.Encoder()


def read_rows(source: IO[str], *, jsonl: bool) -> Iterator[tuple[str, str]]:
    """(customer_id, as_of) per row of a CSV (with a header) or JSONL text stream."""
    if jsonl:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                row = msgspec.json.decode(line)
                yield str(row["customer_id"]), row["as_of"]
            except (msgspec.DecodeError, KeyError, TypeError):
                raise ConfigurationError(f"line {number}: expected a JSON object with customer_id and as_of") from None
        return
    reader = csv.DictReader(source)
    if not reader.fieldnames or not {"customer_id", "as_of"} <= set(reader.fieldnames):
        raise ConfigurationError("the CSV header must name customer_id and as_of columns")
    for row in reader:
        yield row["customer_id"], row["as_of"]


def answer_rows(
    reader: FeatureReader, rows: Iterator[tuple[str, str]], out: IO[bytes], *, days: int | None, progress: Any = None
) -> int:
    """Write one JSON line per row, in order; returns how many rows were answered."""
    done = 0
    chunk: list[tuple[str, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            done += _answer(reader, chunk, out, days)
            chunk = []
            if progress is not None:
                progress(done)
    if chunk:
        done += _answer(reader, chunk, out, days)
        if progress is not None:
            progress(done)
    return done


def _answer(reader: FeatureReader, chunk: list[tuple[str, str]], out: IO[bytes], days: int | None) -> int:
    good: list[tuple[str, object]] = []
    errors: dict[int, str] = {}
    now = time.time()
    for index, (customer, as_of) in enumerate(chunk):
        try:  # a bad time answers that row, not the whole file
            good.append((customer, parse_as_of(as_of, now=now)))
        except InvalidQuery as exc:
            errors[index] = str(exc)
    answers = iter(reader.get_features_at(good, days=days))
    buffer = io.BytesIO()
    for index, (customer, as_of) in enumerate(chunk):
        features = None if index in errors else next(answers)
        if features is None:
            reason = errors.get(index, "state_unreadable")
            buffer.write(_encoder.encode({"customer_id": customer, "as_of": as_of, "error": reason}))
        else:
            buffer.write(_encoder.encode(features))
        buffer.write(b"\n")
    out.write(buffer.getvalue())
    return len(chunk)
